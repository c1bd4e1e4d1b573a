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
from collections.abc import Iterator
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


def count_candidates(connection: Connection, test_pk: int) -> int:
    return int(
        connection.execute(
            text("SELECT count(*) FROM candidates WHERE test_pk = :test_pk"), {"test_pk": test_pk}
        ).scalar_one()
    )


# --- generic path ------------------------------------------------------------------------

_EVENTS_SQL = text(
    """
    SELECT c.user_id, c.candidate_id, e.id, e.doc, e.file_count
    FROM candidates c
    LEFT JOIN events e ON e.candidate_pk = c.id
    WHERE c.test_pk = :test_pk
    ORDER BY c.user_id, e.occurred_at_ms, e.event_id
    """
)

_ATTACHMENTS_SQL = text(
    """
    SELECT a.event_pk, a.id, a.file_name, a.size, a.storage_key, a.content_type
    FROM attachments a
    JOIN events e ON e.id = a.event_pk
    JOIN candidates c ON c.id = e.candidate_pk
    WHERE c.test_pk = :test_pk
    ORDER BY c.user_id, e.occurred_at_ms, e.event_id, a.file_name
    """
)


def stream_events(connection: Connection, test_pk: int, batch: int) -> Rows:
    """Rows ``(user_id, candidate_id, event_pk, doc, file_count)`` in file order; a
    candidate without events has one row with ``event_pk`` NULL."""
    stream = connection.execution_options(stream_results=True, yield_per=batch)
    return stream.execute(_EVENTS_SQL, {"test_pk": test_pk})


def stream_attachments(connection: Connection, test_pk: int, batch: int) -> Rows:
    """Rows ``(event_pk, *AttachmentRef)`` in the same order as :func:`stream_events`."""
    stream = connection.execution_options(stream_results=True, yield_per=batch)
    return stream.execute(_ATTACHMENTS_SQL, {"test_pk": test_pk})


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

_CANDIDATE_EVENTS_SQL = f"""
    SELECT {_EVENT_FRAGMENT} AS frag
    FROM events e
    WHERE e.candidate_pk = %(candidate_pk)s
    ORDER BY e.occurred_at_ms, e.event_id
"""  # noqa: S608


def _candidate_rows_sql(test_pk: int, part: int, parts: int, max_events: int) -> str:
    # COPY takes no bind parameters; every value interpolated here is an int.
    test_pk, part, parts, limit = int(test_pk), int(part), int(parts), int(max_events) + 1
    return f"""
    COPY (
        SELECT c.user_id, c.candidate_id, c.id, ev.n, ev.body
        FROM (
            SELECT id, user_id, candidate_id, row_number() OVER (ORDER BY user_id) - 1 AS seq
            FROM candidates WHERE test_pk = {test_pk}
        ) c
        CROSS JOIN LATERAL (
            SELECT count(*) AS n, string_agg(x.frag, ',' ORDER BY x.occurred_at_ms, x.event_id) AS body
            FROM (
                SELECT e.occurred_at_ms, e.event_id, {_EVENT_FRAGMENT} AS frag
                FROM events e
                WHERE e.candidate_pk = c.id
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


@contextmanager
def pg_candidate_rows(
    connection: Connection, test_pk: int, part: int, parts: int, max_events: int
) -> Iterator[Iterator[CandidateRow]]:
    """Part ``part`` of ``parts`` of the test's candidates, in ``userId`` order.

    Candidate number i (0-based, by ``userId``) belongs to part ``i % parts``, so
    parallel readers of one snapshot interleave back into the file's order.
    """
    sql = _candidate_rows_sql(test_pk, part, parts, max_events)
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


def pg_candidate_fragments(connection: Connection, candidate_pk: int, batch: int) -> Iterator[list[str]]:
    """One candidate's event fragments in file order, ``batch`` at a time (server-side cursor)."""
    with _driver(connection).cursor(name=f"candidate_events_{candidate_pk}") as cursor:
        cursor.itersize = batch
        cursor.execute(_CANDIDATE_EVENTS_SQL, {"candidate_pk": candidate_pk})
        while rows := cursor.fetchmany(batch):
            yield [frag for (frag,) in rows]


def decode_marked_files(piece: bytes) -> list[AttachmentRef]:
    """The attachments between two ``FILES_MARK`` of a PostgreSQL fragment."""
    return [
        AttachmentRef(int(item_id), str(name), int(size), str(key), str(ctype))
        for item_id, name, size, key, ctype in orjson.loads(piece)
    ]
