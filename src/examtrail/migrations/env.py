"""Alembic environment: runs against the engine of the current settings."""

from __future__ import annotations

from alembic import context

import examtrail.models  # noqa: F401  (registers every table)
from examtrail.core.db import Base, build_engine
from examtrail.core.migrate import migration_transaction
from examtrail.core.settings import get_settings

config = context.config
connection = config.attributes.get("connection")


def run(connection_: object) -> None:
    context.configure(
        connection=connection_,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite needs table rebuilds for most ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    # A plain ``alembic upgrade``: the same transaction (and SQLite pragmas) as ``examtrail db``.
    engine = build_engine(get_settings())
    try:
        with migration_transaction(engine) as conn:
            run(conn)
    finally:
        engine.dispose()
