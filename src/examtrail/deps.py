"""FastAPI dependencies shared by features: the app's runtime and request-scoped sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import nullcontext
from typing import Annotated
from weakref import WeakKeyDictionary

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from examtrail.core.db import begin_write
from examtrail.runtime import Runtime


# Dependencies that only read attributes are ``async``: FastAPI runs a sync dependency on
# the threadpool, a hop per dependency per request that the framework-bound routes feel.
async def get_runtime_dep(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime_dep)]


def _end(session: Session) -> None:
    session.rollback()
    session.close()


async def get_session(runtime: RuntimeDep) -> AsyncIterator[Session]:
    # Routes commit explicitly (the request is the edge); anything uncommitted is dropped.
    # Creating a session does no I/O (it connects on first use); ending one does.
    session = runtime.sessions()
    try:
        yield session
    finally:
        await run_in_threadpool(_end, session)


SessionDep = Annotated[Session, Depends(get_session)]


# SQLite: requests that write wait for their turn here, in the event loop, not on a
# worker thread: threads blocked on the database's single write lock would fill the
# threadpool while the writer that holds it waits for a thread to commit (the
# "database is locked" 503s under 100 concurrent clients).
_write_gates: WeakKeyDictionary[Engine, WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    WeakKeyDictionary()
)


def _write_gate(engine: Engine) -> asyncio.Lock | None:
    if engine.dialect.name != "sqlite":
        return None
    per_loop = _write_gates.setdefault(engine, WeakKeyDictionary())
    return per_loop.setdefault(asyncio.get_running_loop(), asyncio.Lock())


async def get_write_session(runtime: RuntimeDep) -> AsyncIterator[Session]:
    """A session for routes that write: its transaction starts as a writer."""
    gate = _write_gate(runtime.engine)
    async with gate if gate is not None else nullcontext():
        session = runtime.sessions()
        try:
            await run_in_threadpool(begin_write, session)
            yield session
        finally:
            await run_in_threadpool(_end, session)


WriteSessionDep = Annotated[Session, Depends(get_write_session)]
