"""The S3 writer uploads parts concurrently (issue #15): at most ``concurrency`` parts in
flight (bounded memory), the object and its SHA-256 are those of the bytes written, and a
part that fails aborts the whole upload, leaving nothing behind. Against SeaweedFS."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from typing import Any

import pytest

from examtrail.storage.base import StorageError
from examtrail.storage.s3 import S3ObjectStore, S3ObjectWriter
from tests.storage.conftest import S3_CLIENTS, S3StoreFactory
from tests.storage.test_object_stores import PART_SIZE, leftovers, payload, write_chunks
from tests.support.seaweedfs import HOST, SeaweedS3

pytestmark = pytest.mark.s3


class _Concurrency:
    """Wraps ``client.upload_part`` to count the calls running at the same time."""

    def __init__(self, store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch, fail_part: int = 0) -> None:
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.original = store.client.upload_part
        self.fail_part = fail_part
        # The distinct buffers handed over as parts (kept: a freed one's id could recur).
        self.bodies: dict[int, Any] = {}
        monkeypatch.setattr(store.client, "upload_part", self)

    def __call__(self, **kwargs: Any) -> Any:
        with self.lock:
            self.bodies[id(kwargs["Body"])] = kwargs["Body"]
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(0.05)  # long enough for the next parts to be handed over meanwhile
            if kwargs["PartNumber"] == self.fail_part:
                raise StorageError("injected part failure")
            return self.original(**kwargs)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("client", S3_CLIENTS)
@pytest.mark.parametrize("concurrency", [1, 3])
def test_parts_upload_concurrently_within_the_bound(
    make_s3_store: S3StoreFactory, monkeypatch: pytest.MonkeyPatch, concurrency: int, client: str
) -> None:
    store = make_s3_store(s3_upload_concurrency=concurrency, s3_client=client)
    store.ensure_ready()
    counter = _Concurrency(store, monkeypatch)
    data = payload(6 * PART_SIZE + 12345, seed=concurrency)
    writer = write_chunks(store, "parallel.bin", data, chunk=256 * 1024)
    stored = writer.commit()
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join(store.open_read("parallel.bin")) == data
    assert counter.peak == concurrency
    assert leftovers(store) == ["parallel.bin"]
    # Seven parts through concurrency + 1 part buffers (filled again once uploaded and
    # hashed), plus the last, short part's own copy.
    assert len(counter.bodies) <= concurrency + 2


def test_a_failed_part_aborts_the_upload(
    make_s3_store: S3StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_s3_store(s3_upload_concurrency=3)
    store.ensure_ready()
    _Concurrency(store, monkeypatch, fail_part=2)
    writer = store.open_writer("broken.bin", content_type="application/octet-stream")
    assert isinstance(writer, S3ObjectWriter)

    def write_all() -> None:
        for _ in range(8):
            writer.write(payload(PART_SIZE))
        writer.commit()

    with pytest.raises(StorageError, match="injected part failure"):
        write_all()
    with pytest.raises(StorageError):
        writer.write(b"more")  # refused once failed
    writer.abort()
    assert leftovers(store) == []
    assert not store.exists("broken.bin")


def test_json_parts_are_stored_as_sent(make_s3_store: S3StoreFactory, seaweed: SeaweedS3) -> None:
    """The light client sends the object's type with each part. Untyped, SeaweedFS sniffs a
    JSON part as text, gzips it and unzips it again to hash it: ~15% of its CPU per export
    (bench/notes.md, export3). The filer's metadata tells whether a chunk was compressed."""
    store = make_s3_store()
    store.ensure_ready()
    events = (b'{"eventId":"%06d","payload":"%s"}' % (i, b"x" * 80) for i in range(70_000))
    data = b"[" + b",".join(events) + b"]"
    assert len(data) > PART_SIZE
    write_chunks(store, "export.json", data, chunk=256 * 1024, content_type="application/json").commit()
    assert b"".join(store.open_read("export.json")) == data
    url = f"http://{HOST}:{seaweed.ports.filer}/buckets/{store.bucket}/export.json?metadata=true"
    with urllib.request.urlopen(url) as response:
        meta = json.load(response)
    assert meta["Mime"] == "application/json"
    assert len(meta["chunks"]) >= 2
    assert not any(chunk.get("is_compressed") for chunk in meta["chunks"])
