"""How ``examtrail serve`` runs uvicorn: the HTTP parser, and timeouts against slow or idle clients.

The parser is ``httptools`` (uvicorn's C parser; h11, pure Python, cost about a third of a
framework-bound request), on the ``uvloop`` event loop where installed. uvicorn closes idle keep-alive
connections (``timeout_keep_alive``) but never a connection that dribbles its request headers,
or opens and sends nothing. Here every request's headers must arrive complete within
``EXAMTRAIL_HTTP_HEADER_TIMEOUT_SECONDS`` (default 10) from its first byte (or from the
connection's opening), else the connection is closed. Request bodies are not timed here
(uploads may be large and slow): internet-facing deployments belong behind a reverse proxy
(nginx, HAProxy, a cloud load balancer) that buffers requests and enforces body and
connection limits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from examtrail.core.settings import Settings, get_settings


class HeaderDeadline:
    """A deadline for each request's headers, mixed into one of uvicorn's HTTP protocols.

    Both protocols keep the request being answered in ``cycle`` (a new one once a request's
    headers are complete) and mark it ``response_complete`` when its answer has been sent.
    """

    # Seconds; None: ``EXAMTRAIL_HTTP_HEADER_TIMEOUT_SECONDS`` (read in each server process).
    header_timeout: float | None = None

    # Provided by the uvicorn protocol this is mixed into.
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    logger: logging.Logger

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_seconds = (
            self.header_timeout
            if self.header_timeout is not None
            else get_settings().http_header_timeout_seconds
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers() and self._header_deadline is None:
            self._arm()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)  # type: ignore[misc]
        if not self._awaiting_headers():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _awaiting_headers(self) -> bool:
        return self.cycle is None or bool(self.cycle.response_complete)

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self._header_seconds, self._expired)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expired(self) -> None:
        self._header_deadline = None
        if self._awaiting_headers() and not self.transport.is_closing():
            self.logger.info(
                "closing a connection: no complete request headers within %gs", self._header_seconds
            )
            self.transport.close()


class HeaderTimeoutHttpToolsProtocol(HeaderDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol (what ``examtrail serve`` uses) with the header deadline."""


class HeaderTimeoutH11Protocol(HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with the header deadline (where httptools is not installed)."""


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The connection settings ``examtrail serve`` gives uvicorn."""
    return {
        "http": HeaderTimeoutHttpToolsProtocol,
        "loop": "auto",  # uvloop when installed (uvicorn[standard] installs it)
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "timeout_graceful_shutdown": 30,
        # --workers: a child that answers no health ping for this long is replaced. uvicorn's 5 s
        # killed children still importing on a loaded machine, again and again.
        "timeout_worker_healthcheck": 30,
    }
