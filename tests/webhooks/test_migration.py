"""Migration 0002: matches the models, and upgrades/downgrades on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import examtrail.models  # noqa: F401  (registers every table)
from examtrail.core.db import Base
from examtrail.core.migrate import current, upgrade
from examtrail.core.settings import Settings
from tests.support import db

TABLES = {"webhook_subscriptions", "webhook_deliveries", "webhook_attempts"}


def _table_of(diff: object) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff
    for part in item if isinstance(item, tuple) else ():
        table = getattr(part, "table", None)
        name = getattr(table, "name", None) or getattr(part, "name", None)
        if isinstance(name, str) and name.startswith("webhook_"):
            return name
        if isinstance(part, str) and part.startswith("webhook_"):
            return part
    return None


def test_models_match_the_migrated_schema(settings: Settings) -> None:
    engine = create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) >= TABLES
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diffs = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    ours = [diff for diff in diffs if _table_of(diff)]
    assert ours == []


def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    if db.backend() == "postgresql":
        name = db.pg_database_name("whmig")
        url = db.recreate_pg_database(name)
    else:
        name = ""
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=url)
    try:
        upgrade(settings, "0002")
        assert current(settings) == "0002"
        upgrade_tables = _tables(url)
        assert upgrade_tables >= TABLES

        from alembic import command

        from examtrail.core.db import build_engine
        from examtrail.core.migrate import alembic_config

        engine = build_engine(settings)
        try:
            with engine.begin() as connection:
                config = alembic_config()
                config.attributes["connection"] = connection
                command.downgrade(config, "0001")
        finally:
            engine.dispose()
        assert current(settings) == "0001"
        assert not (_tables(url) & TABLES)

        upgrade(settings, "0002")
        assert _tables(url) == upgrade_tables
    finally:
        if name:
            with psycopg.connect(db.PG_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
