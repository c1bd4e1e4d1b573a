"""The access log and HTTP metrics: one line and one count per request, after its answer.

Requests are labelled by their route *template* (``/v1/test/{testId}/events``), never
the raw path, so log searches group naturally and metric labels stay few; a request no
route matched is ``unmatched``. Runs inside :class:`RequestContextMiddleware`, so the
line carries the request id.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from examtrail.core.metrics import UNMATCHED_ROUTE, metrics

log = logging.getLogger("examtrail.access")


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless an answer started: an exception escaped every handler

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            duration = time.perf_counter() - started
            method = str(scope.get("method", ""))
            route = route_template(scope)
            m = metrics()
            m.http_requests.labels(method, route, str(status)).inc()
            m.http_duration.labels(method, route).observe(duration)
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
