"""FastAPI dependencies shared by features: the app's runtime and request-scoped sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import nullcontext
from typing import Annotated, TypeVar
from weakref import WeakKeyDictionary

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from examtrail.core.db import PgPool, begin_write
from examtrail.runtime import Runtime

T = TypeVar("T")


# Dependencies that only read attributes are ``async``: FastAPI runs a sync dependency on
# the threadpool, a hop per dependency per request that the framework-bound routes feel.
async def get_runtime_dep(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime_dep)]


def _end(session: Session) -> None:
    session.rollback()
    session.close()


async def _finish(session: Session) -> None:
    # Ending a session holding a connection does I/O (rollback, back to the pool): on a thread.
    # One that committed, or never connected, holds none: closed here, without a thread hop.
    if session.in_transaction():
        await run_in_threadpool(_end, session)
    else:
        session.close()


async def get_session(runtime: RuntimeDep) -> AsyncIterator[Session]:
    # Routes commit explicitly (the request is the edge); anything uncommitted is dropped.
    # Creating a session does no I/O (it connects on first use); ending one does.
    session = runtime.sessions()
    try:
        yield session
    finally:
        await _finish(session)


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
            await _finish(session)


WriteSessionDep = Annotated[Session, Depends(get_write_session)]


# --- a whole unit of work in one threadpool hop (async routes) ----------------------------------


def _unit(runtime: Runtime, work: Callable[[Session], T], write: bool) -> T:
    session = runtime.sessions()
    try:
        if write:
            begin_write(session)
        return work(session)
    finally:
        _end(session)


async def in_session(runtime: Runtime, work: Callable[[Session], T]) -> T:
    """``work`` with a fresh session on one threadpool thread (it commits what it keeps)."""
    return await run_in_threadpool(_unit, runtime, work, False)


async def in_write_session(runtime: Runtime, work: Callable[[Session], T]) -> T:
    """As :func:`in_session`, the transaction started as a writer (SQLite: after waiting for
    this process's turn in the event loop, as :func:`get_write_session` does)."""
    gate = _write_gate(runtime.engine)
    async with gate if gate is not None else nullcontext():
        return await run_in_threadpool(_unit, runtime, work, True)


# PostgreSQL: the engine on psycopg's async driver (``core.db.build_async_engine``), made by the
# app at start in its event loop; None on SQLite.
async def get_async_engine(request: Request) -> AsyncEngine | None:
    engine: AsyncEngine | None = getattr(request.app.state, "async_engine", None)
    return engine


AsyncEngineDep = Annotated[AsyncEngine | None, Depends(get_async_engine)]


# PostgreSQL: plain psycopg connections for the status call (``core.db.PgPool``), made by the app
# at start in its event loop; None on SQLite.
async def get_pg_pool(request: Request) -> PgPool | None:
    pool: PgPool | None = getattr(request.app.state, "pg_pool", None)
    return pool


PgPoolDep = Annotated[PgPool | None, Depends(get_pg_pool)]
