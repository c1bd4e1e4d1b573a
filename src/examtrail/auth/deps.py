"""Bearer-token authentication and scope checks for routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import jwt
from fastapi import Depends, Request

from examtrail.auth.revocation import is_revoked
from examtrail.core.errors import Forbidden, Unauthorized
from examtrail.core.security import Principal, decode_token
from examtrail.deps import RuntimeDep

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def current_principal(request: Request, runtime: RuntimeDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A bearer access token is required.", headers=_CHALLENGE)
    try:
        principal = decode_token(runtime.settings.signing_key(), token.strip())
    except jwt.ExpiredSignatureError:
        raise Unauthorized(
            "The access token has expired.", code="token_expired", headers=_CHALLENGE
        ) from None
    except jwt.InvalidTokenError:
        raise Unauthorized(
            "The access token is not valid.", code="invalid_token", headers=_CHALLENGE
        ) from None
    # A token outlives its client's revocation unless looked up (cached a few seconds).
    if is_revoked(runtime, principal.client_id):
        raise Unauthorized(
            "The access token's client has been revoked.", code="token_revoked", headers=_CHALLENGE
        )
    return principal


def require_scope(scope: str) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if scope not in principal.scopes:
            raise Forbidden(f"This call needs the '{scope}' scope.", code="insufficient_scope")
        return principal

    return check


def require_any_scope(*scopes: str) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.scopes & set(scopes):
            wanted = "' or '".join(scopes)
            raise Forbidden(f"This call needs the '{wanted}' scope.", code="insufficient_scope")
        return principal

    return check


IngestPrincipal = Annotated[Principal, Depends(require_scope("ingest"))]
ExportPrincipal = Annotated[Principal, Depends(require_scope("export"))]
# Reading what was ingested (lists, the review pages): either scope will do.
ReaderPrincipal = Annotated[Principal, Depends(require_any_scope("ingest", "export"))]
