"""Migration 0003 (export options, change stamps): matches the models; up, down, up."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import examtrail.models  # noqa: F401  (registers every table)
from examtrail.core.db import Base
from examtrail.core.migrate import current, downgrade, upgrade
from examtrail.core.settings import Settings
from tests.support import db

TABLES = {"events", "candidates", "export_jobs"}
NEW_COLUMNS = {
    "events": {"ingest_xid"},
    "candidates": {"ingest_xid"},
    "export_jobs": {"options", "format", "compression", "next_since", "files_written"},
}


def _mentions_our_tables(diff: object) -> bool:
    return any(name in repr(diff) for name in TABLES)


def test_models_match_the_migrated_schema(settings: Settings) -> None:
    engine = create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diffs = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert [diff for diff in diffs if _mentions_our_tables(diff)] == []


def _columns(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            return {table: {c["name"] for c in inspector.get_columns(table)} for table in TABLES}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    if db.backend() == "postgresql":
        name = db.pg_database_name("exmig")
        url = db.recreate_pg_database(name)
    else:
        name = ""
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=url)
    try:
        upgrade(settings, "0003")
        assert current(settings) == "0003"
        for table, columns in NEW_COLUMNS.items():
            assert columns <= _columns(url)[table]

        downgrade(settings, "0002")
        assert current(settings) == "0002"
        for table, columns in NEW_COLUMNS.items():
            assert not (columns & _columns(url)[table])
        upgrade(settings, "0003")
        for table, columns in NEW_COLUMNS.items():
            assert columns <= _columns(url)[table]
    finally:
        if name:
            with psycopg.connect(db.PG_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
