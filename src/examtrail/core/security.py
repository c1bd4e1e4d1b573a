"""API keys (stored hashed) and the signed JWT access tokens clients exchange them for."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from examtrail.core.crypto import by_hint, key_id

ALGORITHM = "HS256"
SCOPES = ("ingest", "export", "erase", "audit")
# Claims outside these bounds are refused (database ids are 32-bit; years stay four-digit).
MAX_ID = 2**31 - 1
MAX_CLIENT_ID_LENGTH = 64
MAX_EXP = 32_503_680_000  # 3000-01-01T00:00:00Z


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
    # ``kid`` names the secret key, so that after a rotation the right one is tried first.
    token = jwt.encode(claims, signing_key, algorithm=ALGORITHM, headers={"kid": key_id(signing_key)})
    return token, expires


def decode_token(keys: bytes | Sequence[bytes], token: str) -> Principal:
    """Raises ``jwt.InvalidTokenError`` (incl. expiry) when the token is not valid.

    ``keys``: the keyring, newest first; a token made with any of them is accepted (the
    one its ``kid`` header names is tried first, the header is only a hint)."""
    ring = [keys] if isinstance(keys, bytes) else list(keys)
    kid = jwt.get_unverified_header(token).get("kid")
    candidates = by_hint(ring, kid if isinstance(kid, str) else None)
    claims: dict[str, Any] = {}
    for index, key in enumerate(candidates):
        try:
            claims = jwt.decode(
                token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "tid"]}
            )
            break
        except jwt.InvalidSignatureError:
            if index == len(candidates) - 1:
                raise
    # A token signed with our key but carrying odd claims (a leaked key, a bug) is refused,
    # never a 500: every claim is checked for type and range before use.
    tid, sub, exp, scope = claims["tid"], claims["sub"], claims["exp"], claims.get("scope", "")
    if not _is_int(tid) or not 1 <= tid <= MAX_ID:
        raise jwt.InvalidTokenError("tid must be a positive integer")
    # (Printable: the revocation check looks it up, and PostgreSQL cannot compare a text with NUL.)
    if not isinstance(sub, str) or not 0 < len(sub) <= MAX_CLIENT_ID_LENGTH or not sub.isprintable():
        raise jwt.InvalidTokenError("sub must be a client id")
    if not _is_int(exp) or not 0 < exp <= MAX_EXP:
        raise jwt.InvalidTokenError("exp is out of range")
    if not isinstance(scope, str):
        raise jwt.InvalidTokenError("scope must be a string")
    return Principal(
        tenant_id=tid,
        client_id=sub,
        scopes=frozenset(scope.split()),
        expires_at=datetime.fromtimestamp(exp, tz=UTC),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Verified tokens remembered per process: polled calls (export status) present the same token
# for its whole lifetime, and verifying it (HMAC + claim checks) each time is pure CPU.
TOKEN_CACHE_SIZE = 4096


class TokenCache:
    """Access token string → its :class:`Principal`, for tokens that passed :func:`decode_token`.

    Only successes are remembered, and only under the exact keyring that verified them (a key
    removed from the ring makes its tokens fail again). An entry is dropped at the token's
    ``exp``: from then on the token is decoded again and refused as expired. Bounded: when full,
    it is emptied (tokens are simply verified again). Revocation is not decided here; callers
    check it on every request as before."""

    def __init__(self, size: int = TOKEN_CACHE_SIZE) -> None:
        self.size = size
        self._ring: tuple[bytes, ...] = ()
        self._entries: dict[str, tuple[Principal, float]] = {}

    def decode(self, keys: Sequence[bytes], token: str) -> Principal:
        """:func:`decode_token`, answered from the cache for a token verified before."""
        ring = tuple(keys)
        if ring != self._ring:
            # Another (rotated) keyring: nothing verified under the old one counts.
            self._entries = {}
            self._ring = ring
        entry = self._entries.get(token)
        if entry is not None:
            principal, expires = entry
            if time.time() < expires:
                return principal
            # Verified, now expired: what decode_token would say (and it is not kept).
            self._entries.pop(token, None)
            raise jwt.ExpiredSignatureError("Signature has expired")
        principal = decode_token(ring, token)
        if len(self._entries) >= self.size:
            self._entries = {}
        self._entries[token] = (principal, principal.expires_at.timestamp())
        return principal
