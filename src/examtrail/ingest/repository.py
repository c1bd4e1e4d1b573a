"""SQL for tests, candidates, events and attachments."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from psycopg.errors import UniqueViolation
from sqlalchemy import ColumnElement, func, literal, literal_column, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select, bindparam

from examtrail.core.db import contains_folded, utcnow
from examtrail.core.schemas import int64_of
from examtrail.core.timeutil import to_epoch_ms
from examtrail.ingest.models import Attachment, Candidate, Event, Test


def _insert(session: Session, model: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def get_test(session: Session, tenant_id: int, external_id: int, *, lock: bool = False) -> Test | None:
    stmt = select(Test).where(Test.tenant_id == tenant_id, Test.external_id == external_id)
    if lock:
        # FOR NO KEY UPDATE: serialises the callers that lock, but not ingestion, whose
        # inserts only take FOR KEY SHARE on the test row (foreign keys).
        stmt = stmt.with_for_update(key_share=True)
    return session.scalars(stmt).one_or_none()


def upsert_test(session: Session, tenant_id: int, external_id: int, title: str) -> tuple[Test, bool]:
    stmt = (
        _insert(session, Test)
        .values(
            tenant_id=tenant_id,
            external_id=external_id,
            title=title,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "external_id"])
        .returning(Test.id)
    )
    created = session.execute(stmt).scalar_one_or_none() is not None
    test = get_test(session, tenant_id, external_id)
    assert test is not None
    if not created and test.title != title:
        test.title = title
        session.flush()
    return test, created


# --- change stamps (incremental exports) -------------------------------------------------

_PG_XID = "pg_current_xact_id()::text::bigint"


def change_stamp(session: Session, test_pk: int) -> ColumnElement[Any]:
    """The ``ingest_xid`` of rows this transaction writes to test ``test_pk``.

    PostgreSQL: the transaction's id (also the column's server default), which an export
    compares with its snapshot. SQLite: one writer at a time, so the test's own counter
    (``Test.change_seq``), advanced by each write, is exact (``read_model.change_mark``
    reads it).
    """
    if session.get_bind().dialect.name == "postgresql":
        return literal_column(_PG_XID)
    return literal(_next_sqlite_stamp(session, test_pk))


# A plain statement: an ORM update would also move ``updated_at``. One step, as the maximum
# over the rows it replaces, but never lower after an erasure moved the newest rows out.
_NEXT_STAMP = text("UPDATE tests SET change_seq = change_seq + 1 WHERE id = :test_pk RETURNING change_seq")


def _next_sqlite_stamp(session: Session, test_pk: int) -> int:
    return int(session.execute(_NEXT_STAMP, {"test_pk": test_pk}).scalar_one())


def test_counts(session: Session, test_pk: int) -> tuple[int, int]:
    candidates = session.scalar(
        select(func.count()).select_from(Candidate).where(Candidate.test_pk == test_pk)
    )
    events = session.scalar(select(func.count()).select_from(Event).where(Event.test_pk == test_pk))
    return candidates or 0, events or 0


def list_tests(
    session: Session, tenant_id: int, *, after: int | None, limit: int, query: str | None
) -> list[Test]:
    """The tenant's tests by ``testId``, ``limit`` of them after ``after`` (keyset)."""
    # Negative ids are tests being erased (``examtrail.lifecycle``): no longer the tenant's.
    stmt = select(Test).where(Test.tenant_id == tenant_id, Test.external_id >= 0)
    if after is not None:
        stmt = stmt.where(Test.external_id > after)
    if query:
        matches = contains_folded(Test.title, query)
        test_id = int64_of(query)
        if test_id is not None:
            matches = matches | (Test.external_id == test_id)
        stmt = stmt.where(matches)
    return list(session.scalars(stmt.order_by(Test.external_id).limit(limit)))


def tests_counts(session: Session, test_pks: Sequence[int]) -> dict[int, tuple[int, int, int, int | None]]:
    """test pk -> (candidates, events, flags, last event ms) for the given tests."""
    found: dict[int, tuple[int, int, int, int | None]] = dict.fromkeys(test_pks, (0, 0, 0, None))
    if not test_pks:
        return found
    candidates = session.execute(
        select(Candidate.test_pk, func.count())
        .where(Candidate.test_pk.in_(test_pks))
        .group_by(Candidate.test_pk)
    )
    for pk, count in candidates:
        found[pk] = (count, 0, 0, None)
    events = session.execute(
        select(Event.test_pk, func.count(), func.count(Event.flag_type), func.max(Event.occurred_at_ms))
        .where(Event.test_pk.in_(test_pks))
        .group_by(Event.test_pk)
    )
    for pk, count, flags, last in events:
        found[pk] = (found[pk][0], count, flags, last)
    return found


def existing_candidates(
    session: Session, test_pk: int, user_ids: Sequence[int]
) -> dict[int, tuple[int, str]]:
    """user_id -> (candidate pk, candidateId) for those that exist."""
    found: dict[int, tuple[int, str]] = {}
    for start in range(0, len(user_ids), 1000):
        chunk = user_ids[start : start + 1000]
        rows = session.execute(
            select(Candidate.user_id, Candidate.id, Candidate.candidate_id).where(
                Candidate.test_pk == test_pk, Candidate.user_id.in_(chunk)
            )
        )
        for user_id, pk, candidate_id in rows:
            found[user_id] = (pk, candidate_id)
    return found


def insert_candidates(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        if session.get_bind().dialect.name != "postgresql":  # PostgreSQL: the server default
            stamp = _next_sqlite_stamp(session, rows[0]["test_pk"])
            rows = [{**row, "ingest_xid": stamp} for row in rows]
        session.execute(_insert(session, Candidate), rows)


_RENAME_CANDIDATES_PG = text(
    f"UPDATE candidates SET candidate_id = renamed.candidate_id, ingest_xid = {_PG_XID} "  # noqa: S608
    "FROM unnest(CAST(:user_ids AS bigint[]), CAST(:candidate_ids AS text[])) "
    "AS renamed(user_id, candidate_id) "
    "WHERE candidates.test_pk = :test_pk AND candidates.user_id = renamed.user_id"
)


def rename_candidates(session: Session, test_pk: int, renames: dict[int, str]) -> None:
    """One statement for all, not one per candidate: renaming 100,000 took 18 s on SQLite (its
    write lock held all along) and 33 s on PostgreSQL."""
    if not renames:
        return
    if session.get_bind().dialect.name == "postgresql":
        # The ids and names as two arrays: one round trip (an executemany is one per row).
        params = {"test_pk": test_pk, "user_ids": list(renames), "candidate_ids": list(renames.values())}
        session.execute(_RENAME_CANDIDATES_PG, params)
        return
    stmt = (
        update(Candidate)
        .where(Candidate.test_pk == test_pk, Candidate.user_id == bindparam("renamed_user"))
        .values(candidate_id=bindparam("new_candidate_id"), ingest_xid=change_stamp(session, test_pk))
    )
    session.flush()  # the connection's executemany (the ORM's would want primary keys)
    session.connection().execute(
        stmt,
        [{"renamed_user": user_id, "new_candidate_id": name} for user_id, name in renames.items()],
    )


def _candidate_pk_statement() -> Select[int]:
    test_pk: Any = bindparam("test_pk")
    user_id: Any = bindparam("user_id")
    return select(Candidate.id).where(Candidate.test_pk == test_pk, Candidate.user_id == user_id)


_CANDIDATE_PK = _candidate_pk_statement()  # built once: it runs on every event write


def get_candidate_pk(session: Session, test_pk: int, user_id: int) -> int | None:
    return session.scalar(_CANDIDATE_PK, {"test_pk": test_pk, "user_id": user_id})


# One new event of a batch: (event_id, event, occurred_at_ms, creator_user_id, flag_type, doc).
EventRow = tuple[str, str, int, int | None, str | None, str]
_ROW_COLUMNS = "event_id, event, occurred_at_ms, creator_user_id, flag_type, doc"


class _EventWriter(Protocol):
    """How one dialect inserts a batch of events and reads back those that exist."""

    def insert(
        self, session: Session, test_pk: int, candidate_pk: int, rows: Sequence[EventRow], now: datetime
    ) -> set[str]: ...

    def existing(
        self, session: Session, test_pk: int, event_ids: Sequence[str]
    ) -> dict[str, tuple[int, str]]: ...


class _PostgresEvents:
    """COPY straight into ``events`` inside a savepoint; if an event id is already stored (a
    re-send, or a concurrent writer), the savepoint is rolled back and the batch goes through a
    per-connection staging table and one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``."""

    _STAGING = "ingest_events_staging"
    _CREATE_STAGING = f"""
        CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} (
            event_id varchar(128), event varchar(200), occurred_at_ms bigint, creator_user_id bigint,
            flag_type varchar(200), doc text
        ) ON COMMIT DELETE ROWS
    """
    # Binary: psycopg's C dumpers write each row, with nothing to escape (a third of the API
    # process's CPU of the text built in Python, for ~5% more of the backend's).
    _COPY_EVENTS = (
        f"COPY events (test_pk, candidate_pk, {_ROW_COLUMNS}, file_count, created_at, received_at) "
        "FROM STDIN (FORMAT BINARY)"
    )
    _COPY_TYPES = (
        "int8",
        "int8",
        "text",
        "text",
        "int8",
        "int8",
        "text",
        "text",
        "int4",
        "timestamp",
        "int8",
    )
    _MOVE_STAGED = f"""
        INSERT INTO events (test_pk, candidate_pk, {_ROW_COLUMNS}, file_count, created_at, received_at)
        SELECT %(test_pk)s, %(candidate_pk)s, {_ROW_COLUMNS}, 0, %(created_at)s, %(received_at)s
        FROM {_STAGING}
        ORDER BY event_id COLLATE "C"
        ON CONFLICT (test_pk, event_id) DO NOTHING
        RETURNING event_id
    """  # noqa: S608
    _CLEAR_STAGING = f"DELETE FROM {_STAGING}"  # noqa: S608
    _EXISTING = text(
        "SELECT event_id, candidate_pk, doc FROM events WHERE test_pk = :test_pk AND event_id = ANY(:ids)"
    )

    # Up to this many rows (live exam clients send one event at a time), one multi-row
    # INSERT ... ON CONFLICT is a single round trip, where savepoint + COPY + release are
    # four; COPY wins on larger batches.
    _SMALL_BATCH = 16

    @staticmethod
    @lru_cache(maxsize=_SMALL_BATCH)
    def _insert_values(count: int) -> str:
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s)"] * count)
        return (
            f"INSERT INTO events (test_pk, candidate_pk, {_ROW_COLUMNS}, file_count, created_at, "  # noqa: S608
            f"received_at) VALUES {values} ON CONFLICT (test_pk, event_id) DO NOTHING RETURNING event_id"
        )

    def insert(
        self, session: Session, test_pk: int, candidate_pk: int, rows: Sequence[EventRow], now: datetime
    ) -> set[str]:
        created_at = now.replace(tzinfo=None)
        received_at = to_epoch_ms(now)
        # In event id order (code points, the index's "C" collation), as the staging move below
        # and ``insert_keyed_events``: two batches sharing event ids take the unique index's
        # entries in the same order, one waiting for the other, never each for the other (a
        # deadlock, one answered 503).
        rows = sorted(rows, key=lambda row: row[0])
        if len(rows) <= self._SMALL_BATCH:
            params = [
                value for row in rows for value in (test_pk, candidate_pk, *row, created_at, received_at)
            ]
            session.flush()  # as begin_nested() does below: pending rows first
            driver: Any = session.connection().connection.driver_connection
            with driver.cursor() as cursor:
                cursor.execute(self._insert_values(len(rows)), params)
                return {str(event_id) for (event_id,) in cursor.fetchall()}
        # Flushes the session first; works inside the caller's own savepoint too.
        savepoint = session.begin_nested()
        driver = session.connection().connection.driver_connection
        try:
            with driver.cursor() as cursor, cursor.copy(self._COPY_EVENTS) as copy:
                copy.set_types(self._COPY_TYPES)
                write = copy.write_row
                for row in rows:
                    write((test_pk, candidate_pk, *row, 0, created_at, received_at))
        except UniqueViolation:
            savepoint.rollback()
        else:
            savepoint.commit()
            return {row[0] for row in rows}
        return self._insert_new(driver, test_pk, candidate_pk, rows, created_at, received_at)

    def _insert_new(
        self,
        driver: Any,
        test_pk: int,
        candidate_pk: int,
        rows: Sequence[EventRow],
        created_at: datetime,
        received_at: int,
    ) -> set[str]:
        with driver.cursor() as cursor:
            cursor.execute(self._CREATE_STAGING)
            with cursor.copy(f"COPY {self._STAGING} ({_ROW_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                self._MOVE_STAGED,
                {
                    "test_pk": test_pk,
                    "candidate_pk": candidate_pk,
                    "created_at": created_at,
                    "received_at": received_at,
                },
            )
            inserted = {str(event_id) for (event_id,) in cursor.fetchall()}
            cursor.execute(self._CLEAR_STAGING)  # several batches may share one transaction
        return inserted

    def existing(
        self, session: Session, test_pk: int, event_ids: Sequence[str]
    ) -> dict[str, tuple[int, str]]:
        rows = session.execute(self._EXISTING, {"test_pk": test_pk, "ids": list(event_ids)})
        return {event_id: (candidate_pk, doc) for event_id, candidate_pk, doc in rows}


class _SqliteEvents:
    """One writer at a time (the transaction holds the write lock), so the ids found missing
    are still missing when the plain ``executemany`` inserts them."""

    _INSERT = (
        f"INSERT INTO events (test_pk, candidate_pk, {_ROW_COLUMNS}, file_count, created_at, received_at, "  # noqa: S608
        "ingest_xid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)"
    )

    def insert(
        self, session: Session, test_pk: int, candidate_pk: int, rows: Sequence[EventRow], now: datetime
    ) -> set[str]:
        present = self.existing(session, test_pk, [row[0] for row in rows])
        new = [row for row in rows if row[0] not in present]
        if new:
            stamp = now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
            received_at = to_epoch_ms(now)
            xid = _next_sqlite_stamp(session, test_pk)
            session.connection().exec_driver_sql(
                self._INSERT, [(test_pk, candidate_pk, *row, stamp, received_at, xid) for row in new]
            )
        return {row[0] for row in new}

    def existing(
        self, session: Session, test_pk: int, event_ids: Sequence[str]
    ) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start : start + 500]
            rows = session.execute(
                select(Event.event_id, Event.candidate_pk, Event.doc).where(
                    Event.test_pk == test_pk, Event.event_id.in_(chunk)
                )
            )
            for event_id, candidate_pk, doc in rows:
                found[event_id] = (candidate_pk, doc)
        return found


_EVENT_WRITERS: dict[str, _EventWriter] = {"postgresql": _PostgresEvents(), "sqlite": _SqliteEvents()}


def _events_of(session: Session) -> _EventWriter:
    return _EVENT_WRITERS[session.get_bind().dialect.name]


def insert_events(session: Session, test_pk: int, candidate_pk: int, rows: Sequence[EventRow]) -> set[str]:
    """Insert the candidate's events that are new; returns the event ids actually inserted
    (the others already existed). ``rows`` have distinct event ids. Nothing is committed."""
    if not rows:
        return set()
    # One clock read per batch: created_at and receivedAt are the same instant.
    return _events_of(session).insert(session, test_pk, candidate_pk, rows, utcnow())


# --- single events of many requests at once (the group-commit writer's runner, PostgreSQL) ------

# One event of one request: (test pk, candidate pk, *EventRow).
KeyedEventRow = tuple[int, int, str, str, int, int | None, str | None, str]

_TESTS_AND_CANDIDATES = text(
    "SELECT t.tenant_id, t.external_id, t.id, c.user_id, c.id FROM tests t "
    "LEFT JOIN candidates c ON c.test_pk = t.id AND c.user_id = ANY(:users) "
    "WHERE t.external_id = ANY(:tests) AND t.tenant_id = ANY(:tenants)"
)
_STORED_EVENTS = text(
    "SELECT test_pk, event_id, candidate_pk, doc FROM events "
    "WHERE test_pk = ANY(:tests) AND event_id = ANY(:ids)"
)


def tests_and_candidates(
    session: Session, wanted: Sequence[tuple[int, int, int]]
) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """For ``(tenant id, test id, user id)`` triples, in one query: (tenant id, test id) ->
    test pk of the tests that exist, and (test pk, user id) -> candidate pk of the candidates."""
    if not wanted:
        return {}, {}
    rows = session.execute(
        _TESTS_AND_CANDIDATES,
        {
            "tenants": sorted({tenant for tenant, _, _ in wanted}),
            "tests": sorted({test for _, test, _ in wanted}),
            "users": sorted({user for _, _, user in wanted}),
        },
    )
    # A test of another tenant with the same id is never matched: pairs are compared whole.
    pairs = {(tenant, test) for tenant, test, _ in wanted}
    tests: dict[tuple[int, int], int] = {}
    candidates: dict[tuple[int, int], int] = {}
    for tenant, test, test_pk, user, candidate_pk in rows:
        if (tenant, test) in pairs:
            tests[(tenant, test)] = test_pk
            if candidate_pk is not None:
                candidates[(test_pk, user)] = candidate_pk
    return tests, candidates


@lru_cache(maxsize=64)
def _insert_keyed_values(count: int) -> str:
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s)"] * count)
    return (
        f"INSERT INTO events (test_pk, candidate_pk, {_ROW_COLUMNS}, file_count, created_at, "  # noqa: S608
        f"received_at) VALUES {values} ON CONFLICT (test_pk, event_id) DO NOTHING RETURNING test_pk, event_id"
    )


def insert_keyed_events(session: Session, rows: Sequence[KeyedEventRow]) -> set[tuple[int, str]]:
    """Insert the rows (distinct (test pk, event id)) in one multi-row INSERT; returns the keys
    actually inserted (the others already existed). PostgreSQL only. Nothing is committed."""
    if not rows:
        return set()
    now = utcnow()
    created_at, received_at = now.replace(tzinfo=None), to_epoch_ms(now)
    # In key order: concurrent groups take the unique index's entries in the same order.
    params = [
        value for row in sorted(rows, key=lambda r: (r[0], r[2])) for value in (*row, created_at, received_at)
    ]
    session.flush()
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor() as cursor:
        cursor.execute(_insert_keyed_values(len(rows)), params)
        return {(int(test_pk), str(event_id)) for test_pk, event_id in cursor.fetchall()}


def stored_events(
    session: Session, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], tuple[int, str]]:
    """(test pk, event id) -> (candidate pk, doc) of the stored events among ``keys``."""
    if not keys:
        return {}
    rows = session.execute(
        _STORED_EVENTS, {"tests": sorted({t for t, _ in keys}), "ids": sorted({e for _, e in keys})}
    )
    wanted = set(keys)
    return {(t, e): (pk, doc) for t, e, pk, doc in rows if (t, e) in wanted}


def existing_events(session: Session, test_pk: int, event_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """event_id -> (candidate pk, doc) for ids already stored in this test."""
    return _events_of(session).existing(session, test_pk, event_ids)


def get_event(session: Session, test_pk: int, candidate_pk: int, event_id: str) -> Event | None:
    return session.scalars(
        select(Event).where(
            Event.test_pk == test_pk, Event.candidate_pk == candidate_pk, Event.event_id == event_id
        )
    ).one_or_none()


def get_attachment(session: Session, event_pk: int, file_name: str) -> Attachment | None:
    return session.scalars(
        select(Attachment).where(Attachment.event_pk == event_pk, Attachment.file_name == file_name)
    ).one_or_none()


def add_attachment(session: Session, attachment: Attachment) -> None:
    session.add(attachment)
    test_pk = session.scalar(select(Event.test_pk).where(Event.id == attachment.event_pk)) or 0
    session.execute(
        update(Event)
        .where(Event.id == attachment.event_pk)
        .values(file_count=Event.file_count + 1, ingest_xid=change_stamp(session, test_pk))
    )
    session.flush()


def attachment_at_key(session: Session, tenant_id: int, event_pk: int, key: str) -> tuple[int, int] | None:
    """``(contentItemId, testId)`` of the tenant's attachment stored at ``key``, if any."""
    row = session.execute(
        select(Attachment.id, Test.external_id)
        .join(Event, Event.id == Attachment.event_pk)
        .join(Test, Test.id == Event.test_pk)
        .where(Attachment.event_pk == event_pk, Attachment.storage_key == key, Test.tenant_id == tenant_id)
    ).first()
    return None if row is None else (int(row[0]), int(row[1]))
