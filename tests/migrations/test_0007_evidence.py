"""Migration 0007 (evidence): events stored before it get ``received_at`` from ``created_at``
(the server's time of the inserting write); the pseudonym key table comes and goes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, inspect, text

from examtrail.core.migrate import alembic_config, current, downgrade, upgrade
from examtrail.core.settings import Settings, get_settings
from tests.support import db


def test_backfills_received_at_and_goes_down_and_up(tmp_path: Path) -> None:
    if db.backend() == "postgresql":
        name = db.pg_database_name("evmig")
        url = db.recreate_pg_database(name)
    else:
        name = ""
        url = f"sqlite:///{tmp_path / 'evidence.db'}"
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=url)
    created = datetime(2026, 6, 1, 9, 30, 15, 123456)  # naive UTC, as stored
    engine = create_engine(url)
    try:
        upgrade(settings, "0003")
        with engine.begin() as connection:
            db.insert_tenant_and_test(connection, created)
            connection.execute(
                text(
                    "INSERT INTO candidates (id, test_pk, user_id, candidate_id, created_at) "
                    "VALUES (1, 1, 100, 'c', :c)"
                ),
                {"c": created},
            )
            connection.execute(
                text(
                    "INSERT INTO events (id, test_pk, candidate_pk, event_id, event, occurred_at_ms, doc, "
                    "file_count, created_at) VALUES (1, 1, 1, 'e', 'x', 0, '{}', 0, :c)"
                ),
                {"c": created},
            )
        upgrade(settings, "0007")
        assert current(settings) == "0007"
        with engine.connect() as connection:
            received = connection.execute(text("SELECT received_at FROM events")).scalar_one()
        assert received == int(created.replace(tzinfo=UTC).timestamp() * 1000)  # ms, truncated
        assert "pseudonym_keys" in inspect(engine).get_table_names()

        downgrade(settings, "0003")
        engine.dispose()
        assert "pseudonym_keys" not in inspect(engine).get_table_names()
        assert "received_at" not in {c["name"] for c in inspect(engine).get_columns("events")}
        upgrade(settings, "0007")
        engine.dispose()
        assert "received_at" in {c["name"] for c in inspect(engine).get_columns("events")}
    finally:
        engine.dispose()
        if name:
            with psycopg.connect(db.PG_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("runner", ["examtrail", "alembic"])
def test_a_downgrade_keeps_the_rows_of_rebuilt_tables(
    tmp_path: Path, runner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a batch ALTER rebuilds a table (copy, DROP, rename): the DROP must not cascade to
    the rows that reference it (0007's downgrade rebuilds ``events``, 0003's ``candidates``),
    whether the migrations run through ``examtrail db`` or a plain Alembic command."""
    if db.backend() == "postgresql":
        name = db.pg_database_name("downkeep")
        url = db.recreate_pg_database(name)
    else:
        name = ""
        url = f"sqlite:///{tmp_path / 'downgrade.db'}"
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=url)
    created = datetime(2026, 6, 1, 9, 30, 15)
    engine = create_engine(url)
    try:
        upgrade(settings, "0007")
        with engine.begin() as connection:
            db.insert_tenant_and_test(connection, created)
            connection.execute(
                text(
                    "INSERT INTO candidates (id, test_pk, user_id, candidate_id, created_at) "
                    "VALUES (1, 1, 100, 'c', :c)"
                ),
                {"c": created},
            )
            connection.execute(
                text(
                    "INSERT INTO events (id, test_pk, candidate_pk, event_id, event, occurred_at_ms, doc, "
                    "file_count, created_at, received_at) VALUES (1, 1, 1, 'e', 'x', 0, '{}', 1, :c, 0)"
                ),
                {"c": created},
            )
            connection.execute(
                text(
                    "INSERT INTO attachments (id, event_pk, file_name, content_type, size, sha256, "
                    "storage_key, created_at) VALUES (1, 1, 'f.png', 'image/png', 1, :h, 'k', :c)"
                ),
                {"h": "0" * 64, "c": created},
            )

        if runner == "alembic":
            # Alembic's own command: no connection handed over, the environment opens one.
            monkeypatch.setenv("EXAMTRAIL_DATABASE_URL", url)
            get_settings.cache_clear()
            try:
                command.downgrade(alembic_config(), "0002")
            finally:
                get_settings.cache_clear()
        else:
            downgrade(settings, "0002")
        engine.dispose()
        assert _row_counts(engine) == (1, 1, 1)
        upgrade(settings, "head")
        engine.dispose()
        assert _row_counts(engine) == (1, 1, 1)
    finally:
        engine.dispose()
        if name:
            db.drop_pg_database(name)


def _row_counts(engine: Engine) -> tuple[int, ...]:
    """Rows in candidates, events and attachments."""
    query = (
        "SELECT (SELECT count(*) FROM candidates), (SELECT count(*) FROM events), "
        "(SELECT count(*) FROM attachments)"
    )
    with engine.connect() as connection:
        return tuple(connection.execute(text(query)).one())
