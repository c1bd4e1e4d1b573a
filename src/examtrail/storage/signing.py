"""HMAC-signed download links for the local object store.

Links are signed with the newest secret key and verified against each key of the ring,
so links handed out before a key rotation keep working until they expire."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import quote, urlencode


def _mac(key: bytes, object_key: str, expires: int, filename: str, content_type: str = "") -> str:
    message = f"{object_key}\n{expires}\n{filename}"
    if content_type:  # signed too: a link cannot be re-typed (links without one are unchanged)
        message += f"\n{content_type}"
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign(
    base_url: str, key: bytes, object_key: str, expires: int, filename: str = "", content_type: str = ""
) -> str:
    query = {"expires": str(expires), "sig": _mac(key, object_key, expires, filename, content_type)}
    if filename:
        query["filename"] = filename
    if content_type:
        query["type"] = content_type
    return f"{base_url.rstrip('/')}/files/{quote(object_key)}?{urlencode(query)}"


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
