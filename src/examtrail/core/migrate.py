"""Alembic migrations, run programmatically (``examtrail db upgrade``)."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

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
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            step(config, revision)
    finally:
        engine.dispose()


def current(settings: Settings) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = build_engine(settings)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
