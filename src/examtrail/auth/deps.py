"""Bearer-token authentication and scope checks for routes.

The two security schemes are declared here so the OpenAPI document carries them on every
protected operation, with the scope each needs (Swagger UI's Authorize button uses them). They
never answer by themselves (``auto_error=False``): ``current_principal`` gives the error body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import jwt
from fastapi import Depends, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2
from starlette.concurrency import run_in_threadpool

from examtrail.auth.revocation import is_revoked, known_revocation
from examtrail.core.errors import Forbidden, Unauthorized
from examtrail.core.security import Principal, TokenCache
from examtrail.deps import RuntimeDep
from examtrail.runtime import Runtime

SCOPES = {
    "ingest": "Create tests and candidates, record events and attach files",
    "export": "Order, poll, cancel and download exports; manage webhook subscriptions",
    "erase": "Erase candidates and tests (irreversible); set and release legal holds",
    "audit": "Read the tenant's audit log (GET /v1/audit)",
}

bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="An access token from `POST /api/authenticate/token/` or `POST /oauth/token`.",
    auto_error=False,
)
oauth2_scheme = OAuth2(
    scheme_name="oauth2",
    flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl="/oauth/token", scopes=SCOPES)),
    description="OAuth2 client credentials: the client id and its API key as the client secret.",
    auto_error=False,
)

# RFC 6750: no error attribute when no token was sent, ``invalid_token`` when one was and is bad.
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="examtrail"'}


def _invalid(description: str) -> dict[str, str]:
    return {
        "WWW-Authenticate": f'Bearer realm="examtrail", error="invalid_token", '
        f'error_description="{description}"'
    }


# Tokens verified by this process (one verification per token, not per call).
_tokens = TokenCache()


# async: the token check is CPU only; the revocation read (every few seconds per client and
# process) is the one part that goes to a thread.
async def current_principal(
    request: Request,
    runtime: RuntimeDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    _oauth2: Annotated[str | None, Security(oauth2_scheme)],
) -> Principal:
    return await authenticate(runtime, request.headers.get("authorization", ""))


async def authenticate(runtime: Runtime, authorization: str) -> Principal:
    """The caller of an ``Authorization`` header value: its token verified (or known verified
    and unexpired) and its client not revoked; else :class:`Unauthorized`."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A bearer access token is required.", headers=_CHALLENGE)
    try:
        principal = _tokens.decode(runtime.settings.secret_keyring(), token.strip())
    except jwt.ExpiredSignatureError:
        raise Unauthorized(
            "The access token has expired.",
            code="token_expired",
            headers=_invalid("The access token expired"),
        ) from None
    except jwt.InvalidTokenError:
        raise Unauthorized(
            "The access token is not valid.",
            code="invalid_token",
            headers=_invalid("The access token is not valid"),
        ) from None
    # A token outlives its client's revocation unless looked up (cached a few seconds): checked
    # on every call, cached token or not.
    revoked = known_revocation(runtime, principal.client_id)
    if revoked is None:
        revoked = await run_in_threadpool(is_revoked, runtime, principal.client_id)
    if revoked:
        raise Unauthorized(
            "The access token's client has been revoked.",
            code="token_revoked",
            headers=_invalid("The access token's client has been revoked"),
        )
    return principal


def _insufficient_scope(*scopes: str) -> Forbidden:
    # RFC 6750 section 3.1: the challenge names the error and the scope the call needs.
    wanted = "' or '".join(scopes)
    return Forbidden(
        f"This call needs the '{wanted}' scope.",
        code="insufficient_scope",
        headers={
            "WWW-Authenticate": f'Bearer realm="examtrail", error="insufficient_scope", '
            f'scope="{" ".join(scopes)}"'
        },
    )


def check_scope(principal: Principal, scope: str) -> Principal:
    if scope not in principal.scopes:
        raise _insufficient_scope(scope)
    return principal


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    # async: a pure check, no threadpool hop for it on every request.
    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        return check_scope(principal, scope)

    return check


def require_any_scope(*scopes: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.scopes & set(scopes):
            raise _insufficient_scope(*scopes)
        return principal

    return check


IngestPrincipal = Annotated[Principal, Security(require_scope("ingest"), scopes=["ingest"])]
ExportPrincipal = Annotated[Principal, Security(require_scope("export"), scopes=["export"])]
ErasePrincipal = Annotated[Principal, Security(require_scope("erase"), scopes=["erase"])]
# Reading what was ingested (lists, the review pages): either scope will do.
ReaderPrincipal = Annotated[Principal, Security(require_any_scope("ingest", "export"))]
