"""Evidence-file uploads (``ingest.service.FileUploads``): what stays in the object store
and the database when a file is sent again (evidence is immutable), when recording fails,
and when streaming fails."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from examtrail.audit.models import AuditEntry
from examtrail.core.errors import Conflict, NotFound
from examtrail.ingest import repository, service
from examtrail.ingest.models import Attachment, Event, Test
from examtrail.ingest.schemas import AttachmentOut
from examtrail.runtime import Runtime
from examtrail.storage.base import ObjectTooLarge, ObjectWriter, StoredObject
from examtrail.storage.local import LocalObjectStore
from examtrail.storage.s3 import MIN_PART_SIZE, S3ObjectStore
from tests.support.api import seed_test

MiB = 1024 * 1024
FILE_URL = "/v1/test/42/candidates/100/events/ev-1/files/{}"


@pytest.fixture
def event_1(http: TestClient, headers: dict[str, str], runtime: Runtime) -> int:
    """Test 42 with event ``ev-1`` on candidate 100; returns the tenant's id."""
    seed_test(http, headers, test_id=42, candidates=1, events_per_candidate=0)
    response = http.post(
        "/v1/test/42/candidates/100/events",
        json={"eventId": "ev-1", "event": "phone_seen", "timeStamp": "2026-06-01T10:00:00Z"},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    with runtime.sessions() as session:
        return int(session.scalars(select(Test.tenant_id).where(Test.external_id == 42)).one())


def attachments(runtime: Runtime) -> list[Attachment]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Attachment)))


def file_count(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.sum(Event.file_count))) or 0)


def stored_keys(runtime: Runtime) -> list[str]:
    return sorted(runtime.store.list_keys("attachments/"))


def leftovers(runtime: Runtime) -> list[str]:
    """Committed attachment objects plus anything half-written (temporary files, pending uploads)."""
    store = runtime.store
    found = stored_keys(runtime)
    if isinstance(store, LocalObjectStore):
        found += [f"tmp:{p.name}" for p in (store.root / ".tmp").iterdir()]
    else:
        assert isinstance(store, S3ObjectStore)
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        found += [f"upload:{u.get('Key')}" for u in uploads]
    return found


def read(runtime: Runtime, key: str) -> bytes:
    return b"".join(runtime.store.open_read(key))


class SpyWriter:
    """Delegates to the store's writer and remembers what was called."""

    def __init__(self, inner: ObjectWriter) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def write(self, data: bytes) -> None:
        self.calls.append("write")
        self.inner.write(data)

    def commit(self) -> StoredObject:
        self.calls.append("commit")
        return self.inner.commit()

    def abort(self) -> None:
        self.calls.append("abort")
        self.inner.abort()


@pytest.fixture
def writers(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[SpyWriter]:
    """Every writer the runtime's store opens from now on."""
    opened: list[SpyWriter] = []
    open_writer = runtime.store.open_writer

    def spy(key: str, *, content_type: str, max_size: int | None = None) -> ObjectWriter:
        writer = SpyWriter(open_writer(key, content_type=content_type, max_size=max_size))
        opened.append(writer)
        return writer

    monkeypatch.setattr(runtime.store, "open_writer", spy)
    return opened


def uploads(runtime: Runtime, max_bytes: int = 10 * MiB) -> service.FileUploads:
    return service.FileUploads(runtime.sessions, runtime.store, max_bytes)


def upload(runtime: Runtime, tenant_id: int, body: Callable[[], AsyncIterator[bytes]], **kwargs: Any) -> Any:
    async def run() -> Any:
        return await uploads(runtime, **kwargs).upload(
            tenant_id, 42, 100, "ev-1", "clip.bin", "video/mp4", body()
        )

    return anyio.run(run)


def chunks(*parts: bytes, then: BaseException | None = None) -> Callable[[], AsyncIterator[bytes]]:
    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part
        if then is not None:
            raise then

    return body


# -- through the HTTP API ---------------------------------------------------------------------


def test_the_same_bytes_again_are_idempotent(
    http: TestClient, headers: dict[str, str], runtime: Runtime, event_1: int
) -> None:
    first = http.put(
        FILE_URL.format("photo.png"), content=b"v1" * 100, headers={**headers, "content-type": "image/png"}
    )
    assert first.status_code == 201, first.text
    [row] = attachments(runtime)

    # A client retry (another Content-Type even): 200, the same attachment, nothing new stored.
    again = http.put(FILE_URL.format("photo.png"), content=b"v1" * 100, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert first.json()["contentItemId"] == row.id
    assert first.json()["contentType"] == "image/png"
    [still] = attachments(runtime)
    assert (still.id, still.storage_key, still.content_type) == (row.id, row.storage_key, "image/png")
    assert leftovers(runtime) == [row.storage_key]  # the retry's own copy is gone
    assert file_count(runtime) == 1


def test_other_bytes_under_the_same_name_are_a_conflict_and_change_nothing(
    http: TestClient, headers: dict[str, str], runtime: Runtime, event_1: int
) -> None:
    assert http.put(FILE_URL.format("photo.png"), content=b"v1" * 100, headers=headers).status_code == 201
    [old] = attachments(runtime)
    with runtime.sessions() as session:
        stamp_before = session.scalar(select(Event.ingest_xid))

    response = http.put(
        FILE_URL.format("photo.png"), content=b"v2", headers={**headers, "content-type": "image/png"}
    )
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error"] == "file_exists"
    assert "photo.png" in body["message"]
    assert body["details"][0]["contentItemId"] == old.id
    [kept] = attachments(runtime)
    assert (kept.storage_key, kept.size, kept.sha256, kept.content_type) == (
        old.storage_key,
        old.size,
        old.sha256,
        old.content_type,
    )
    assert leftovers(runtime) == [old.storage_key]
    assert read(runtime, old.storage_key) == b"v1" * 100
    assert file_count(runtime) == 1
    with runtime.sessions() as session:
        assert session.scalar(select(Event.ingest_xid)) == stamp_before  # not "changed" for exports

    # Another name on the same event is a new file, under its own never-reused key.
    other = http.put(FILE_URL.format("photo-2.png"), content=b"v2", headers=headers)
    assert other.status_code == 201, other.text
    assert len(set(stored_keys(runtime))) == 2


def test_failed_record_of_a_new_file_leaves_no_object_and_no_row(
    http: TestClient,
    headers: dict[str, str],
    runtime: Runtime,
    event_1: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_add = repository.add_attachment

    def add_then_fail(session: Any, attachment: Attachment) -> None:
        real_add(session, attachment)  # the row and the event's file_count are flushed ...
        raise RuntimeError("database went away")  # ... and must be rolled back

    monkeypatch.setattr(repository, "add_attachment", add_then_fail)
    response = http.put(FILE_URL.format("photo.png"), content=b"x" * 5000, headers=headers)
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert attachments(runtime) == []
    assert file_count(runtime) == 0
    assert leftovers(runtime) == []


def test_failed_record_of_a_repeat_keeps_the_first_file(
    http: TestClient,
    headers: dict[str, str],
    runtime: Runtime,
    event_1: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert http.put(FILE_URL.format("photo.png"), content=b"v1", headers=headers).status_code == 201
    [old] = attachments(runtime)

    def fail(*args: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(service, "record_upload", fail)
    response = http.put(FILE_URL.format("photo.png"), content=b"v1", headers=headers)
    assert response.status_code == 500
    [kept] = attachments(runtime)
    assert (kept.storage_key, kept.size, kept.sha256) == (old.storage_key, old.size, old.sha256)
    assert leftovers(runtime) == [old.storage_key]
    assert read(runtime, old.storage_key) == b"v1"


@pytest.mark.settings(max_file_bytes=1000)
def test_too_large_upload_leaves_nothing(
    http: TestClient, headers: dict[str, str], runtime: Runtime, event_1: int, writers: list[SpyWriter]
) -> None:

    def body() -> Any:
        yield b"x" * 600
        yield b"x" * 600

    response = http.put(FILE_URL.format("big.bin"), content=body(), headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "file_too_large"
    [writer] = writers
    assert writer.calls[-1] == "abort"
    assert "commit" not in writer.calls
    assert attachments(runtime) == []
    assert leftovers(runtime) == []


@pytest.mark.settings(max_file_bytes=1000)
def test_declared_too_large_is_refused_before_anything_is_opened(
    http: TestClient, headers: dict[str, str], runtime: Runtime, event_1: int, writers: list[SpyWriter]
) -> None:
    response = http.put(FILE_URL.format("big.bin"), content=b"x" * 1001, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "file_too_large"
    assert writers == []


def test_an_empty_file_is_refused_and_nothing_is_stored(
    http: TestClient, headers: dict[str, str], runtime: Runtime, event_1: int, writers: list[SpyWriter]
) -> None:
    """Evidence is immutable: an empty body (a forgotten ``--data-binary``) would hold the name
    for good. Declared empty or sent chunked, the same answer, in the same order as any upload
    (an unknown event is a 404, a multipart body a 415); the writer, which has stored nothing
    yet, is aborted."""

    def nothing() -> Any:
        yield b""

    for body in (b"", nothing()):
        response = http.put(FILE_URL.format("empty.bin"), content=body, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "empty_file"
    assert [writer.calls for writer in writers] == [["abort"], ["abort"]]
    unknown = FILE_URL.replace("ev-1", "ev-404").format("empty.bin")
    assert http.put(unknown, content=b"", headers=headers).status_code == 404
    multipart = {**headers, "content-type": "multipart/form-data; boundary=x"}
    assert http.put(FILE_URL.format("empty.bin"), content=b"", headers=multipart).status_code == 415
    assert attachments(runtime) == [] and leftovers(runtime) == [] and file_count(runtime) == 0
    # The name is still free for the real file.
    assert http.put(FILE_URL.format("empty.bin"), content=b"evidence", headers=headers).status_code == 201
    # An empty repeat under the attached name is refused too, before its record.
    response = http.put(FILE_URL.format("empty.bin"), content=nothing(), headers=headers)
    assert response.status_code == 422 and response.json()["error"] == "empty_file"
    assert len(writers) == 3 and len(attachments(runtime)) == 1


# -- the service on its own -------------------------------------------------------------------


def test_upload_streams_every_chunk_and_records_the_file(
    http: TestClient, runtime: Runtime, event_1: int, writers: list[SpyWriter]
) -> None:
    out, created = upload(runtime, event_1, chunks(b"abc", b"", b"def"))
    assert created
    assert out == AttachmentOut(
        fileName="clip.bin",
        contentItemId=out.contentItemId,
        fileSize=6,
        sha256=hashlib.sha256(b"abcdef").hexdigest(),
        contentType="video/mp4",
    )
    [writer] = writers
    assert writer.calls == ["write", "write", "commit"]  # the empty chunk is skipped
    [row] = attachments(runtime)
    assert row.id == out.contentItemId
    assert stored_keys(runtime) == [row.storage_key]
    assert read(runtime, row.storage_key) == b"abcdef"
    assert file_count(runtime) == 1


def test_a_repeat_under_an_attached_name_is_hashed_and_never_stored(
    http: TestClient, runtime: Runtime, event_1: int, writers: list[SpyWriter]
) -> None:
    first, created = upload(runtime, event_1, chunks(b"abc", b"def"))
    assert created and len(writers) == 1
    [row] = attachments(runtime)

    # A client's retry with the same bytes (in other chunks): the stored attachment, and no
    # writer opened, so nothing to upload to the store and nothing to delete afterwards.
    again, created = upload(runtime, event_1, chunks(b"ab", b"cdef"))
    assert (again, created) == (first, False)
    # Other bytes under the name: 409, and nothing written either.
    with pytest.raises(Conflict) as caught:
        upload(runtime, event_1, chunks(b"abcdeX"))
    assert caught.value.code == "file_exists"
    # Past the limit: too large, as a first upload would be.
    with pytest.raises(ObjectTooLarge):
        upload(runtime, event_1, chunks(b"x" * 60, b"x" * 60), max_bytes=100)

    assert len(writers) == 1
    assert [(a.id, a.storage_key) for a in attachments(runtime)] == [(row.id, row.storage_key)]
    assert leftovers(runtime) == [row.storage_key]
    assert read(runtime, row.storage_key) == b"abcdef"
    assert file_count(runtime) == 1
    with runtime.sessions() as session:  # the upload and the retry are audited, as before
        uploaded = session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == "file.uploaded").order_by(AuditEntry.id)
        ).all()
    assert [json.loads(d or "{}")["created"] for d in uploaded] == [True, False]


def test_a_repeat_whose_attachment_goes_while_it_streams_is_not_found(
    http: TestClient, runtime: Runtime, event_1: int, writers: list[SpyWriter]
) -> None:
    upload(runtime, event_1, chunks(b"abc"))
    [row] = attachments(runtime)

    def erase() -> None:  # what an erasure does first: the objects, then the attachment rows
        runtime.store.delete(row.storage_key)
        with runtime.sessions() as session:
            session.execute(delete(Attachment).where(Attachment.id == row.id))
            session.commit()

    async def body() -> AsyncIterator[bytes]:
        yield b"ab"
        await anyio.to_thread.run_sync(erase)
        yield b"c"

    with pytest.raises(NotFound) as caught:
        upload(runtime, event_1, body)
    assert caught.value.code == "event_not_found"
    assert attachments(runtime) == []  # no row pointing at an object that was never written
    assert leftovers(runtime) == []
    assert len(writers) == 1


def test_unknown_target_opens_no_writer(
    http: TestClient, runtime: Runtime, event_1: int, writers: list[SpyWriter]
) -> None:
    async def run() -> None:
        await uploads(runtime).upload(event_1, 42, 100, "ev-404", "a.txt", "text/plain", chunks(b"x")())

    with pytest.raises(NotFound) as caught:
        anyio.run(run)
    assert caught.value.code == "event_not_found"
    assert writers == []


def test_over_the_limit_raises_object_too_large_and_stores_nothing(
    http: TestClient, runtime: Runtime, event_1: int, writers: list[SpyWriter]
) -> None:
    with pytest.raises(ObjectTooLarge):
        upload(runtime, event_1, chunks(b"x" * 60, b"x" * 60), max_bytes=100)
    assert writers[0].calls == ["write", "write", "abort"]
    assert attachments(runtime) == []
    assert leftovers(runtime) == []


def test_a_failing_body_aborts_the_writer_even_mid_multipart(
    http: TestClient, runtime: Runtime, event_1: int, writers: list[SpyWriter]
) -> None:
    if isinstance(runtime.store, S3ObjectStore):
        runtime.store.part_size = MIN_PART_SIZE  # the 6 MiB below start a multipart upload
    body = chunks(*[b"y" * MiB] * 6, then=ConnectionResetError("client went away"))
    with pytest.raises(ConnectionResetError):
        upload(runtime, event_1, body)
    assert writers[0].calls[-1] == "abort"
    assert attachments(runtime) == []
    assert leftovers(runtime) == []


def test_a_cancelled_upload_still_aborts_the_writer(
    http: TestClient, runtime: Runtime, event_1: int, writers: list[SpyWriter]
) -> None:
    started = anyio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"first chunk"
        started.set()
        await anyio.sleep_forever()
        yield b"never"

    async def run() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(uploads(runtime).upload, event_1, 42, 100, "ev-1", "a.bin", "x/y", stalled())
            await started.wait()
            group.cancel_scope.cancel()

    anyio.run(run)
    [writer] = writers
    assert writer.calls == ["write", "abort"]
    assert attachments(runtime) == []
    assert leftovers(runtime) == []


def test_concurrent_first_uploads_of_other_bytes_one_wins_the_other_conflicts(
    http: TestClient, runtime: Runtime, event_1: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both uploads have stored their bytes and read "no such file yet" before either
    # records (PostgreSQL; SQLite's single writer serialises them and the barrier times out).
    barrier = threading.Barrier(2, timeout=3)
    real_get = repository.get_attachment

    def get_then_wait(session: Any, event_pk: int, file_name: str) -> Any:
        found = real_get(session, event_pk, file_name)
        if found is None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        return found

    monkeypatch.setattr(repository, "get_attachment", get_then_wait)
    results: dict[bytes, Any] = {}

    def send(content: bytes) -> None:
        try:
            results[content] = upload(runtime, event_1, chunks(content))
        except Exception as exc:
            results[content] = exc

    threads = [threading.Thread(target=send, args=(body,)) for body in (b"first version", b"second version")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    won = [(body, r) for body, r in results.items() if isinstance(r, tuple)]
    lost = [r for r in results.values() if not isinstance(r, tuple)]
    assert len(won) == 1 and len(lost) == 1, results
    body, (out, created) = won[0]
    assert created
    assert isinstance(lost[0], Conflict) and lost[0].code == "file_exists"
    [row] = attachments(runtime)
    assert row.id == out.contentItemId and row.sha256 == hashlib.sha256(body).hexdigest()
    assert leftovers(runtime) == [row.storage_key]
    assert read(runtime, row.storage_key) == body
    assert file_count(runtime) == 1


def test_concurrent_first_uploads_of_the_same_bytes_agree(
    http: TestClient, runtime: Runtime, event_1: int
) -> None:
    results: list[Any] = []

    def send() -> None:
        results.append(upload(runtime, event_1, chunks(b"same bytes")))

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(created for _, created in results) == [False, False, True]
    assert len({out.contentItemId for out, _ in results}) == 1
    [row] = attachments(runtime)
    assert leftovers(runtime) == [row.storage_key]
