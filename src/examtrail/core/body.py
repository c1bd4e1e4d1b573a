"""Request bodies: one size limit for every route, and JSON validation with clear errors.

``BodyLimit`` is a pure ASGI layer: it counts a body's bytes as the server hands them over
(chunked bodies too) and refuses one over the limit with a 413 ``payload_too_large`` before the
route has it, whether the route reads it as FastAPI's body parameter, a form or by hand. A
declared ``Content-Length`` over the limit is refused before any byte is read. The limit is
``EXAMTRAIL_MAX_REQUEST_BYTES`` unless the route says otherwise (``body_limit``): a smaller cap
(the token endpoints) or none here (the evidence-file upload, which streams to the object store
and applies ``EXAMTRAIL_MAX_FILE_BYTES`` itself).

The route is known only once the router has matched it, so the limit is resolved at the first
read of the body: a route that never reads its body is never refused for it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from fastapi import params
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from examtrail.core.errors import BadRequest, PayloadTooLarge, Unprocessable, error_body, validation_details
from examtrail.core.fastpath import Endpoint
from examtrail.core.media import require_json
from examtrail.core.responses import JSONResponse
from examtrail.core.schemas import is_ascii_digits

T = TypeVar("T")

# The endpoint attribute ``body_limit`` sets: a cap in bytes, or None (the route limits itself).
_LIMIT_ATTRIBUTE = "examtrail_body_limit"


def body_limit(limit: int | None) -> Callable[[Endpoint], Endpoint]:
    """Mark a route's endpoint: its bodies are capped at ``min(limit, EXAMTRAIL_MAX_REQUEST_BYTES)``,
    or, with None, not limited by ``BodyLimit`` (the route reads and limits its body itself)."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _LIMIT_ATTRIBUTE, limit)
        return endpoint

    return mark


def body_limit_of(endpoint: Any, default: int) -> int | None:
    """The cap on ``endpoint``'s request bodies: ``default`` (``EXAMTRAIL_MAX_REQUEST_BYTES``), a
    smaller one its ``body_limit`` sets, or None when the route limits its body itself."""
    limit = getattr(endpoint, _LIMIT_ATTRIBUTE, default)
    return None if limit is None else min(limit, default)


def declares_more_than(headers: Mapping[str, str], limit: int) -> bool:
    """Whether the request's ``Content-Length`` says its body is over ``limit`` bytes (refused
    before any of it is read; a body without one is counted as it streams)."""
    declared = headers.get("content-length")
    if declared is None or not is_ascii_digits(declared):
        return False
    # Compared as digits first: int() refuses (a ValueError, a 500) past 4,300 digits, and the
    # HTTP parsers take any number of leading zeros ("000…049" is 49 bytes).
    digits = declared.lstrip("0")
    return len(digits) > len(str(limit)) or int(digits or "0") > limit


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body exceeds {limit} bytes.")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int | None = None
        resolved = False
        received = 0
        refused: int | None = None  # the limit the body went over
        started = replaced = False

        async def limited_receive() -> Message:
            nonlocal limit, resolved, received, refused
            if refused is not None:
                raise too_large(refused)
            if not resolved:
                resolved = True
                # The router put the endpoint on the shared scope before it read the body.
                limit = body_limit_of(scope.get("endpoint"), self.limit)
                if limit is not None and declares_more_than(Headers(scope=scope), limit):
                    refused = limit
                    raise too_large(limit)
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = limit
                    raise too_large(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                if refused is not None and not started:
                    # Whatever the route answers once its body was refused (FastAPI turns an
                    # unreadable body into a 400), the client gets the 413.
                    replaced = True
                    await self._refuse(refused, scope, receive, send)
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if refused is None or started or replaced:
                raise
        if refused is not None and not started and not replaced:
            await self._refuse(refused, scope, receive, send)

    @staticmethod
    async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        error = too_large(limit)
        # Closing the connection spares the server reading (and discarding) the rest of the body.
        response = JSONResponse(
            error_body(error.code, error.message),
            status_code=error.status_code,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _refuse_empty(raw: bytes) -> None:
    if not raw.strip():
        raise BadRequest("The request body is empty; JSON is expected.", code="malformed_json")


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body, read as :func:`validate_json` reads one (pydantic's
    parser: UTF-8 without a byte order mark, nesting and numbers within its limits), or a 400
    ``malformed_json`` naming the problem."""
    _refuse_empty(raw)
    try:
        return from_json(raw)
    except ValueError as exc:
        raise BadRequest(
            "The request body is not valid JSON.",
            code="malformed_json",
            details=[{"message": f"Invalid JSON: {exc}", "type": "json_invalid"}],
        ) from None


class _JsonRequest(Request):
    """A request whose JSON is read by :func:`parse_json` (FastAPI's ``await request.json()``)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class JsonBodyRoute(APIRoute):
    """A router's ``route_class``: its routes with a JSON body (a body parameter) read it as the
    events call does (``parse_json``), content type first (``require_json``), then the body.

    FastAPI's own reading answered otherwise: a 400 ``http_error`` "There was an error parsing
    the body" (``json.loads`` raising past a ValueError: invalid UTF-8, deep nesting, an integer of
    over 4,300 digits), a body with a byte order mark or in UTF-16 accepted, an empty body a 422.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        regular = super().get_route_handler()
        if self.body_field is None or _is_form(self):
            return regular

        async def handler(request: Request) -> Response:
            request = _JsonRequest(request.scope, request.receive)
            await require_json(request)
            await request.json()  # kept: FastAPI's own read of the body finds it parsed
            return await regular(request)

        return handler


def _is_form(route: APIRoute) -> bool:
    return route.body_field is not None and isinstance(route.body_field.field_info, params.Form)


def validate_json(adapter: TypeAdapter[T], raw: bytes) -> T:
    """Parse and validate in one pass (pydantic's JSON mode keeps strict types honest)."""
    _refuse_empty(raw)
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
