"""A TCP proxy that slows traffic down, like a congested link between a worker and S3.

Used by fault tests that must act while an export is still uploading: the export runs
for real, only slower, without any test hook in the service's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from tests.support.ports import free_port

_CHUNK = 16 * 1024


class ThrottledProxy:
    """Forwards 127.0.0.1:<port> to ``target``, each direction at ``bytes_per_second``."""

    def __init__(self, target_host: str, target_port: int, bytes_per_second: int) -> None:
        self.target = (target_host, target_port)
        self.rate = bytes_per_second
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="throttled-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThrottledProxy:
        self._thread.start()
        assert self._ready.wait(10), "proxy did not start"
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> ThrottledProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        sent = 0
        try:
            while chunk := await reader.read(_CHUNK):
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                # Sleep until the bytes sent so far fit the rate.
                ahead = sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
