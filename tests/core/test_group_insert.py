"""Group commit of one INSERT from concurrent requests on the async engine (PostgreSQL only:
SQLite has no async engine)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from examtrail.audit.models import AuditEntry
from examtrail.audit.repository import insert_entry_grouped
from examtrail.auth.models import Tenant
from examtrail.core.db import GroupInsert, build_async_engine, build_pg_pool, group_insert
from examtrail.runtime import Runtime
from tests.support.db import audit_row


@pytest.fixture
def tenant_id(runtime: Runtime) -> int:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("the async engine is PostgreSQL's")
    with runtime.sessions() as session:
        tenant = Tenant(name="grouped")
        session.add(tenant)
        session.commit()
        return tenant.id


def _stored(runtime: Runtime) -> set[str]:
    with runtime.sessions() as session:
        return set(session.scalars(select(AuditEntry.object_id)))


def test_concurrent_rows_are_all_committed_when_each_call_returns(runtime: Runtime, tenant_id: int) -> None:
    statement = insert(AuditEntry)

    async def main() -> list[bool]:
        engine = build_async_engine(runtime.settings)
        assert engine is not None
        grouped = group_insert(engine, statement)
        assert group_insert(engine, statement) is grouped

        async def one(n: int) -> bool:
            await grouped.insert(audit_row(tenant_id, n))
            # Committed: another connection sees it as soon as the call returns.
            return f"job-{n}" in await asyncio.to_thread(_stored, runtime)

        try:
            return await asyncio.gather(*(one(n) for n in range(40)))
        finally:
            await engine.dispose()

    assert all(asyncio.run(main()))
    assert {f"job-{n}" for n in range(40)} <= _stored(runtime)


@pytest.mark.parametrize("through", ["engine", "pg_pool"])
def test_a_bad_row_fails_only_its_caller_and_the_next_ones_go_on(
    runtime: Runtime, tenant_id: int, through: str
) -> None:
    """One row breaks the foreign key (its tenant is gone): the group's statement committed
    nothing, so its rows are written one by one and only the bad row's caller gets the error."""

    async def main() -> list[BaseException | None]:
        engine = build_async_engine(runtime.settings)
        assert engine is not None
        pool = build_pg_pool(runtime.settings)
        assert pool is not None
        database: Any = engine if through == "engine" else pool
        try:
            results = await asyncio.gather(
                *(insert_entry_grouped(database, audit_row(tenant_id, n)) for n in (100, 102)),
                insert_entry_grouped(database, audit_row(tenant_id + 10_000, 101)),
                return_exceptions=True,
            )
            await insert_entry_grouped(database, audit_row(tenant_id, 103))  # a later flush
            return [r if isinstance(r, BaseException) else None for r in results]
        finally:
            await pool.close()
            await engine.dispose()

    errors = asyncio.run(main())
    assert errors[:2] == [None, None]
    assert isinstance(errors[2], IntegrityError | psycopg.IntegrityError)
    stored = _stored(runtime)
    assert {"job-100", "job-102", "job-103"} <= stored and "job-101" not in stored


def _rows_of(batch: list[dict[str, Any]]) -> list[int]:
    return [row["n"] for row in batch]


def test_only_row_errors_are_retried_one_by_one() -> None:
    """A constraint or data error: the rows again one by one. Anything else (the connection, the
    commit) may have committed the group: every caller gets the error, nothing runs again."""
    writes: list[list[int]] = []

    async def write(batch: list[dict[str, Any]]) -> None:
        writes.append(_rows_of(batch))
        if any(row["n"] == 2 for row in batch):
            raise psycopg.errors.ForeignKeyViolation("no such tenant")
        if any(row["n"] == 9 for row in batch):
            raise psycopg.OperationalError("the server closed the connection")

    async def main(numbers: list[int]) -> list[str]:
        grouped = GroupInsert(write)
        results = await asyncio.gather(*(grouped.insert({"n": n}) for n in numbers), return_exceptions=True)
        return [type(r).__name__ if isinstance(r, BaseException) else "ok" for r in results]

    assert asyncio.run(main([1, 2, 3])) == ["ok", "ForeignKeyViolation", "ok"]
    assert writes == [[1, 2, 3], [1], [2], [3]]
    writes.clear()
    assert asyncio.run(main([7, 8, 9])) == ["OperationalError"] * 3
    assert writes == [[7, 8, 9]]
