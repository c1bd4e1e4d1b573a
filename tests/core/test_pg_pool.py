"""``core.db.PgPool``: plain psycopg connections on the event loop (PostgreSQL), with the audit
entries of the status call group-committed through it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from examtrail.audit.models import AuditEntry
from examtrail.audit.repository import insert_entry_grouped
from examtrail.auth.models import Tenant
from examtrail.core.db import PgPool, build_pg_pool
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
