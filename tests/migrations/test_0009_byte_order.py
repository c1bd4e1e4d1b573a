"""Migration 0009: events of the same millisecond, and an event's files, come out in code
point order of their ids and names on PostgreSQL whatever the database's collation, as on
SQLite; the migration keeps the rows and goes down and up again."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from examtrail.core.migrate import downgrade, upgrade
from examtrail.core.settings import Settings
from tests.support import db

CREATED = datetime(2026, 6, 1, 9, 30, 15)
# An ICU English collation orders these ignoring case and punctuation first: not by code point.
IDS = ["ab", "aB", "Ab", "a-b", "a_b", "é", "e", "Z", "z", "10", "9"]


def _seed(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            db.insert_tenant_and_test(connection, CREATED)
            db.insert_candidate_with_events(connection, CREATED, IDS)
            for n, event_id in enumerate(IDS, start=1):
                connection.execute(
                    text(
                        "INSERT INTO attachments (event_pk, file_name, content_type, size, sha256, "
                        "storage_key, created_at) VALUES (1, :f, 'text/plain', 0, '', :k, :c)"
                    ),
                    {"f": f"{event_id}.txt", "k": f"k{n}", "c": CREATED},
                )
    finally:
        engine.dispose()


def _orders(url: str) -> tuple[list[str], list[str]]:
    """The event ids and file names in the export's order (``ingest.read_model``'s ORDER BYs)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            events = connection.execute(
                text("SELECT event_id FROM events ORDER BY candidate_pk, occurred_at_ms, event_id")
            ).scalars()
            files = connection.execute(text("SELECT file_name FROM attachments ORDER BY file_name")).scalars()
            return list(events), list(files)
    finally:
        engine.dispose()


def test_same_time_events_and_files_sort_by_code_point_on_any_collation(tmp_path: Path) -> None:
    postgres = db.backend() == "postgresql"
    name = db.pg_database_name("bytemig") if postgres else ""
    if postgres:
        url = db.recreate_pg_database(name, "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
    else:
        url = f"sqlite:///{tmp_path / 'order.db'}"
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=url)
    expected = (sorted(IDS), sorted(f"{i}.txt" for i in IDS))
    try:
        upgrade(settings, "0008")
        _seed(url)
        if postgres:  # the database's own collation: not code point order
            assert _orders(url) != expected
        upgrade(settings, "0009")
        assert _orders(url) == expected

        downgrade(settings, "0008")
        assert sorted(_orders(url)[0]) == sorted(IDS)  # every row kept
        upgrade(settings, "head")
        assert _orders(url) == expected
    finally:
        if name:
            db.drop_pg_database(name)
