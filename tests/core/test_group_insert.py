"""Group commit of one INSERT from concurrent requests on the async engine (PostgreSQL only:
SQLite has no async engine)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from examtrail.audit.models import AuditEntry
from examtrail.auth.models import Tenant
from examtrail.core.db import build_async_engine, group_insert
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


def test_a_failed_flush_fails_its_callers_and_the_next_ones_go_on(runtime: Runtime, tenant_id: int) -> None:
    statement = insert(AuditEntry)

    async def main() -> list[BaseException | None]:
        engine = build_async_engine(runtime.settings)
        assert engine is not None
        grouped = group_insert(engine, statement)
        try:
            # One row breaks the foreign key: the batch it is in is one statement, so none
            # of that batch is committed and each of its callers gets the error.
            results = await asyncio.gather(
                grouped.insert(audit_row(tenant_id, 100)),
                grouped.insert(audit_row(tenant_id + 10_000, 101)),
                return_exceptions=True,
            )
            await grouped.insert(audit_row(tenant_id, 102))  # a later flush is unaffected
            return [r if isinstance(r, BaseException) else None for r in results]
        finally:
            await engine.dispose()

    errors = asyncio.run(main())
    stored = _stored(runtime)
    assert "job-102" in stored
    if "job-100" in stored:  # the first row was flushed alone, before the second arrived
        assert errors[0] is None and isinstance(errors[1], IntegrityError)
    else:
        assert all(isinstance(error, IntegrityError) for error in errors)
    assert "job-101" not in stored
