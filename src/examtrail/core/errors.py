"""One error shape for every 4xx/5xx: ``{"error": code, "message": text, "details": [...]}``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The exceptions are raised by services that also run in the standalone worker, which
# serves no HTTP: the web framework is imported only where the handlers are installed.

log = logging.getLogger(__name__)

# Set in the request's scope state when the client went away before any answer (``core.access``).
CLIENT_DISCONNECTED = "client_disconnected"


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers
        if code:
            self.code = code


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class Unprocessable(AppError):
    status_code = 422
    code = "validation_error"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "unavailable"


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": code, "message": message, "details": details or []}


def validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
        item: dict[str, Any] = {"message": error.get("msg", "invalid value"), "type": error.get("type")}
        # A batch body is a list: its first location part is the item's index.
        if loc and isinstance(loc[0], int):
            item["index"] = loc.pop(0)
        if loc:
            item["field"] = ".".join(str(part) for part in loc)
        details.append(item)
    return details


def install_error_handlers(app: FastAPI) -> None:
    import psycopg
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from sqlalchemy.exc import OperationalError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from examtrail.core.methods import allowed_methods
    from examtrail.core.responses import JSONResponse

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        details = validation_details(errors)
        if any(error.get("type") == "json_invalid" for error in errors):
            body = error_body("malformed_json", "The request body is not valid JSON.", details)
            return JSONResponse(body, status_code=400)
        return JSONResponse(
            error_body("validation_error", "The request is not valid.", details), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405 and (allow := allowed_methods(_request)):
            headers["Allow"] = allow
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
            headers=headers or None,
        )

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        # Lost connection, lock timeout, server restarting: the client may simply retry.
        reason = getattr(exc, "orig", exc)
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, reason)
        return JSONResponse(
            error_body("database_unavailable", "The database is busy or unreachable; retry shortly."),
            status_code=503,
            headers={"Retry-After": "2"},
        )

    app.add_exception_handler(OperationalError, _database)
    # The same errors raised by psycopg itself, where SQLAlchemy does not wrap them: the paths
    # on plain psycopg (``core.db.PgPool``: the status call and its audit entry) and the
    # statements run on the driver's cursor (event inserts, COPY).
    app.add_exception_handler(psycopg.OperationalError, _database)

    app.add_middleware(UnexpectedErrors)


class UnexpectedErrors:
    """The last line for errors no handler knows: a JSON 500 (trace to the log, never to the
    client) after which the connection stays usable, and a quiet line for a client that
    went away mid-request.

    Starlette's own last-resort handler re-raises after answering, which makes the server
    close the kept-alive connection; this middleware answers and does not re-raise.
    """

    def __init__(self, app: ASGIApp) -> None:
        from starlette.requests import ClientDisconnect

        from examtrail.core.responses import JSONResponse

        self.app = app
        self._disconnect = ClientDisconnect
        self._response = JSONResponse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except self._disconnect:
            # Normal: the client closed the connection mid-request. Nobody is left to answer;
            # the access line and the metrics say so (``core.access``: 499, not a 500).
            scope.setdefault("state", {})[CLIENT_DISCONNECTED] = True
            log.info("client disconnected during %s %s", scope.get("method"), scope.get("path"))
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half an answer went out: only closing the connection can end it
            response = self._response(
                error_body("internal_error", "An internal error occurred."), status_code=500
            )
            await response(scope, receive, send)
