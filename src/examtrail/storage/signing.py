"""HMAC-signed download links for the local object store.

Links are signed with the newest secret key and verified against each key of the ring,
so links handed out before a key rotation keep working until they expire."""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import quote, urlencode

# Keys that quote() leaves as they are (its always-safe characters and '/'): most keys.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9/_.~-]*").fullmatch


def _mac(key: bytes, object_key: str, expires: int, filename: str, content_type: str = "") -> str:
    message = f"{object_key}\n{expires}\n{filename}"
    if content_type:  # signed too: a link cannot be re-typed (links without one are unchanged)
        message += f"\n{content_type}"
    # hmac.digest: OpenSSL's one-shot HMAC, cheaper than an hmac.new object per link.
    return hmac.digest(key, message.encode(), "sha256").hex()


@lru_cache(maxsize=1024)
def _query_tail(filename: str, content_type: str) -> str:
    """``&filename=…&type=…`` as urlencode writes it: the same for every link to a file of
    that name and type (an export signs thousands, their names repeat)."""
    query = {}
    if filename:
        query["filename"] = filename
    if content_type:
        query["type"] = content_type
    return "&" + urlencode(query) if query else ""


def sign(
    base_url: str, key: bytes, object_key: str, expires: int, filename: str = "", content_type: str = ""
) -> str:
    # The query in urlencode's order and escaping: expires and sig (digits, hex) need none.
    sig = _mac(key, object_key, expires, filename, content_type)
    path = object_key if _PLAIN_KEY(object_key) else quote(object_key)
    tail = _query_tail(filename, content_type)
    return f"{base_url.rstrip('/')}/files/{path}?expires={expires}&sig={sig}{tail}"


def verify(
    keys: bytes | Sequence[bytes],
    object_key: str,
    expires: int,
    filename: str,
    signature: str,
    content_type: str = "",
) -> bool:
    ring = [keys] if isinstance(keys, bytes) else keys
    for key in ring:
        # Bytes, not str: compare_digest refuses non-ASCII strings, and a link may carry anything.
        expected = _mac(key, object_key, expires, filename, content_type)
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return True
    return False
