"""The export pipeline: stream one test's snapshot into one JSON file in the object store.

Memory stays flat: rows come from the database in bounded pieces and bytes go out
through the store's streaming writer in ~1 MiB chunks, on a writer thread so that
uploading overlaps reading. The object becomes visible only when the writer commits,
after the last byte.

Filters (``EventFilter``) are applied by the read model on both paths. JSON Lines and
CSV (``exports.formats``) are written event by event from the generic path on both
databases; gzip wraps the writer.

On PostgreSQL the database does the per-event work: each candidate's stored event
docs are concatenated by ``string_agg`` and streamed with binary ``COPY``, by two
readers sharing one exported snapshot (so both cores work); Python adds the candidate
envelopes and the attachments' pre-signed links. Elsewhere (SQLite) rows come one per
event from a cursor.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

import orjson
from sqlalchemy import Connection

from examtrail.core.db import export_snapshot, snapshot_reader
from examtrail.core.timeutil import format_dt
from examtrail.exports.formats import CsvEncoder, CsvFromLines, csv_row, jsonl_line
from examtrail.exports.pseudonyms import Pseudonyms
from examtrail.ingest import read_model
from examtrail.ingest.docs import with_attachments
from examtrail.ingest.read_model import FILES_MARK, NO_FILTER, AttachmentRef, EventFilter
from examtrail.storage.base import ObjectStore, ObjectWriter, StoredObject

_FLUSH_BYTES = 256 * 1024
_FETCH_ROWS = 5000
# Chunks waiting for the writer thread (each at most _FLUSH_BYTES).
_QUEUED_CHUNKS = 2
# PostgreSQL: parallel snapshot readers, and the most events of one candidate that
# travel as one row; a candidate with more is streamed event by event.
_PG_READERS = 2
_PG_MAX_EVENTS_PER_ROW = 2000
# SQLite: the most events of one candidate built as one body by the database, and the
# bodies read ahead of the writer.
_SQLITE_MAX_EVENTS_PER_ROW = 2000
_SQLITE_READ_AHEAD = 4

Signer = Callable[[str, str, str], str]
T = TypeVar("T")


class ExportInterrupted(Exception):
    """The job was cancelled or taken over while running; nothing is published."""


@dataclass
class Progress:
    """Counters the heartbeat thread reads while the pipeline writes them."""

    total: int = 0
    done: int = 0
    events: int = 0
    files: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


class _Sink:
    """Collects output and hands it to the writer in chunks of at most ``_FLUSH_BYTES``,
    on a background thread (bounded queue) so that hashing and uploading overlap reading.

    A writer whose ``write()`` only buffers and leaves the work to threads of its own
    (``buffers_in_background``, the S3 writer) is written to directly: a thread hand-off
    per chunk would only add GIL switches and a copy."""

    def __init__(self, writer: ObjectWriter) -> None:
        self._writer = writer
        self._buffer = bytearray()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED_CHUNKS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="export-writer", daemon=True)
        if getattr(writer, "buffers_in_background", False):
            self.add = self._add_direct  # type: ignore[method-assign]
        else:
            self._thread.start()

    def _add_direct(self, data: bytes | memoryview) -> None:
        if self._error is not None:
            raise self._error
        try:
            self._writer.write(data)  # type: ignore[arg-type]
        except BaseException as exc:
            self._error = exc
            raise

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write(chunk)
                except BaseException as exc:
                    self._error = exc

    def _put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def add(self, data: bytes | memoryview) -> None:
        buffer = self._buffer
        buffer += data
        if len(buffer) >= _FLUSH_BYTES:
            view = memoryview(buffer)
            end = len(buffer) - len(buffer) % _FLUSH_BYTES
            for start in range(0, end, _FLUSH_BYTES):
                self._put(bytes(view[start : start + _FLUSH_BYTES]))
            view.release()
            del buffer[:end]

    def finish(self) -> None:
        """Hand over the rest and wait until the writer has taken everything."""
        if self._buffer:
            self._put(bytes(self._buffer))
            self._buffer.clear()
        self.close()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop the writer thread (idempotent); the caller then commits or aborts."""
        if self._thread.is_alive():
            if self._error is not None:
                # The thread only drains now; make room for the sentinel.
                while True:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        break
            self._queue.put(None)
            self._thread.join()


class _AttachmentsByEvent:
    """Walks the attachment rows (ordered like the events) alongside the event rows."""

    def __init__(self, cursor: read_model.Rows) -> None:
        self._cursor = cursor
        self._pending = cursor.fetchone()

    def take(self, event_pk: int) -> list[AttachmentRef]:
        files: list[AttachmentRef] = []
        while self._pending is not None and self._pending[0] == event_pk:
            files.append(AttachmentRef(*self._pending[1:]))
            self._pending = self._cursor.fetchone()
        return files


def _attachments_json(files: Iterable[AttachmentRef], sign: Signer, progress: Progress) -> bytes:
    files = list(files)
    progress.files += len(files)
    return orjson.dumps(
        [
            {
                "fileName": f.file_name,
                "contentItemId": f.content_item_id,
                "fileSize": f.size,
                "presignedUrl": sign(f.storage_key, f.file_name, f.content_type),
            }
            for f in files
        ]
    )


def _candidate_head(user_id: int, candidate_id: str) -> bytes:
    return b'{"userId":%d,"candidateId":%b,"events":[' % (user_id, orjson.dumps(candidate_id))


def write_export(
    connection: Connection,
    test_pk: int,
    writer: ObjectWriter,
    store: ObjectStore,
    *,
    created: datetime,
    links_expire_at: datetime,
    progress: Progress,
    flt: EventFilter = NO_FILTER,
    fmt: str = "json",
    pseudonyms: Pseudonyms | None = None,
) -> StoredObject:
    """Write the whole file (``fmt``: json, jsonl or csv; only what ``flt`` selects;
    ``pseudonyms``: pseudonymised) and commit it; on any exception the caller aborts ``writer``."""

    def sign(key: str, name: str, content_type: str) -> str:
        return store.presigned_get_url(
            key, expires_at=links_expire_at, filename=name, content_type=content_type
        )

    progress.total = read_model.count_candidates(connection, test_pk, flt)
    sink = _Sink(writer)
    try:
        if pseudonyms is not None:
            _write_pseudonymised(connection, test_pk, flt, sink, progress, pseudonyms, fmt, created)
        elif fmt == "jsonl":
            _write_jsonl(connection, test_pk, flt, sink, sign, progress)
        elif fmt == "csv":
            _write_csv(connection, test_pk, flt, sink, sign, progress)
        else:
            sink.add(b'{"created":' + orjson.dumps(format_dt(created)) + b',"candidates":[')
            if connection.dialect.name == "postgresql":
                _write_candidates_postgres(connection, test_pk, flt, sink, sign, progress)
            elif connection.dialect.name == "sqlite":
                _write_candidates_sqlite(connection, test_pk, flt, sink, sign, progress)
            else:
                _write_candidates_generic(connection, test_pk, flt, sink, sign, progress)
            sink.add(b"]}")
        sink.finish()
    finally:
        sink.close()
    if progress.stop.is_set():
        raise ExportInterrupted
    return writer.commit()


# --- PostgreSQL ------------------------------------------------------------------------


def _splice_files(body: bytes, sign: Signer, progress: Progress) -> Iterator[bytes | memoryview]:
    """The body's pieces with each marked attachment list replaced by its final JSON. The
    text between the lists goes out as views of the body: the writer copies it once, where
    ``split`` copied the whole body once more (~9% of the worker's GIL time)."""
    view = memoryview(body)
    find = body.find
    start = 0
    while (opened := find(FILES_MARK, start)) >= 0:
        closed = find(FILES_MARK, opened + 1)
        yield view[start:opened]
        refs = read_model.decode_marked_files(body[opened + 1 : closed])
        yield _attachments_json(refs, sign, progress)
        start = closed + 1
    yield view[start:]


class _Output(Protocol):
    def add(self, data: bytes | memoryview) -> None: ...


def _write_candidates_postgres(
    connection: Connection,
    test_pk: int,
    flt: EventFilter,
    sink: _Output,
    sign: Signer,
    progress: Progress,
    *,
    lines: bool = False,
) -> None:
    """The candidates of the JSON file; ``lines``: the events as JSON Lines instead (no
    candidate envelopes, one line per event)."""
    engine = connection.engine
    snapshot_id = export_snapshot(connection)
    with ExitStack() as stack:
        readers = [connection] + [
            stack.enter_context(snapshot_reader(engine, snapshot_id)) for _ in range(_PG_READERS - 1)
        ]
        streams = [
            stack.enter_context(
                read_model.pg_candidate_rows(
                    reader, test_pk, part, len(readers), _PG_MAX_EVENTS_PER_ROW, flt, lines=lines
                )
            )
            for part, reader in enumerate(readers)
        ]
        long_reader: Connection | None = None

        first = True
        turn = 0
        while True:
            row = next(streams[turn], None)
            if row is None:
                # Parts are dealt round-robin: the first exhausted one ends the list.
                for rest in streams:
                    if next(rest, None) is not None:
                        raise RuntimeError("snapshot readers disagree on the candidates")
                break
            turn = (turn + 1) % len(streams)
            if progress.stop.is_set():
                raise ExportInterrupted
            if not lines:
                head = _candidate_head(row.user_id, row.candidate_id)
                sink.add(head if first else b"," + head)
                first = False
            if row.events > _PG_MAX_EVENTS_PER_ROW:
                if long_reader is None:
                    long_reader = stack.enter_context(snapshot_reader(engine, snapshot_id))
                _write_long_candidate(long_reader, row.candidate_pk, flt, sink, sign, progress, lines=lines)
            elif row.body is not None:
                body = row.body
                if FILES_MARK in body:  # events with attached files
                    for piece in _splice_files(body, sign, progress):
                        sink.add(piece)
                else:
                    sink.add(body)
                if lines:
                    sink.add(b"\n")
                progress.events += row.events
            if not lines:
                sink.add(b"]}")
            progress.done += 1


def _write_long_candidate(
    reader: Connection,
    candidate_pk: int,
    flt: EventFilter,
    sink: _Output,
    sign: Signer,
    progress: Progress,
    *,
    lines: bool = False,
) -> None:
    """A candidate with more events than fit a row: its fragments in pieces of _FETCH_ROWS."""
    first = True
    separator = "\n" if lines else ","
    for fragments in read_model.pg_candidate_fragments(reader, candidate_pk, _FETCH_ROWS, flt, lines=lines):
        body = separator.join(fragments).encode()
        if not first and not lines:
            sink.add(b",")
        first = False
        for piece in _splice_files(body, sign, progress) if FILES_MARK in body else (body,):
            sink.add(piece)
        if lines:
            sink.add(b"\n")
        progress.events += len(fragments)
        if progress.stop.is_set():
            raise ExportInterrupted


# --- SQLite: one body per candidate, read ahead on a thread -------------------------------


class _ReadAhead(Generic[T]):
    """Runs ``produce`` (an iterator over the database) on a thread, at most ``depth``
    items ahead of the consumer, so that reading overlaps formatting and writing while
    memory stays bounded. The consumer must call ``close()`` (also on errors) before it
    uses the connection again: it stops the thread and waits for it."""

    _DONE = object()

    def __init__(self, produce: Callable[[], Iterator[T]], depth: int) -> None:
        self._produce = produce
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="export-reader", daemon=True)
        self._thread.start()

    def _offer(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._produce():
                if not self._offer(item):
                    return
        except BaseException as exc:
            self._error = exc
        self._offer(self._DONE)

    def __iter__(self) -> Iterator[T]:
        while (item := self._queue.get()) is not self._DONE:
            yield item  # type: ignore[misc]
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _splice_sqlite_files(body: bytes, sign: Signer, progress: Progress) -> list[bytes]:
    """The body's pieces with each marked ``[doc, files]`` replaced by the doc with its
    attachments (as the generic path writes it)."""
    pieces = body.split(FILES_MARK)
    for index in range(1, len(pieces), 2):
        doc, refs = read_model.decode_sqlite_marked(pieces[index])
        pieces[index] = with_attachments(doc, _attachments_json(refs, sign, progress).decode()).encode()
    return pieces


def _write_candidates_sqlite(
    connection: Connection, test_pk: int, flt: EventFilter, sink: _Output, sign: Signer, progress: Progress
) -> None:
    """SQLite builds each candidate's events array (``read_model.SqliteCandidateEvents``) on
    a reader thread; this thread adds the envelopes and the attachments' links."""
    candidates = read_model.sqlite_candidates(connection, test_pk, flt)
    events = read_model.SqliteCandidateEvents(connection, _SQLITE_MAX_EVENTS_PER_ROW, flt)

    def produce() -> Iterator[tuple[int | None, str, int, bytes | None]]:
        # (user_id, candidate_id, events, body); a long candidate comes in several items,
        # the first with its ids, the rest with user_id None.
        for candidate_pk, user_id, candidate_id in candidates:
            count, body = events.body(candidate_pk)
            if count <= _SQLITE_MAX_EVENTS_PER_ROW:
                yield user_id, candidate_id, count, body
                continue
            yield user_id, candidate_id, 0, None
            for fragments in events.fragments(candidate_pk, _FETCH_ROWS):
                yield None, "", len(fragments), b",".join(fragments)

    reader = _ReadAhead(produce, _SQLITE_READ_AHEAD)
    try:
        open_candidate = False
        continued = False
        for user_id, candidate_id, count, body in reader:
            if user_id is not None:
                if open_candidate:
                    sink.add(b"]},")
                    progress.done += 1
                sink.add(_candidate_head(user_id, candidate_id))
                open_candidate = True
                continued = False
            if body is not None:
                if continued:
                    sink.add(b",")
                continued = True
                if FILES_MARK in body:
                    for piece in _splice_sqlite_files(body, sign, progress):
                        sink.add(piece)
                else:
                    sink.add(body)
                progress.events += count
            if progress.stop.is_set():
                raise ExportInterrupted
        if open_candidate:
            sink.add(b"]}")
            progress.done += 1
    finally:
        reader.close()


# --- other databases: one row per event ---------------------------------------------------


def _write_candidates_generic(
    connection: Connection, test_pk: int, flt: EventFilter, sink: _Output, sign: Signer, progress: Progress
) -> None:
    files_cursor = read_model.stream_attachments(connection, test_pk, _FETCH_ROWS, flt)
    attached = _AttachmentsByEvent(files_cursor)
    rows = read_model.stream_events(connection, test_pk, _FETCH_ROWS, flt)

    current_user: int | None = None
    docs: list[str] = []
    # Whether part of the current candidate's events went out already (long candidates).
    continued = False

    def flush_docs() -> None:
        nonlocal continued
        if docs:
            text = ",".join(docs)
            sink.add(("," + text if continued else text).encode())
            docs.clear()
            continued = True

    try:
        while batch := rows.fetchmany(_FETCH_ROWS):
            for user_id, candidate_id, event_pk, doc, file_count, _received in batch:
                if user_id != current_user:
                    if current_user is not None:
                        flush_docs()
                        sink.add(b"]},")
                        progress.done += 1
                    current_user = user_id
                    continued = False
                    sink.add(_candidate_head(user_id, candidate_id))
                if event_pk is None:  # a candidate without events
                    continue
                if file_count:
                    refs = attached.take(event_pk)
                    doc = with_attachments(doc, _attachments_json(refs, sign, progress).decode())
                docs.append(doc)
                progress.events += 1
            if len(docs) >= _FETCH_ROWS:
                flush_docs()
            if progress.stop.is_set():
                raise ExportInterrupted
        if current_user is not None:
            flush_docs()
            sink.add(b"]}")
            progress.done += 1
    finally:
        files_cursor.close()
        rows.close()


# --- JSON Lines and CSV: one event at a time, on both databases -------------------------


def _event_docs(
    connection: Connection, test_pk: int, flt: EventFilter, sign: Signer, progress: Progress
) -> Iterator[tuple[int, str, str, int | None]]:
    """``(userId, candidateId, event doc with its attachments, receivedAt ms)`` in file order."""
    files_cursor = read_model.stream_attachments(connection, test_pk, _FETCH_ROWS, flt)
    attached = _AttachmentsByEvent(files_cursor)
    rows = read_model.stream_events(connection, test_pk, _FETCH_ROWS, flt)
    current_user: int | None = None
    try:
        while batch := rows.fetchmany(_FETCH_ROWS):
            for user_id, candidate_id, event_pk, doc, file_count, received_at in batch:
                if user_id != current_user:
                    if current_user is not None:
                        progress.done += 1
                    current_user = user_id
                if event_pk is None:
                    continue
                if file_count:
                    refs = attached.take(event_pk)
                    doc = with_attachments(doc, _attachments_json(refs, sign, progress).decode())
                progress.events += 1
                yield user_id, candidate_id, doc, received_at
            if progress.stop.is_set():
                raise ExportInterrupted
        if current_user is not None:
            progress.done += 1
    finally:
        files_cursor.close()
        rows.close()


def _write_jsonl(
    connection: Connection, test_pk: int, flt: EventFilter, sink: _Sink, sign: Signer, progress: Progress
) -> None:
    if connection.dialect.name == "postgresql":
        # The database writes the lines itself, as it writes the JSON file's events.
        _write_candidates_postgres(connection, test_pk, flt, sink, sign, progress, lines=True)
        return
    lines: list[bytes] = []
    size = 0
    for user_id, candidate_id, doc, received_at in _event_docs(connection, test_pk, flt, sign, progress):
        line = jsonl_line(user_id, candidate_id, doc, received_at)
        lines.append(line)
        size += len(line)
        if size >= _FLUSH_BYTES:
            sink.add(b"".join(lines))
            lines.clear()
            size = 0
    if lines:
        sink.add(b"".join(lines))


def _write_csv(
    connection: Connection, test_pk: int, flt: EventFilter, sink: _Sink, sign: Signer, progress: Progress
) -> None:
    if connection.dialect.name == "postgresql":
        # The database writes JSON Lines (fast path); each line becomes a row.
        rows = CsvFromLines(sink)
        _write_candidates_postgres(connection, test_pk, flt, rows, sign, progress, lines=True)
        rows.finish()
        return
    encoder = CsvEncoder()
    sink.add(encoder.header())
    pending = 0
    for user_id, candidate_id, doc, received_at in _event_docs(connection, test_pk, flt, sign, progress):
        encoder.add(csv_row(user_id, candidate_id, doc, received_at))
        pending += 1
        if pending >= 1000:
            sink.add(encoder.take())
            pending = 0
    sink.add(encoder.take())


# --- pseudonymised: every format, both databases, one candidate at a time -----------------


def _write_pseudonymised(
    connection: Connection,
    test_pk: int,
    flt: EventFilter,
    sink: _Sink,
    progress: Progress,
    pseudonyms: Pseudonyms,
    fmt: str,
    created: datetime,
) -> None:
    """The file with pseudonyms for identities (``exports.pseudonyms``) and no attachments.

    Candidates go in pseudonym order, not ``userId`` order: the order of real ids would let
    anyone who knows the ids map them to their pseudonyms. Memory holds the candidate list
    (bounded by candidates, not events); each candidate's events stream.
    """
    candidates = sorted(
        (pseudonyms.user(user_id), pseudonyms.candidate(candidate_id), pk)
        for pk, user_id, candidate_id in read_model.list_candidates(connection, test_pk, flt)
    )
    encoder = CsvEncoder() if fmt == "csv" else None
    if encoder is not None:
        sink.add(encoder.header())
    elif fmt == "json":
        sink.add(b'{"created":' + orjson.dumps(format_dt(created)) + b',"candidates":[')
    for index, (user, candidate, pk) in enumerate(candidates):
        if progress.stop.is_set():
            raise ExportInterrupted
        if fmt == "json":
            head = b'{"userId":%b,"candidateId":%b,"events":[' % (orjson.dumps(user), orjson.dumps(candidate))
            sink.add(head if index == 0 else b"," + head)
        rows = read_model.stream_candidate_events(connection, pk, _FETCH_ROWS, flt)
        try:
            first = True
            while batch := rows.fetchmany(_FETCH_ROWS):
                pieces: list[bytes] = []
                for doc, received_at in batch:
                    clean = pseudonyms.event_doc(doc)
                    if encoder is not None:
                        encoder.add(csv_row(user, candidate, clean, received_at))
                    elif fmt == "jsonl":
                        pieces.append(jsonl_line(user, candidate, clean, received_at))
                    else:
                        pieces.append((clean if first else "," + clean).encode())
                    first = False
                progress.events += len(batch)
                sink.add(encoder.take() if encoder is not None else b"".join(pieces))
        finally:
            rows.close()
        if fmt == "json":
            sink.add(b"]}")
        progress.done += 1
    if fmt == "json":
        sink.add(b"]}")
