"""Fixtures for audit tests: an auditor's token and a direct view of the log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from examtrail.audit.models import AuditEntry
from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client, get_token
from tests.support.receiver import Receiver


@pytest.fixture
def auditor(http: TestClient, runtime: Runtime) -> dict[str, str]:
    """Bearer headers of a client of tenant 'uni-a' with only the `audit` scope."""
    client_id, key = create_client(runtime, "uni-a", "audit")
    return bearer(get_token(http, client_id, key))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "receiver.log") as running:
        yield running


class Log:
    """Reads the audit log straight from the database (the API is tested separately)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def rows(self, action: str | None = None) -> list[AuditEntry]:
        with self.runtime.sessions() as session:
            stmt = select(AuditEntry).order_by(AuditEntry.id)
            if action is not None:
                stmt = stmt.where(AuditEntry.action == action)
            return list(session.scalars(stmt))

    def count(self) -> int:
        return len(self.rows())

    def since(self, mark: int) -> list[AuditEntry]:
        return [row for row in self.rows() if row.id > mark]

    def mark(self) -> int:
        rows = self.rows()
        return rows[-1].id if rows else 0


@pytest.fixture
def audit_log(runtime: Runtime) -> Log:
    return Log(runtime)


def only(rows: list[AuditEntry]) -> AuditEntry:
    assert len(rows) == 1, [(r.action, r.object_id) for r in rows]
    return rows[0]


def details(row: AuditEntry) -> dict[str, Any]:
    import orjson

    return orjson.loads(row.details) if row.details else {}
