"""Content-type checks: JSON routes take JSON, file uploads take raw bytes."""

from __future__ import annotations

import email.message
from typing import Any

from examtrail.core.errors import AppError


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


def media_type(value: str | None) -> str | None:
    """``type/subtype`` in lower case, without parameters; None when absent."""
    if not value or not value.strip():
        return None
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


def __getattr__(name: str) -> Any:
    # The route dependency lives in ``core.body`` (with the web framework), so that services
    # the worker runs can use the checks above without importing FastAPI.
    if name == "require_json":
        from examtrail.core.body import require_json

        return require_json
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
