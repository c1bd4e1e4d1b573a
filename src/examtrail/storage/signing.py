"""HMAC-signed download links for the local object store."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode


def _mac(key: bytes, object_key: str, expires: int, filename: str) -> str:
    message = f"{object_key}\n{expires}\n{filename}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(base_url: str, key: bytes, object_key: str, expires: int, filename: str = "") -> str:
    query = {"expires": str(expires), "sig": _mac(key, object_key, expires, filename)}
    if filename:
        query["filename"] = filename
    return f"{base_url.rstrip('/')}/files/{quote(object_key)}?{urlencode(query)}"


def verify(key: bytes, object_key: str, expires: int, filename: str, signature: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a link may carry anything.
    return hmac.compare_digest(_mac(key, object_key, expires, filename).encode(), signature.encode())
