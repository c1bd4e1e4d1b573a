"""The request middleware: the request context, then the access log and HTTP metrics.

One pure ASGI layer per request (one ``send`` wrapper, not one per concern): it sets the request
id and client address (``core.context``), echoes the id in the answer, and once the answer is
sent writes one access line and one count, inside the request context so the line carries the
request id. It is the outermost layer: even an error answer carries the id it was logged under.

Requests are labelled by their route *template* (``/v1/test/{testId}/events``), never
the raw path, so log searches group naturally and metric labels stay few; a request no
route matched is ``unmatched``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from examtrail.core.context import client_ip_var, request_id_from, request_id_var
from examtrail.core.errors import CLIENT_DISCONNECTED
from examtrail.core.metrics import UNMATCHED_ROUTE, metrics

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

log = logging.getLogger("examtrail.access")

# The status logged and counted for a request whose client went away before any answer (nginx's).
CLIENT_CLOSED_REQUEST = 499


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class RequestMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The metric series of each (method, route[, status]): looked up once, not per request.
        self._counts: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope.get("headers") or [])
        client = scope.get("client")
        id_token = request_id_var.set(request_id)
        ip_token = client_ip_var.set(client[0] if client else None)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # unless an answer started: an exception escaped every handler
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = int(message["status"]), True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if not answered and scope["state"].get(CLIENT_DISCONNECTED):
                status = CLIENT_CLOSED_REQUEST  # no answer: the client left, not a server error
            try:
                self._record(scope, status, time.perf_counter() - started)
            finally:
                request_id_var.reset(id_token)
                client_ip_var.reset(ip_token)

    def _record(self, scope: Scope, status: int, duration: float) -> None:
        method = str(scope.get("method", ""))
        route = route_template(scope)
        count = self._counts.get((method, route, status))
        if count is None:
            count = self._counts[(method, route, status)] = metrics().http_requests.labels(
                method, route, str(status)
            )
        observe = self._durations.get((method, route))
        if observe is None:
            observe = self._durations[(method, route)] = metrics().http_duration.labels(method, route)
        count.inc()
        observe.observe(duration)
        log.info(
            "%s %s %d %.1fms",
            method,
            route,
            status,
            duration * 1000,
            extra={
                "method": method,
                "route": route,
                "path": scope.get("path", ""),
                "status": status,
                "duration_ms": round(duration * 1000, 1),
            },
        )
