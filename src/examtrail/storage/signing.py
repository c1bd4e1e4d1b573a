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


def _message(object_key: str, expires: int, filename: str, content_type: str) -> bytes:
    """What a link signs: each field after its length, so no field can pass for a part of
    another (a name cannot carry the type, nor a key the expiry), whatever characters it holds:
    any name an upload accepts can be signed."""
    return (
        f"v2:{len(object_key)}:{object_key}{expires}:"
        f"{len(filename)}:{filename}{len(content_type)}:{content_type}"
    ).encode()


def _first_message(object_key: str, expires: int, filename: str, content_type: str) -> bytes:
    """What links signed before ``_message``: the fields joined by newlines, the type left out
    when empty. Ambiguous with a newline in a field ("shot.png\nimage/png" as the name and no
    type signs as the name "shot.png" with the type), so only checked when no field holds the
    separator (``_joinable``). Such links live one access-token lifetime
    (``EXAMTRAIL_TOKEN_TTL_SECONDS``): this can go once every process has signed with
    ``_message`` for that long."""
    message = f"{object_key}\n{expires}\n{filename}"
    if content_type:
        message += f"\n{content_type}"
    return message.encode()


def _mac(key: bytes, message: bytes) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, cheaper than an hmac.new object per link.
    return hmac.digest(key, message, "sha256").hex()


def _joinable(*fields: str) -> bool:
    """Whether the first form reads these fields back unambiguously: none holds its separator."""
    return not any("\n" in field for field in fields)


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
    ring = [keys] if isinstance(keys, bytes) else keys
    messages = [_message(object_key, expires, filename, content_type)]
    if _joinable(object_key, filename, content_type):
        messages.append(_first_message(object_key, expires, filename, content_type))
    given = signature.encode()  # bytes: compare_digest refuses non-ASCII strings
    return any(
        hmac.compare_digest(_mac(key, message).encode(), given) for key in ring for message in messages
    )
