"""Alembic migrations, run programmatically (``examtrail db upgrade``)."""

from __future__ import annotations

from collections.abc import Callable

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
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as connection:
            if sqlite:
                # A batch ALTER on SQLite rebuilds the table (copy, DROP, rename): with foreign
                # keys on, the DROP would cascade and delete every child row (events' files,
                # a test's candidates). The pragma only works outside a transaction.
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            try:
                with connection.begin():
                    config = alembic_config()
                    config.attributes["connection"] = connection
                    step(config, revision)
                    if sqlite:
                        _check_foreign_keys(connection)
            finally:
                if sqlite:
                    connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
    finally:
        engine.dispose()


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
