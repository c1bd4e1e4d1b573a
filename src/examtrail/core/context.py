"""Who and what the current request is, for logs and the audit trail.

The request middleware (``core.access``) sets the request id (the caller's ``X-Request-ID``
when it is sane, else a new one) and the client address in context variables, and echoes the
id in the response. Context variables follow the request into the thread pool that runs
synchronous routes, so services read them without threading them through every call.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

REQUEST_ID_HEADER = "x-request-id"
# Ids from callers are logged and stored: short, printable, no separators that break log lines.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("examtrail_request_id", default=None)
client_ip_var: ContextVar[str | None] = ContextVar("examtrail_client_ip", default=None)


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a background job or webhook delivery works on, for its log lines."""

    job_id: str | None = None
    test_id: int | None = None
    tenant: int | None = None
    delivery_id: str | None = None


job_var: ContextVar[JobContext | None] = ContextVar("examtrail_job", default=None)


@contextmanager
def job_context(
    *,
    job_id: str | None = None,
    test_id: int | None = None,
    tenant: int | None = None,
    delivery_id: str | None = None,
) -> Iterator[JobContext]:
    """Log lines inside carry these fields (the job or delivery runner sets them)."""
    context = JobContext(job_id=job_id, test_id=test_id, tenant=tenant, delivery_id=delivery_id)
    token = job_var.set(context)
    try:
        yield context
    finally:
        job_var.reset(token)


def current_job() -> JobContext | None:
    return job_var.get()


def current_request_id() -> str | None:
    return request_id_var.get()


def current_client_ip() -> str | None:
    return client_ip_var.get()


# Random bits are read ahead for this many ids at a time: one system call (which lets go of the
# GIL, and under load waits to get it back from the writer threads) per batch, not per request.
_IDS_PER_READ = 256
_ids: deque[str] = deque()
os.register_at_fork(after_in_child=_ids.clear)  # a forked process never repeats its parent's ids


def new_request_id() -> str:
    """128 random bits as 32 hex digits (the form uuid4().hex had)."""
    try:
        return _ids.popleft()  # atomic: threads never get the same id
    except IndexError:
        block = os.urandom(16 * _IDS_PER_READ).hex()
        _ids.extend(block[start : start + 32] for start in range(32, len(block), 32))
        return block[:32]


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1").strip()
            if _SANE_ID.match(candidate):
                return candidate
            break
    return new_request_id()
