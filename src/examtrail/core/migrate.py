"""Alembic migrations, run programmatically (``examtrail db upgrade``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

from examtrail.core.db import build_engine
from examtrail.core.settings import Settings


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "examtrail:migrations")
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    _step(settings, command.upgrade, revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Back to ``revision`` (the migration tests walk every revision down and up again)."""
    _step(settings, command.downgrade, revision)


def _step(settings: Settings, step: Callable[[Config, str], None], revision: str) -> None:
    """Run Alembic's ``step`` to ``revision`` in one transaction."""
    engine = build_engine(settings)
    try:
        with migration_transaction(engine) as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            step(config, revision)
    finally:
        engine.dispose()


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction for migrations (committed if the block succeeds).

    On SQLite foreign keys are off meanwhile: a batch ALTER rebuilds the table (copy, DROP,
    rename), and with them on the DROP would cascade and delete every child row (events'
    files, a test's candidates). The pragma only works outside a transaction; the references
    are checked before the commit instead."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            _foreign_keys(connection, on=False)
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                _foreign_keys(connection, on=True)


def _foreign_keys(connection: Connection, *, on: bool) -> None:
    # At the driver: through SQLAlchemy the statement would begin a transaction first.
    connection.connection.dbapi_connection.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")  # type: ignore[union-attr]


def _check_foreign_keys(connection: Connection) -> None:
    """With the checks off, a migration could leave a dangling reference: refuse to commit it."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the migration left rows whose references are missing: {broken[:5]}")


def current(settings: Settings) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = build_engine(settings)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
