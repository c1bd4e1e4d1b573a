"""Migration 0008: ``tests.change_seq`` starts above every change stamp stored before it on
SQLite (so no write after the upgrade reuses one an earlier cursor covers), and the
column goes and comes back without touching the test's rows."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from examtrail.core.migrate import current, downgrade, upgrade
from examtrail.core.settings import Settings
from tests.support import db

CREATED = datetime(2026, 6, 1, 9, 30, 15)  # naive UTC, as stored


def _seed(url: str) -> None:
    """A test with a candidate and two events, stamped as SQLite's ingest path stamped them."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            db.insert_tenant_and_test(connection, CREATED)
            db.insert_candidate_with_events(connection, CREATED, ["e1", "e2"])
    finally:
        engine.dispose()


def _state(url: str) -> tuple[set[str], int, int]:
    """(columns of ``tests``, candidates, events)."""
    engine = create_engine(url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("tests")}
        with engine.connect() as connection:
            candidates = connection.execute(text("SELECT count(*) FROM candidates")).scalar_one()
            events = connection.execute(text("SELECT count(*) FROM events")).scalar_one()
        return columns, candidates, events
    finally:
        engine.dispose()


def test_starts_above_every_stored_stamp_and_goes_down_and_up(tmp_path: Path) -> None:
    postgres = db.backend() == "postgresql"
    name = db.pg_database_name("seqmig") if postgres else ""
    url = db.recreate_pg_database(name) if postgres else f"sqlite:///{tmp_path / 'seq.db'}"
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=url)
    try:
        upgrade(settings, "0007")
        _seed(url)
        upgrade(settings, "0008")
        assert current(settings) == "0008"
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                seq = connection.execute(text("SELECT change_seq FROM tests WHERE id = 1")).scalar_one()
        finally:
            engine.dispose()
        # PostgreSQL's stamps are transaction ids: the column is unused there.
        assert seq == 0 if postgres else seq > 3
        columns, candidates, events = _state(url)
        assert "change_seq" in columns and (candidates, events) == (1, 2)

        downgrade(settings, "0007")
        columns, candidates, events = _state(url)
        assert "change_seq" not in columns
        assert (candidates, events) == (1, 2)  # no rebuild of ``tests`` cascaded into its rows
        upgrade(settings, "0008")
        assert _state(url)[1:] == (1, 2)
    finally:
        if name:
            db.drop_pg_database(name)
