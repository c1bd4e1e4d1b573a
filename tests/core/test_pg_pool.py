"""``core.db.PgPool``: plain psycopg connections on the event loop (PostgreSQL), with the audit
entries of the status call group-committed through it."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from examtrail.audit.models import AuditEntry
from examtrail.audit.repository import insert_entry_grouped
from examtrail.auth.models import Tenant
from examtrail.core.db import (
    PgPool,
    build_async_engine,
    build_pg_pool,
    on_async_connection,
    server_closed,
)
from examtrail.runtime import Runtime
from tests.support.db import audit_row


@pytest.fixture
def pool(runtime: Runtime) -> PgPool:
    built = build_pg_pool(runtime.settings)
    if built is None:
        assert runtime.engine.dialect.name != "postgresql"
        pytest.skip("the psycopg pool is PostgreSQL's")
    return built


@pytest.fixture
def tenant_id(runtime: Runtime, pool: PgPool) -> int:
    with runtime.sessions() as session:
        tenant = Tenant(name="pooled")
        session.add(tenant)
        session.commit()
        return tenant.id


def _row(tenant_id: int, n: int) -> dict[str, Any]:
    return audit_row(
        tenant_id,
        n,
        test_id=n if n % 2 else None,
        request_id=f"r-{n}",
        details='{"n": 1}' if n % 3 == 0 else None,
    )


def _stored(runtime: Runtime) -> dict[str, AuditEntry]:
    with runtime.sessions() as session:
        return {entry.object_id: entry for entry in session.scalars(select(AuditEntry))}


def test_grouped_entries_are_committed_when_each_call_returns(
    runtime: Runtime, pool: PgPool, tenant_id: int
) -> None:
    rows = [_row(tenant_id, n) for n in range(40)]

    async def main() -> list[bool]:
        async def one(row: dict[str, Any]) -> bool:
            await insert_entry_grouped(pool, row)
            # Committed: another connection sees it as soon as the call returns.
            return row["object_id"] in await asyncio.to_thread(_stored, runtime)

        try:
            return await asyncio.gather(*(one(row) for row in rows))
        finally:
            await pool.close()

    assert all(asyncio.run(main()))
    stored = _stored(runtime)
    for row in rows:
        entry = stored[row["object_id"]]
        # The same values as the engine's insert stores (the time as UTC, to the microsecond).
        assert abs(entry.at - row["at"]) < timedelta(microseconds=1)
        assert (entry.tenant_id, entry.test_id, entry.request_id, entry.details) == (
            tenant_id,
            row["test_id"],
            row["request_id"],
            row["details"],
        )


def test_a_failed_group_fails_its_callers_and_the_next_ones_go_on(
    runtime: Runtime, pool: PgPool, tenant_id: int
) -> None:
    async def main() -> list[BaseException | None]:
        try:
            # One row breaks the foreign key: its group is one statement, none of it committed.
            results = await asyncio.gather(
                insert_entry_grouped(pool, _row(tenant_id, 100)),
                insert_entry_grouped(pool, _row(tenant_id + 10_000, 101)),
                return_exceptions=True,
            )
            await insert_entry_grouped(pool, _row(tenant_id, 102))  # a later group is unaffected
            return [r if isinstance(r, BaseException) else None for r in results]
        finally:
            await pool.close()

    errors = asyncio.run(main())
    stored = _stored(runtime)
    assert "job-102" in stored and "job-101" not in stored
    if "job-100" in stored:  # the first row was flushed alone, before the second arrived
        assert errors[0] is None and isinstance(errors[1], psycopg.errors.ForeignKeyViolation)
    else:
        assert all(isinstance(error, psycopg.errors.ForeignKeyViolation) for error in errors)


def test_connections_are_bounded_reused_and_replaced_when_dead(runtime: Runtime, pool: PgPool) -> None:
    async def backend(connection: psycopg.AsyncConnection[Any]) -> int:
        cursor = await connection.execute("SELECT pg_backend_pid() FROM pg_sleep(0.02)")
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def terminate_others(connection: psycopg.AsyncConnection[Any]) -> None:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

    async def main() -> tuple[set[int], set[int], int]:
        try:
            first = set(await asyncio.gather(*(pool.run(backend) for _ in range(4 * pool.size))))
            again = set(await asyncio.gather(*(pool.run(backend) for _ in range(pool.size))))
            # Every pooled connection dies (a server restart, as they see it) ...
            killer = await psycopg.AsyncConnection.connect(pool.conninfo, autocommit=True)
            async with killer:
                await terminate_others(killer)
            # ... and each call is still answered, on fresh connections.
            after = {await pool.run(backend) for _ in range(pool.size + 1)}
            return first, again, len(after - first)
        finally:
            await pool.close()

    first, again, fresh = asyncio.run(main())
    assert len(first) <= pool.size and again <= first
    assert fresh >= 1


def test_an_interrupted_statement_does_not_leave_its_connection_in_the_pool(pool: PgPool) -> None:
    async def slow(connection: psycopg.AsyncConnection[Any]) -> None:
        await connection.execute("SELECT pg_sleep(5)")

    async def quick(connection: psycopg.AsyncConnection[Any]) -> int:
        cursor = await connection.execute("SELECT 1")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def main() -> int:
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.run(slow), 0.2)
            return await asyncio.wait_for(pool.run(quick), 5)
        finally:
            await pool.close()

    assert asyncio.run(main()) == 1


# --- a write runs once: a dead connection is replaced before it, never re-run after it -------

_PROBE_INSERT = (
    "INSERT INTO audit_log (at, tenant_id, action, object_type, object_id) "
    "VALUES (now(), %s, 'probe', 'test', %s)"
)


async def _terminate(conninfo: str, pid: int) -> None:
    """End backend ``pid`` as a server restart would, and wait until it is gone."""
    killer = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    async with killer:
        await killer.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


async def _backend_pid(connection: psycopg.AsyncConnection[Any]) -> int:
    return connection.info.backend_pid


def _probes(runtime: Runtime, object_id: str) -> int:
    with runtime.sessions() as session:
        return len(session.scalars(select(AuditEntry).where(AuditEntry.object_id == object_id)).all())


def test_a_write_whose_connection_dies_after_its_commit_is_not_run_again(
    runtime: Runtime, pool: PgPool, tenant_id: int
) -> None:
    async def commit_then_lose_the_connection(connection: psycopg.AsyncConnection[Any]) -> None:
        await connection.execute(_PROBE_INSERT, (tenant_id, "once"))
        # The server goes away after the commit, before the caller has heard of it.
        await _terminate(pool.conninfo, connection.info.backend_pid)
        await connection.execute("SELECT 1")

    async def main() -> None:
        try:
            await pool.run(_backend_pid)  # the write below gets a pooled connection
            with pytest.raises(psycopg.OperationalError):
                await pool.run(commit_then_lose_the_connection, rerun=False)
        finally:
            await pool.close()

    asyncio.run(main())
    assert _probes(runtime, "once") == 1


def test_a_pooled_connection_the_server_closed_is_replaced_before_a_write(
    runtime: Runtime, pool: PgPool, tenant_id: int
) -> None:
    async def main() -> tuple[int, int]:
        try:
            before = await pool.run(_backend_pid)
            await _terminate(pool.conninfo, before)
            # A grouped audit insert (never re-run) on what the pool holds: a dead connection.
            await insert_entry_grouped(pool, _row(tenant_id, 7))
            return before, await pool.run(_backend_pid)
        finally:
            await pool.close()

    before, after = asyncio.run(main())
    assert after != before
    assert _probes(runtime, "job-7") == 1


def test_the_engine_never_runs_a_write_twice_and_replaces_a_closed_connection(
    runtime: Runtime, pool: PgPool, tenant_id: int
) -> None:
    async def main() -> None:
        engine = build_async_engine(runtime.settings)
        assert engine is not None
        conninfo = pool.conninfo

        async def pid_of(connection: AsyncConnection) -> int:
            raw = await connection.get_raw_connection()
            return int(raw.driver_connection.info.backend_pid)  # type: ignore[union-attr]

        async def commit_then_lose_the_connection(connection: AsyncConnection) -> None:
            await connection.exec_driver_sql(_PROBE_INSERT, (tenant_id, "engine-once"))
            await _terminate(conninfo, await pid_of(connection))
            await connection.exec_driver_sql("SELECT 1")

        try:
            first = await on_async_connection(engine, pid_of)
            with pytest.raises(DBAPIError):
                await on_async_connection(engine, commit_then_lose_the_connection, rerun=False)
            # The pooled connection the server closed is refused at checkout: a write on the
            # engine (group commit, never re-run) goes to a fresh one.
            second = await on_async_connection(engine, pid_of)
            assert second != first
            await _terminate(conninfo, second)
            await insert_entry_grouped(engine, _row(tenant_id, 8))
            assert await on_async_connection(engine, pid_of) != second
        finally:
            await engine.dispose()
            await pool.close()

    asyncio.run(main())
    assert _probes(runtime, "engine-once") == 1
    assert _probes(runtime, "job-8") == 1


def test_a_live_connection_on_a_high_descriptor_is_not_taken_for_closed(pool: PgPool) -> None:
    # A long-running process holds many descriptors; select() refused those past 1024, and
    # every pooled connection then looked closed (the engine's checkout gave up: a 500).
    held = [os.dup(0) for _ in range(1100)]
    try:

        async def main() -> tuple[int, bool, int]:
            try:
                connection = await psycopg.AsyncConnection.connect(pool.conninfo, autocommit=True)
                async with connection:
                    return connection.pgconn.socket, server_closed(connection), await _backend_pid(connection)
            finally:
                await pool.close()

        fd, closed, _ = asyncio.run(main())
    finally:
        for descriptor in held:
            os.close(descriptor)
    assert fd > 1024
    assert not closed
