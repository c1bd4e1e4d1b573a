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
# C0 and C1 control characters: never in a stored key, an uploaded file's name or its type.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]").search


def _message(object_key: str, expires: int, filename: str, content_type: str) -> bytes:
    """What a link signs: each field after its length, so no field can pass for a part of
    another (a name cannot carry the type, nor a key the expiry)."""
    return (
        f"v2:{len(object_key)}:{object_key}{expires}:"
        f"{len(filename)}:{filename}{len(content_type)}:{content_type}"
    ).encode()


def _first_message(object_key: str, expires: int, filename: str, content_type: str) -> bytes:
    """What links signed before ``_message``: the fields joined by newlines, the type left out
    when empty. Ambiguous with a newline in a field ("shot.png\nimage/png" as the name and no
    type signs as the name "shot.png" with the type), so only checked for fields without
    control characters. Such links live one access-token lifetime (``EXAMTRAIL_TOKEN_TTL_SECONDS``):
    this can go once every process has signed with ``_message`` for that long."""
    message = f"{object_key}\n{expires}\n{filename}"
    if content_type:
        message += f"\n{content_type}"
    return message.encode()


def _mac(key: bytes, message: bytes) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, cheaper than an hmac.new object per link.
    return hmac.digest(key, message, "sha256").hex()


def _has_control(*fields: str) -> bool:
    return any(_CONTROL(field) for field in fields)


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
    if _has_control(object_key, filename, content_type):
        # Uploads refuse them (422): a link to such a name is a bug, never signed.
        raise ValueError("a signed link's key, file name and type may hold no control characters")
    # The query in urlencode's order and escaping: expires and sig (digits, hex) need none.
    sig = _mac(key, _message(object_key, expires, filename, content_type))
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
    if _has_control(object_key, filename, content_type):
        return False  # never signed (``sign``); and the first form would be ambiguous
    ring = [keys] if isinstance(keys, bytes) else keys
    messages = (
        _message(object_key, expires, filename, content_type),
        _first_message(object_key, expires, filename, content_type),
    )
    given = signature.encode()  # bytes: compare_digest refuses non-ASCII strings
    return any(
        hmac.compare_digest(_mac(key, message).encode(), given) for key in ring for message in messages
    )
