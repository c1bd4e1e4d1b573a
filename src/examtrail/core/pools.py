"""A small bounded thread pool that async routes await, refusing work when it is full.

Blocking work that may take long (a webhook endpoint's verification POST) runs here,
off the server's request threads and event loop, so the rest of the API keeps
answering. When every thread is busy, ``run`` raises :class:`PoolFull` at once instead
of queueing: the caller answers 503 and the client retries later.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class PoolFull(Exception):
    """Every thread of the pool is busy."""


class BoundedPool:
    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self._slots = threading.BoundedSemaphore(size)
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on a pool thread and await it; raises PoolFull when none is free."""
        if not self._slots.acquire(blocking=False):
            raise PoolFull

        def call() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                self._slots.release()

        # The caller's context variables (request id, client address) follow the call.
        context = contextvars.copy_context()
        try:
            future = self._executor.submit(context.run, call)
        except BaseException:
            self._slots.release()
            raise
        # A cancelled await (client gone) leaves the call to finish; its slot frees itself.
        return await asyncio.wrap_future(future)


_pools: dict[tuple[str, int], BoundedPool] = {}
_lock = threading.Lock()


def shared_pool(name: str, size: int) -> BoundedPool:
    """The process's pool of this name and size (created on first use)."""
    with _lock:
        pool = _pools.get((name, size))
        if pool is None:
            pool = _pools[(name, size)] = BoundedPool(size, name)
        return pool
