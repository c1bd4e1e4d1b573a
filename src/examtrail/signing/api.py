"""``GET /.well-known/jwks.json``: the public keys that verify export signatures."""

from __future__ import annotations

from fastapi import APIRouter, Response

from examtrail.deps import RuntimeDep
from examtrail.signing import service
from examtrail.signing.schemas import Jwks

router = APIRouter(tags=["signing"])

# Caches may keep the set for a while: a new key only signs exports made after rotation,
# and a verifier that misses a kid can simply fetch again.
CACHE_CONTROL = "public, max-age=300"


@router.get(
    "/.well-known/jwks.json",
    summary="Public keys that verify export signatures (JWKS)",
    description="The Ed25519 public keys (RFC 8037, `alg` EdDSA) of every key that has signed "
    "exports, the current one first; keys retired by rotation stay listed so that old "
    "signatures keep verifying. Public (no token) and cacheable. A finished export's "
    "`signature` is a compact JWS whose header `kid` names the key here.",
    response_model=Jwks,
)
def jwks(runtime: RuntimeDep, response: Response) -> Jwks:
    # The first call on a fresh database creates the key: the set is never empty.
    service.current_key(runtime.sessions, runtime.settings)
    with runtime.sessions() as session:
        keys = service.jwks(session)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return keys
