"""Token endpoints: Inspera-compatible ``/api/authenticate/token/`` and OAuth2 client credentials."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Form, Header, Query, Request
from pydantic import BaseModel

from examtrail.auth import service
from examtrail.core.responses import JSONResponse
from examtrail.deps import RuntimeDep, SessionDep

router = APIRouter(tags=["auth"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (a token type, not a secret)
    expires_in: int


def _oauth_error(error: str, status: int, message: str) -> JSONResponse:
    # OAuth-style body (Inspera clients read "error"), with our usual message/details.
    return JSONResponse({"error": error, "message": message, "details": []}, status_code=status)


def _issue(session: SessionDep, runtime: RuntimeDep, client_id: str, key: str) -> JSONResponse:
    settings = runtime.settings
    try:
        issued = service.issue_token(
            session, settings.signing_key(), settings.token_ttl_seconds, client_id, key
        )
    except service.InvalidCredentials:
        return _oauth_error("invalid_grant", 401, "Unknown client or wrong API key.")
    body = TokenResponse(access_token=issued.access_token, expires_in=issued.expires_in)
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})


@router.post(
    "/api/authenticate/token/",
    response_model=TokenResponse,
    summary="Get an access token (Inspera-compatible)",
    description="The API key travels in the `code` header "
    "(or, for older clients, `code` in the query or form).",
)
def inspera_token(
    session: SessionDep,
    runtime: RuntimeDep,
    grant_type: Annotated[str | None, Query(description="`authorization_code` (or absent)")] = None,
    client_id: Annotated[str | None, Query(description="The client id")] = None,
    code_header: Annotated[str | None, Header(alias="code", description="The API key")] = None,
    code_query: Annotated[
        str | None, Query(alias="code", description="The API key (older clients; prefer the header)")
    ] = None,
    code_form: Annotated[str | None, Form(alias="code", description="The API key (older clients)")] = None,
    client_id_form: Annotated[str | None, Form(alias="client_id", description="The client id")] = None,
) -> JSONResponse:
    if grant_type not in (None, "authorization_code"):
        return _oauth_error("unsupported_grant_type", 400, "grant_type must be authorization_code.")
    client = client_id or client_id_form
    key = code_header or code_query or code_form
    if not client or not key:
        return _oauth_error("invalid_request", 400, "client_id and the API key (header 'code') are required.")
    return _issue(session, runtime, client, key)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


@router.post(
    "/oauth/token", response_model=TokenResponse, summary="Get an access token (OAuth2 client credentials)"
)
def oauth_token(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    grant_type: Annotated[str | None, Form(description="`client_credentials`")] = None,
    client_id: Annotated[str | None, Form(description="The client id (or HTTP Basic user)")] = None,
    client_secret: Annotated[str | None, Form(description="The API key (or HTTP Basic password)")] = None,
) -> JSONResponse:
    if grant_type != "client_credentials":
        return _oauth_error("unsupported_grant_type", 400, "grant_type must be client_credentials.")
    basic = _basic_credentials(request)
    if basic is not None:
        client_id, client_secret = basic
    if not client_id or not client_secret:
        return _oauth_error("invalid_request", 400, "client_id and client_secret are required.")
    return _issue(session, runtime, client_id, client_secret)
