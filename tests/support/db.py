"""Test databases: SQLite (default) or PostgreSQL, chosen by EXAMTRAIL_TEST_DB.

PostgreSQL gets one database per pytest-xdist worker, migrated once and emptied
between tests; SQLite gets a fresh copy of a migrated template file per test.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, create_engine, text

from examtrail.core.db import Base, utcnow
from examtrail.core.migrate import upgrade
from examtrail.core.settings import Settings

PG_ADMIN_DSN = os.environ.get("EXAMTRAIL_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_database_name(suffix: str) -> str:
    """A database name unique to this checkout (prefix) and xdist worker."""
    prefix = os.environ.get("EXAMTRAIL_TEST_PG_PREFIX", "examtrail_test")
    return f"{prefix}_{suffix}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


def backend() -> str:
    return os.environ.get("EXAMTRAIL_TEST_DB", "sqlite")


def pg_url(database: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


def recreate_pg_database(name: str, options: str = "") -> str:
    """A fresh database; ``options`` are CREATE DATABASE's (e.g. a locale)."""
    drop_pg_database(name)
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" {options}')
    return pg_url(name)


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def insert_tenant_and_test(connection: Connection, created: datetime) -> None:
    """Tenant 1 and its test 7 (pk 1) as raw rows: what the migration tests' data hangs on."""
    connection.execute(text("INSERT INTO tenants (id, name, created_at) VALUES (1, 't', :c)"), {"c": created})
    connection.execute(
        text(
            "INSERT INTO tests (id, tenant_id, external_id, title, created_at, updated_at) "
            "VALUES (1, 1, 7, 'x', :c, :c)"
        ),
        {"c": created},
    )


def insert_candidate_with_events(connection: Connection, created: datetime, event_ids: list[str]) -> None:
    """Candidate 1 (``userId`` 100) of test pk 1 and its events, all at time 0, event ``n``
    (from 1) with pk ``n`` and change stamp ``n + 1`` as SQLite's ingest path stamped them."""
    connection.execute(
        text(
            "INSERT INTO candidates (id, test_pk, user_id, candidate_id, created_at, ingest_xid) "
            "VALUES (1, 1, 100, 'c', :c, 1)"
        ),
        {"c": created},
    )
    for n, event_id in enumerate(event_ids, start=1):
        connection.execute(
            text(
                "INSERT INTO events (id, test_pk, candidate_pk, event_id, event, occurred_at_ms, "
                "doc, file_count, created_at, ingest_xid) "
                "VALUES (:n, 1, 1, :e, 'x', 0, '{}', 0, :c, :n + 1)"
            ),
            {"n": n, "e": event_id, "c": created},
        )


def migrate_template(path: Path) -> None:
    upgrade(Settings(data_dir=path.parent, database_url=f"sqlite:///{path}"))


def copy_sqlite(template: Path, target_dir: Path) -> str:
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "examtrail.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def truncate_all(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


def audit_row(tenant_id: int, n: int, **extra: Any) -> dict[str, Any]:
    """An ``audit_log`` row as the audit service makes them (object id ``job-<n>``)."""
    return {
        "at": utcnow(),
        "tenant_id": tenant_id,
        "client_id": "c",
        "action": "export.link_issued",
        "object_type": "export",
        "object_id": f"job-{n}",
        "test_id": 1,
        "request_id": None,
        "source_ip": None,
        "details": None,
        **extra,
    }
