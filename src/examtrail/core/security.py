"""API keys (stored hashed) and the signed JWT access tokens clients exchange them for."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
SCOPES = ("ingest", "export")


def new_client_id() -> str:
    return "et_" + secrets.token_hex(8)


def new_api_key() -> str:
    return "etk_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough; there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), stored_hash)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: decoded from a verified access token."""

    tenant_id: int
    client_id: str
    scopes: frozenset[str]
    expires_at: datetime


def issue_token(
    signing_key: bytes, *, tenant_id: int, client_id: str, scopes: frozenset[str], ttl_seconds: int
) -> tuple[str, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    expires = now + timedelta(seconds=ttl_seconds)
    claims = {
        "sub": client_id,
        "tid": tenant_id,
        "scope": " ".join(sorted(scopes)),
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM), expires


def decode_token(signing_key: bytes, token: str) -> Principal:
    """Raises ``jwt.InvalidTokenError`` (incl. expiry) when the token is not valid."""
    claims = jwt.decode(
        token, signing_key, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "tid"]}
    )
    return Principal(
        tenant_id=int(claims["tid"]),
        client_id=str(claims["sub"]),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
    )
