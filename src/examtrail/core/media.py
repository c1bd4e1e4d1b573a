"""Content-type checks: JSON routes take JSON, file uploads take raw bytes."""

from __future__ import annotations

import email.message
from functools import lru_cache

# Starlette's request (what FastAPI re-exports): the services the worker runs use this
# module's checks, and FastAPI itself costs the worker ~10 MB (tests/queue/test_worker_imports.py).
from starlette.requests import Request

from examtrail.core.errors import AppError


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


def media_type(value: str | None) -> str | None:
    """``type/subtype`` in lower case, without parameters; None when absent."""
    if not value or not value.strip():
        return None
    return _parsed_media_type(value)


# Clients send the same few content types on every request: parsed once each, not per request.
@lru_cache(maxsize=256)
def _parsed_media_type(value: str) -> str:
    message = email.message.Message()
    message["content-type"] = value
    return message.get_content_type().lower()


def is_json(value: str | None) -> bool:
    kind = media_type(value)
    return (
        kind is not None
        and kind.startswith("application/")
        and (kind == "application/json" or kind.endswith("+json"))
    )


async def require_json(request: Request) -> None:
    """Dependency of every JSON body route: anything but ``application/json`` is a 415.

    A request without a body (and so without a content type) is left to body validation.
    """
    content_type = request.headers.get("content-type")
    if (
        content_type is None
        and request.headers.get("content-length") in (None, "0")
        and ("chunked" not in request.headers.get("transfer-encoding", ""))
    ):
        return
    if not is_json(content_type):
        raise UnsupportedMediaType(
            f"Send application/json (got {content_type or 'no content type'}).",
            details=[{"field": "Content-Type", "message": "send application/json"}],
        )
