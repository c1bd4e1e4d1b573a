"""Reading a test's candidates, events and attachments in export order.

Ingest owns its tables; exports reads them only through these functions, on a
connection it opened on one snapshot (``examtrail.core.db.snapshot``). The order is
the file's: candidates by ``userId``, each candidate's events by time then ``eventId``,
each event's files by name.

Two paths:
- generic (SQLite): one row per event, and the attachments in a second cursor that
  advances in lockstep;
- PostgreSQL: the database builds each candidate's events array itself (the stored
  docs are the final JSON, so it concatenates them, no parsing) and streams one row
  per candidate with binary ``COPY``. An event with files carries, in place of its
  empty ``attachedFiles`` list, ``FILES_MARK`` + a JSON array of
  ``[contentItemId, fileName, fileSize, storageKey, contentType]`` + ``FILES_MARK``.
  ``FILES_MARK`` is a control character, which never occurs raw in JSON text.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, CursorResult, text

from examtrail.ingest.docs import EMPTY_FILES

# Rows of a streamed query, each unpacked by the caller.
Rows = CursorResult[*tuple[Any, ...]]


class AttachmentRef(NamedTuple):
    content_item_id: int
    file_name: str
    size: int
    storage_key: str
    content_type: str


# --- filters and change marks -------------------------------------------------------------

# Renders one value into SQL: a bind placeholder (generic path) or a quoted literal (COPY).
Bind = Callable[[Any], str]


@dataclass(frozen=True, slots=True)
class ChangeMark:
    """Where a snapshot stands in the test's writes (see ``ingest_xid`` on the models).

    PostgreSQL: the snapshot itself (``xmax`` and the in-progress ``xip``): a row was
    written after it when its transaction id is ``>= xmax`` or was still running then,
    so a transaction that commits late is never missed, whatever ids its rows hold.
    SQLite (one writer at a time): the test's counter ``tests.change_seq`` seen (``seq``).
    """

    seq: int | None = None
    xmin: int | None = None
    xmax: int | None = None
    xip: tuple[int, ...] = ()

    def sql(self, alias: str) -> str:
        """The condition "row ``alias`` was written after this mark" (integers only)."""
        column = f"{alias}.ingest_xid"
        if self.seq is not None:
            return f"{column} > {int(self.seq)}"
        xmax = int(self.xmax or 0)
        if self.xip:
            listed = ",".join(str(int(x)) for x in self.xip)
            return f"({column} >= {xmax} OR {column} IN ({listed}))"
        return f"{column} >= {xmax}"


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which candidates and events an export reads; empty fields select everything.

    Candidate conditions drop candidates; event conditions drop events (a selected
    candidate without matching events still appears, with none). Conditions AND.
    """

    user_ids: tuple[int, ...] = ()
    candidate_ids: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    flagged: bool = False
    severity_levels: tuple[str, ...] = ()
    from_ms: int | None = None
    to_ms: int | None = None
    since: ChangeMark | None = None

    def candidate_sql(self, bind: Bind, alias: str = "c") -> str:
        """`` AND ...`` conditions on the candidates row ``alias`` (empty when none)."""
        parts = []
        if self.user_ids:
            parts.append(f"{alias}.user_id IN ({', '.join(bind(int(v)) for v in self.user_ids)})")
        if self.candidate_ids:
            parts.append(f"{alias}.candidate_id IN ({', '.join(bind(v) for v in self.candidate_ids)})")
        return "".join(f" AND {part}" for part in parts)

    def event_sql(self, bind: Bind, dialect: str, alias: str = "e") -> str:
        """`` AND ...`` conditions on the events row ``alias`` (empty when none)."""
        parts = []
        if self.events:
            parts.append(f"{alias}.event IN ({', '.join(bind(v) for v in self.events)})")
        if self.flagged or self.severity_levels:
            parts.append(f"{alias}.flag_type IS NOT NULL")
        if self.severity_levels:
            if dialect == "postgresql":
                level = f"({alias}.doc::jsonb #>> '{{flaggingInfo,severityLevel}}')"
            else:
                level = f"json_extract({alias}.doc, '$.flaggingInfo.severityLevel')"
            parts.append(f"{level} IN ({', '.join(bind(v) for v in self.severity_levels)})")
        if self.from_ms is not None:
            parts.append(f"{alias}.occurred_at_ms >= {int(self.from_ms)}")
        if self.to_ms is not None:
            parts.append(f"{alias}.occurred_at_ms < {int(self.to_ms)}")
        if self.since is not None:
            parts.append(self.since.sql(alias))
        return "".join(f" AND {part}" for part in parts)


NO_FILTER = EventFilter()


class _Params:
    """A :data:`Bind` collecting bind parameters for ``text()``."""

    def __init__(self, **initial: Any) -> None:
        self.values: dict[str, Any] = dict(initial)

    def __call__(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f":{name}"


def change_mark(connection: Connection, test_pk: int) -> ChangeMark:
    """The mark of ``connection``'s snapshot (call inside the export's snapshot)."""
    if connection.dialect.name == "postgresql":
        snap = str(connection.exec_driver_sql("SELECT pg_current_snapshot()::text").scalar_one())
        xmin, xmax, xip = snap.split(":")
        return ChangeMark(xmin=int(xmin), xmax=int(xmax), xip=tuple(int(x) for x in xip.split(",") if x))
    # The test's counter, not the rows' maximum: an erasure moving rows out lowers that.
    seq = connection.execute(text("SELECT change_seq FROM tests WHERE id = :t"), {"t": test_pk}).scalar()
    return ChangeMark(seq=int(seq or 0))


def changed_since(connection: Connection, test_pk: int, mark: ChangeMark) -> bool:
    """Whether any event or candidate of the test was written after ``mark``."""
    test_pk = int(test_pk)
    sql = (
        f"SELECT EXISTS (SELECT 1 FROM events e WHERE e.test_pk = {test_pk} AND {mark.sql('e')}) "  # noqa: S608
        f"OR EXISTS (SELECT 1 FROM candidates c WHERE c.test_pk = {test_pk} AND {mark.sql('c')})"
    )
    return bool(connection.exec_driver_sql(sql).scalar_one())


def has_files(connection: Connection, test_pk: int) -> bool:
    """Whether any event of the test has an evidence file."""
    sql = "SELECT EXISTS (SELECT 1 FROM events WHERE test_pk = :test_pk AND file_count > 0)"
    return bool(connection.execute(text(sql), {"test_pk": test_pk}).scalar_one())


def count_candidates(connection: Connection, test_pk: int, flt: EventFilter = NO_FILTER) -> int:
    params = _Params(test_pk=test_pk)
    where = flt.candidate_sql(params)
    return int(
        connection.execute(
            text(f"SELECT count(*) FROM candidates c WHERE c.test_pk = :test_pk{where}"),  # noqa: S608
            params.values,
        ).scalar_one()
    )


# --- generic path ------------------------------------------------------------------------


def _events_sql(candidate_where: str, event_where: str) -> str:
    return f"""
    SELECT c.user_id, c.candidate_id, e.id, e.doc, e.file_count, e.received_at
    FROM candidates c
    LEFT JOIN events e ON e.candidate_pk = c.id{event_where}
    WHERE c.test_pk = :test_pk{candidate_where}
    ORDER BY c.user_id, e.occurred_at_ms, e.event_id
    """  # noqa: S608  (conditions hold bind placeholders and integers only)


def _attachments_sql(candidate_where: str, event_where: str) -> str:
    return f"""
    SELECT a.event_pk, a.id, a.file_name, a.size, a.storage_key, a.content_type
    FROM attachments a
    JOIN events e ON e.id = a.event_pk
    JOIN candidates c ON c.id = e.candidate_pk
    WHERE c.test_pk = :test_pk{candidate_where}{event_where}
    ORDER BY c.user_id, e.occurred_at_ms, e.event_id, a.file_name
    """  # noqa: S608


def stream_events(connection: Connection, test_pk: int, batch: int, flt: EventFilter = NO_FILTER) -> Rows:
    """Rows ``(user_id, candidate_id, event_pk, doc, file_count, received_at)`` in file
    order; a candidate without (matching) events has one row with ``event_pk`` NULL."""
    params = _Params(test_pk=test_pk)
    sql = _events_sql(flt.candidate_sql(params), flt.event_sql(params, connection.dialect.name))
    stream = connection.execution_options(stream_results=True, yield_per=batch)
    return stream.execute(text(sql), params.values)


def stream_attachments(
    connection: Connection, test_pk: int, batch: int, flt: EventFilter = NO_FILTER
) -> Rows:
    """Rows ``(event_pk, *AttachmentRef)`` in the same order as :func:`stream_events`."""
    params = _Params(test_pk=test_pk)
    sql = _attachments_sql(flt.candidate_sql(params), flt.event_sql(params, connection.dialect.name))
    stream = connection.execution_options(stream_results=True, yield_per=batch)
    return stream.execute(text(sql), params.values)


# --- one candidate at a time (pseudonymised exports, in an order of their own) -------------


def list_candidates(connection: Connection, test_pk: int, flt: EventFilter = NO_FILTER) -> list[Any]:
    """``(candidate_pk, user_id, candidate_id)`` of the test's (selected) candidates."""
    params = _Params(test_pk=test_pk)
    sql = (
        "SELECT c.id, c.user_id, c.candidate_id FROM candidates c "  # noqa: S608
        f"WHERE c.test_pk = :test_pk{flt.candidate_sql(params)}"
    )
    return [tuple(row) for row in connection.execute(text(sql), params.values)]


def stream_candidate_events(
    connection: Connection, candidate_pk: int, batch: int, flt: EventFilter = NO_FILTER
) -> Rows:
    """Rows ``(doc, received_at)`` of one candidate's (matching) events, in file order."""
    params = _Params(candidate_pk=candidate_pk)
    sql = (
        "SELECT e.doc, e.received_at FROM events e "  # noqa: S608
        f"WHERE e.candidate_pk = :candidate_pk{flt.event_sql(params, connection.dialect.name)} "
        "ORDER BY e.occurred_at_ms, e.event_id"
    )
    stream = connection.execution_options(stream_results=True, yield_per=batch)
    return stream.execute(text(sql), params.values)


# --- PostgreSQL path ---------------------------------------------------------------------

FILES_MARK = b"\x01"

_EVENT_FRAGMENT = f"""
    CASE WHEN e.file_count = 0 THEN e.doc
    ELSE replace(e.doc, '{EMPTY_FILES}', '"attachedFiles":' || chr(1) || COALESCE(
        (SELECT json_agg(json_build_array(a.id, a.file_name, a.size, a.storage_key, a.content_type)
                         ORDER BY a.file_name)
         FROM attachments a WHERE a.event_pk = e.id)::text, '[]') || chr(1))
    END
"""  # noqa: S608  (EMPTY_FILES is a constant of ours)


# ``receivedAt`` as ``core.timeutil.format_ms`` writes it (exact: integer interval arithmetic).
_RECEIVED_AT = """
    COALESCE('"' || to_char(timestamp 'epoch' + e.received_at * interval '1 millisecond',
                            'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'null')
"""

# Line mode (JSON Lines): each event object also names its candidate and its receipt time,
# as the last three keys.
_LINE_FRAGMENT = f"""
    left({_EVENT_FRAGMENT}, -1) || ',"candidateUserId":' || c.user_id
        || ',"candidateId":' || to_json(c.candidate_id)::text
        || ',"receivedAt":' || {_RECEIVED_AT} || '}}'
"""


def _candidate_events_sql(candidate_pk: int, event_where: str, lines: bool = False) -> str:
    return f"""
    SELECT {_LINE_FRAGMENT if lines else _EVENT_FRAGMENT} AS frag
    FROM events e JOIN candidates c ON c.id = e.candidate_pk
    WHERE e.candidate_pk = {int(candidate_pk)}{event_where}
    ORDER BY e.occurred_at_ms, e.event_id
    """  # noqa: S608  (conditions hold quoted literals and integers only)


def _candidate_rows_sql(
    test_pk: int,
    part: int,
    parts: int,
    max_events: int,
    candidate_where: str,
    event_where: str,
    lines: bool = False,
) -> str:
    # COPY takes no bind parameters; every value interpolated here is an int or a literal
    # quoted by the driver (``_literals``).
    test_pk, part, parts, limit = int(test_pk), int(part), int(parts), int(max_events) + 1
    fragment, separator = (_LINE_FRAGMENT, "E'\\n'") if lines else (_EVENT_FRAGMENT, "','")
    return f"""
    COPY (
        SELECT c.user_id, c.candidate_id, c.id, ev.n, ev.body
        FROM (
            SELECT c.id, c.user_id, c.candidate_id, row_number() OVER (ORDER BY c.user_id) - 1 AS seq
            FROM candidates c WHERE c.test_pk = {test_pk}{candidate_where}
        ) c
        CROSS JOIN LATERAL (
            -- The aggregate reads the ordered, limited subquery directly (no join, no
            -- parallelism between them), so rows arrive in file order: an ORDER BY inside
            -- string_agg would sort each candidate's fragments again (~30% of the query).
            SELECT count(*) AS n, string_agg(x.frag, {separator}) AS body
            FROM (
                SELECT {fragment} AS frag
                FROM events e
                WHERE e.candidate_pk = c.id{event_where}
                ORDER BY e.occurred_at_ms, e.event_id
                LIMIT {limit}
            ) x
        ) ev
        WHERE c.seq % {parts} = {part}
        ORDER BY c.user_id
    ) TO STDOUT (FORMAT binary)
    """  # noqa: S608


@dataclass(slots=True)
class CandidateRow:
    """One candidate and (up to ``max_events`` of) its events as one JSON fragment.

    ``events > max_events`` means the body is partial: stream the candidate with
    :func:`pg_candidate_fragments` instead (bounded memory).
    """

    user_id: int
    candidate_id: str
    candidate_pk: int
    events: int
    body: bytes | None


_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER_SIZE = len(_BINARY_SIGNATURE) + 8
_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")
_INT64 = struct.Struct("!q")


def _driver(connection: Connection) -> Any:
    return connection.connection.driver_connection


def _literals(connection: Connection) -> Bind:
    """A :data:`Bind` quoting values as SQL literals with the driver's own rules."""
    from psycopg import sql

    driver = _driver(connection)
    return lambda value: sql.Literal(value).as_string(driver)


@contextmanager
def pg_candidate_rows(
    connection: Connection,
    test_pk: int,
    part: int,
    parts: int,
    max_events: int,
    flt: EventFilter = NO_FILTER,
    *,
    lines: bool = False,
) -> Iterator[Iterator[CandidateRow]]:
    """Part ``part`` of ``parts`` of the test's (selected) candidates, in ``userId`` order.

    Candidate number i (0-based, by ``userId``) belongs to part ``i % parts``, so
    parallel readers of one snapshot interleave back into the file's order. ``lines``:
    the body holds one JSON Lines object per event (with ``candidateUserId``,
    ``candidateId`` and ``receivedAt``), separated by newlines, instead of the file's comma-separated events.
    """
    bind = _literals(connection)
    sql = _candidate_rows_sql(
        test_pk,
        part,
        parts,
        max_events,
        flt.candidate_sql(bind),
        flt.event_sql(bind, "postgresql"),
        lines,
    )
    with _driver(connection).cursor() as cursor, cursor.copy(sql) as copy:
        yield _parse_copy(copy)


def _parse_copy(copy: Any) -> Iterator[CandidateRow]:
    """Parse binary COPY output row by row. PostgreSQL sends each row in its own CopyData
    message (the file header rides on the first one), so one ``read()`` is one row."""
    first = True
    while data := copy.read():
        view = memoryview(data)
        pos = 0
        if first:
            if bytes(view[: len(_BINARY_SIGNATURE)]) != _BINARY_SIGNATURE:
                raise ValueError("unexpected COPY header")
            pos = _HEADER_SIZE + _INT32.unpack_from(view, _HEADER_SIZE - 4)[0]
            first = False
        while pos < len(view):
            (fields,) = _INT16.unpack_from(view, pos)
            pos += 2
            if fields == -1:  # trailer
                break
            values: list[bytes | None] = []
            for _ in range(fields):
                (size,) = _INT32.unpack_from(view, pos)
                pos += 4
                if size < 0:
                    values.append(None)
                else:
                    values.append(bytes(view[pos : pos + size]))
                    pos += size
            user_id, candidate_id, candidate_pk, events, body = values
            assert user_id is not None and candidate_id is not None
            assert candidate_pk is not None and events is not None
            yield CandidateRow(
                _INT64.unpack(user_id)[0],
                candidate_id.decode(),
                _INT64.unpack(candidate_pk)[0],
                _INT64.unpack(events)[0],
                body,
            )


def pg_candidate_fragments(
    connection: Connection,
    candidate_pk: int,
    batch: int,
    flt: EventFilter = NO_FILTER,
    *,
    lines: bool = False,
) -> Iterator[list[str]]:
    """One candidate's (matching) event fragments in file order, ``batch`` at a time
    (server-side cursor); ``lines`` as for :func:`pg_candidate_rows`."""
    sql = _candidate_events_sql(candidate_pk, flt.event_sql(_literals(connection), "postgresql"), lines)
    with _driver(connection).cursor(name=f"candidate_events_{candidate_pk}") as cursor:
        cursor.itersize = batch
        cursor.execute(sql)
        while rows := cursor.fetchmany(batch):
            yield [frag for (frag,) in rows]


def decode_marked_files(piece: bytes) -> list[AttachmentRef]:
    """The attachments between two ``FILES_MARK`` of a PostgreSQL fragment."""
    return [
        AttachmentRef(int(item_id), str(name), int(size), str(key), str(ctype))
        for item_id, name, size, key, ctype in orjson.loads(piece)
    ]


# --- SQLite path -------------------------------------------------------------------------

# An event with files travels as ``FILES_MARK`` + the JSON array ``[doc, [[contentItemId,
# fileName, fileSize, storageKey, contentType], ...]]`` + ``FILES_MARK`` (the doc as a JSON
# string: the caller splices the links in with ``docs.with_attachments``, as the generic
# path does). ``json_quote`` escapes control characters, so the mark never occurs inside.
_SQLITE_FRAGMENT = """
    CASE WHEN e.file_count = 0 THEN e.doc
    ELSE char(1) || json_array(e.doc, json(COALESCE(
        (SELECT json_group_array(json_array(f.id, f.file_name, f.size, f.storage_key, f.content_type))
         FROM (SELECT a.id, a.file_name, a.size, a.storage_key, a.content_type
               FROM attachments a WHERE a.event_pk = e.id ORDER BY a.file_name) f),
        '[]'))) || char(1)
    END
"""


def sqlite_candidates(connection: Connection, test_pk: int, flt: EventFilter = NO_FILTER) -> list[Any]:
    """``(candidate_pk, user_id, candidate_id)`` of the test's (selected) candidates, in
    ``userId`` order."""
    params = _Params(test_pk=test_pk)
    sql = (
        "SELECT c.id, c.user_id, c.candidate_id FROM candidates c "  # noqa: S608
        f"WHERE c.test_pk = :test_pk{flt.candidate_sql(params)} ORDER BY c.user_id"
    )
    return list(_driver(connection).execute(sql, params.values).fetchall())


class SqliteCandidateEvents:
    """SQLite: one candidate's (matching) events as one comma-separated UTF-8 body, built
    by the database (``group_concat`` over the events in file order; an event with files
    marked as described at ``_SQLITE_FRAGMENT``). The statements are prepared once.

    The driver releases the GIL while SQLite works, so a reader thread can run this
    while another thread formats and writes the previous candidate.
    """

    def __init__(self, connection: Connection, max_events: int, flt: EventFilter = NO_FILTER) -> None:
        self._driver = _driver(connection)
        params = _Params()
        event_where = flt.event_sql(params, "sqlite")
        self._params = params.values
        self._max_events = int(max_events)
        # The ORDER BY + LIMIT subquery is not flattened into the aggregate, so rows reach
        # group_concat in file order (they come from ix_events_export_order as well).
        self._body_sql = f"""
            SELECT count(*), CAST(group_concat(x.frag, ',') AS BLOB)
            FROM (
                SELECT {_SQLITE_FRAGMENT} AS frag
                FROM events e
                WHERE e.candidate_pk = :candidate_pk{event_where}
                ORDER BY e.occurred_at_ms, e.event_id
                LIMIT {self._max_events + 1}
            ) x
        """  # noqa: S608  (conditions hold bind placeholders and integers only)
        self._fragments_sql = f"""
            SELECT CAST({_SQLITE_FRAGMENT} AS BLOB)
            FROM events e
            WHERE e.candidate_pk = :candidate_pk{event_where}
            ORDER BY e.occurred_at_ms, e.event_id
        """  # noqa: S608

    def body(self, candidate_pk: int) -> tuple[int, bytes | None]:
        """``(events, body)``; ``events > max_events`` means the body is partial: read the
        candidate with :meth:`fragments` instead."""
        count, body = self._driver.execute(
            self._body_sql, {**self._params, "candidate_pk": candidate_pk}
        ).fetchone()
        return int(count), body

    def fragments(self, candidate_pk: int, batch: int) -> Iterator[list[bytes]]:
        """The candidate's event fragments in file order, ``batch`` at a time."""
        cursor = self._driver.execute(self._fragments_sql, {**self._params, "candidate_pk": candidate_pk})
        try:
            while rows := cursor.fetchmany(batch):
                yield [frag for (frag,) in rows]
        finally:
            cursor.close()


def decode_sqlite_marked(piece: bytes) -> tuple[str, list[AttachmentRef]]:
    """The doc and the attachments between two ``FILES_MARK`` of a SQLite fragment."""
    doc, files = orjson.loads(piece)
    return str(doc), [
        AttachmentRef(int(item_id), str(name), int(size), str(key), str(ctype))
        for item_id, name, size, key, ctype in files
    ]
