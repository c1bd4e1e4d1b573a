"""Migrations: the migrated schema is exactly the models', and every revision goes down and up
again, on SQLite and on PostgreSQL (whichever this run tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

import examtrail.models  # noqa: F401  (registers every table)
from examtrail.core.db import Base
from examtrail.core.migrate import alembic_config, current, downgrade, upgrade
from examtrail.core.settings import Settings
from tests.support import db

# Alembic's own bookkeeping table is the only one without a model.
NOT_MODELLED = {"alembic_version"}


def test_every_table_of_the_models_matches_the_migrated_schema(settings: Settings) -> None:
    engine = create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) - NOT_MODELLED == set(Base.metadata.tables)
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diffs = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diffs == []


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[Settings]:
    if db.backend() == "postgresql":
        name = db.pg_database_name("migrations")
        url = db.recreate_pg_database(name)
    else:
        name = ""
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    yield Settings(_env_file=None, data_dir=tmp_path, database_url=url)
    if name:
        with psycopg.connect(db.PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tables(settings: Settings) -> set[str]:
    engine = create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names()) - NOT_MODELLED
    finally:
        engine.dispose()


def test_every_revision_downgrades_and_upgrades_again(empty_database: Settings) -> None:
    settings = empty_database
    revisions = [script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    revisions.reverse()  # oldest first
    tables_at: dict[str, set[str]] = {}
    for revision in revisions:
        upgrade(settings, revision)
        assert current(settings) == revision
        tables_at[revision] = _tables(settings)
    assert tables_at[revisions[-1]] == set(Base.metadata.tables)

    # Step down one revision at a time: each downgrade restores the previous schema exactly.
    for newer, older in zip(reversed(revisions), reversed(revisions[:-1]), strict=False):
        downgrade(settings, older)
        assert current(settings) == older
        assert _tables(settings) == tables_at[older], f"downgrade of {newer} left tables behind"
    downgrade(settings, "base")
    assert _tables(settings) == set()

    upgrade(settings, "head")
    assert _tables(settings) == tables_at[revisions[-1]]
