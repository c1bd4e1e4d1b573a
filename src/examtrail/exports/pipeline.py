"""The export pipeline: stream one test's snapshot into one JSON file in the object store.

Memory stays flat: rows come from server-side cursors in batches and bytes go out
through the store's streaming writer in ~1 MiB chunks. The object becomes visible
only when the writer commits, after the last byte.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from sqlalchemy import Connection

from examtrail.core.timeutil import format_dt
from examtrail.exports import repository
from examtrail.ingest.service import EMPTY_FILES
from examtrail.storage.base import ObjectStore, ObjectWriter, StoredObject

_FLUSH_BYTES = 1024 * 1024
_FETCH_ROWS = 5000


class ExportInterrupted(Exception):
    """The job was cancelled or taken over while running; nothing is published."""


@dataclass
class Progress:
    """Counters the heartbeat thread reads while the pipeline writes them."""

    total: int = 0
    done: int = 0
    events: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


class _Buffer:
    def __init__(self, writer: ObjectWriter) -> None:
        self._writer = writer
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self._writer.write("".join(self._parts).encode())
            self._parts.clear()
            self._size = 0


def _attachments_json(
    files: list[tuple[int, str, int, str, str]], sign: Callable[[str, str, str], str]
) -> str:
    return orjson.dumps(
        [
            {
                "fileName": name,
                "contentItemId": item_id,
                "fileSize": size,
                "presignedUrl": sign(key, name, ctype),
            }
            for item_id, name, size, key, ctype in files
        ]
    ).decode()


def write_export(
    connection: Connection,
    test_pk: int,
    writer: ObjectWriter,
    store: ObjectStore,
    *,
    created: datetime,
    links_expire_at: datetime,
    progress: Progress,
) -> StoredObject:
    """Write the whole file and commit it; on any exception the caller aborts ``writer``."""

    def sign(key: str, name: str, content_type: str) -> str:
        return store.presigned_get_url(
            key, expires_at=links_expire_at, filename=name, content_type=content_type
        )

    progress.total = int(
        connection.execute(repository.CANDIDATE_COUNT_SQL, {"test_pk": test_pk}).scalar_one()
    )
    out = _Buffer(writer)
    out.add('{"created":' + orjson.dumps(format_dt(created)).decode() + ',"candidates":[')

    files_cursor = connection.execution_options(stream_results=True, yield_per=_FETCH_ROWS).execute(
        repository.ATTACHMENTS_SQL, {"test_pk": test_pk}
    )
    pending_file = files_cursor.fetchone()
    rows = connection.execution_options(stream_results=True, yield_per=_FETCH_ROWS).execute(
        repository.EVENTS_SQL, {"test_pk": test_pk}
    )

    current_user: int | None = None
    first_event = True
    for count, (user_id, candidate_id, event_pk, doc, file_count) in enumerate(rows):
        if user_id != current_user:
            if current_user is not None:
                out.add("]}")
                progress.done += 1
                out.add(",")
            current_user = user_id
            first_event = True
            out.add(
                '{"userId":'
                + str(user_id)
                + ',"candidateId":'
                + orjson.dumps(candidate_id).decode()
                + ',"events":['
            )
        if event_pk is None:  # a candidate without events
            continue
        if not first_event:
            out.add(",")
        first_event = False
        if file_count:
            files = []
            while pending_file is not None and pending_file[0] == event_pk:
                files.append(tuple(pending_file[1:]))
                pending_file = files_cursor.fetchone()
            head, _, tail = doc.rpartition(EMPTY_FILES)
            doc = head + '"attachedFiles":' + _attachments_json(files, sign) + tail
        out.add(doc)
        progress.events += 1
        if count % 1000 == 0 and progress.stop.is_set():
            raise ExportInterrupted
    if current_user is not None:
        out.add("]}")
        progress.done += 1
    out.add("]}")
    out.flush()
    files_cursor.close()
    if progress.stop.is_set():
        raise ExportInterrupted
    return writer.commit()
