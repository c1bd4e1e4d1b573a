"""Token endpoints: Inspera-compatible ``/api/authenticate/token/`` and OAuth2 client credentials."""

from __future__ import annotations

import base64
import binascii
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from examtrail.auth import service
from examtrail.core.body import body_limit
from examtrail.core.errors import PayloadTooLarge
from examtrail.core.media import media_type
from examtrail.core.responses import JSONResponse
from examtrail.core.settings import Settings
from examtrail.deps import AsyncEngineDep, RuntimeDep, in_write_session
from examtrail.runtime import Runtime

router = APIRouter(tags=["auth"])

# A token request is a few short form fields: its body is capped far below other calls' (the
# endpoints answer anyone, so an unauthenticated client cannot make the server parse megabytes).
TOKEN_MAX_BODY_BYTES = 16 * 1024


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (a token type, not a secret)
    expires_in: int


def _oauth_error(error: str, status: int, message: str) -> JSONResponse:
    # OAuth-style body (Inspera clients read "error"), with our usual message/details.
    return JSONResponse({"error": error, "message": message, "details": []}, status_code=status)


async def _issue(runtime: Runtime, database: AsyncEngine | None, client_id: str, key: str) -> JSONResponse:
    # From the event loop: PostgreSQL on the async driver, SQLite as one threadpool hop.
    settings = runtime.settings
    try:
        if database is not None:
            issued = await service.issue_token_async(
                database, settings.signing_key(), settings.token_ttl_seconds, client_id, key
            )
        else:
            issued = await in_write_session(runtime, partial(_issue_in_session, settings, client_id, key))
    except service.InvalidCredentials:
        return _oauth_error("invalid_grant", 401, "Unknown client or wrong API key.")
    body = TokenResponse(access_token=issued.access_token, expires_in=issued.expires_in)
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})


def _issue_in_session(settings: Settings, client_id: str, key: str, session: Session) -> service.IssuedToken:
    issued = service.issue_token(session, settings.signing_key(), settings.token_ttl_seconds, client_id, key)
    session.commit()  # the audit entry of the issued token
    return issued


async def _token_form(request: Request) -> dict[str, str]:
    """The form fields of a token request (OAuth clients send a form; Inspera's send `" "`)."""
    if media_type(request.headers.get("content-type")) not in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        return {}
    try:
        form = await request.form()
    except PayloadTooLarge:
        raise  # over TOKEN_MAX_BODY_BYTES (core.body.BodyLimit): 413, nothing issued
    except Exception:  # a body that is not the form it claims: no fields
        return {}
    return {key: value for key, value in form.items() if isinstance(value, str)}


TokenForm = Annotated[dict[str, str], Depends(_token_form)]


def _form_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {
        "required": bool(required),
        "content": {"application/x-www-form-urlencoded": {"schema": schema}},
    }


def _string(description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "description": description}
    if enum:
        schema["enum"] = enum
    return schema


_INSPERA_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": "grant_type",
            "in": "query",
            "description": "Always `authorization_code` (may be left out)",
            "schema": {"type": "string", "enum": ["authorization_code"]},
        },
        {"name": "client_id", "in": "query", "description": "The client id", "schema": {"type": "string"}},
        {"name": "code", "in": "header", "description": "The API key", "schema": {"type": "string"}},
        {
            "name": "code",
            "in": "query",
            "description": "The API key (older clients; prefer the header)",
            "schema": {"type": "string"},
        },
    ],
    "requestBody": _form_body(
        {
            "code": _string("The API key (older clients)"),
            "client_id": _string("The client id (older clients)"),
        },
        [],
    ),
}


@router.post(
    "/api/authenticate/token/",
    response_model=TokenResponse,
    summary="Get an access token (Inspera-compatible)",
    description="The API key travels in the `code` header (or, for older clients, `code` in the query "
    "or form). Without a client id or key: 401 `invalid_client`; wrong key: 401 `invalid_grant`.",
    openapi_extra=_INSPERA_DOC,
)
@body_limit(TOKEN_MAX_BODY_BYTES)
async def inspera_token(
    request: Request, runtime: RuntimeDep, database: AsyncEngineDep, form: TokenForm
) -> JSONResponse:
    query = request.query_params
    grant_type = query.get("grant_type")
    if grant_type not in (None, "authorization_code"):
        return _oauth_error("unsupported_grant_type", 400, "grant_type must be authorization_code.")
    client = query.get("client_id") or form.get("client_id")
    key = request.headers.get("code") or query.get("code") or form.get("code")
    if not client or not key:
        return _oauth_error("invalid_client", 401, "client_id and the API key (header 'code') are required.")
    return await _issue(runtime, database, client, key)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


_OAUTH_DOC: dict[str, Any] = {
    "requestBody": _form_body(
        {
            "grant_type": _string("Always `client_credentials`", ["client_credentials"]),
            "client_id": _string("The client id (or send it as the HTTP Basic user)"),
            "client_secret": _string("The API key (or send it as the HTTP Basic password)"),
        },
        ["grant_type"],
    ),
}


@router.post(
    "/oauth/token",
    response_model=TokenResponse,
    summary="Get an access token (OAuth2 client credentials)",
    description="Client credentials in the form or as HTTP Basic. Without them: 401 `invalid_client`; "
    "wrong ones: 401 `invalid_grant`.",
    openapi_extra=_OAUTH_DOC,
)
@body_limit(TOKEN_MAX_BODY_BYTES)
async def oauth_token(
    request: Request, runtime: RuntimeDep, database: AsyncEngineDep, form: TokenForm
) -> JSONResponse:
    if form.get("grant_type") != "client_credentials":
        return _oauth_error("unsupported_grant_type", 400, "grant_type must be client_credentials.")
    client_id, client_secret = _basic_credentials(request) or (
        form.get("client_id"),
        form.get("client_secret"),
    )
    if not client_id or not client_secret:
        return _oauth_error("invalid_client", 401, "client_id and client_secret are required.")
    return await _issue(runtime, database, client_id, client_secret)
