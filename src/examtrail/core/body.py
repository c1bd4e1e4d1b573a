"""Reading and validating JSON request bodies with a size limit and clear errors."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from examtrail.core.errors import BadRequest, PayloadTooLarge, Unprocessable, validation_details
from examtrail.core.schemas import is_ascii_digits

T = TypeVar("T")


def declares_more_than(request: Request, limit: int) -> bool:
    """Whether the request's ``Content-Length`` says its body is over ``limit`` bytes (refused
    before any of it is read; a body without one is counted as it streams)."""
    declared = request.headers.get("content-length")
    return declared is not None and is_ascii_digits(declared) and int(declared) > limit


async def read_limited(request: Request, limit: int) -> bytes:
    if declares_more_than(request, limit):
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def validate_json(adapter: TypeAdapter[T], raw: bytes) -> T:
    """Parse and validate in one pass (pydantic's JSON mode keeps strict types honest)."""
    if not raw.strip():
        raise BadRequest("The request body is empty; JSON is expected.", code="malformed_json")
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        errors: list[Any] = list(exc.errors(include_url=False))
        if any(error["type"] == "json_invalid" for error in errors):
            raise BadRequest(
                "The request body is not valid JSON.",
                code="malformed_json",
                details=validation_details(errors),
            ) from None
        raise Unprocessable("The request is not valid.", details=validation_details(errors)) from None
