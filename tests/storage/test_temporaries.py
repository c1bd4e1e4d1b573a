"""Temporaries a killed writer left behind are swept (finding 7); the local store's path
check is made on the normalised path (finding 10)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from examtrail.runtime import Runtime
from examtrail.storage import signing
from examtrail.storage.base import ObjectStore, StorageError
from examtrail.storage.local import LocalObjectStore
from examtrail.storage.s3 import MIN_PART_SIZE, S3ObjectStore
from examtrail.tasks import STALE_TEMPORARY_SECONDS, registry, sweep_temporaries
from tests.storage.conftest import PART_SIZE, S3_CLIENTS, S3StoreFactory


def _pending(store: ObjectStore) -> list[str]:
    if isinstance(store, LocalObjectStore):
        return sorted(p.name for p in (store.root / ".tmp").iterdir())
    assert isinstance(store, S3ObjectStore)
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    return sorted(str(u.get("Key")) for u in uploads)


def test_stale_temporaries_are_swept_and_live_ones_kept(store: ObjectStore) -> None:
    store.ensure_ready()
    # A writer killed mid-write (never committed nor aborted) ...
    killed = store.open_writer("attachments/killed.bin", content_type="application/octet-stream")
    killed.write(b"x" * (MIN_PART_SIZE + 1))
    assert _pending(store)
    if isinstance(store, LocalObjectStore):
        for path in (store.root / ".tmp").iterdir():
            os.utime(path, (time.time() - 7200, time.time() - 7200))
        assert store.sweep_temporaries(3600) == 1
    else:
        # S3 times are whole seconds (rounded either way): the part's must be over a second old.
        time.sleep(2.5)
        assert store.sweep_temporaries(1.0) == 1
    assert _pending(store) == []
    # ... while a live write keeps its temporary and commits fine.
    live = store.open_writer("attachments/live.bin", content_type="application/octet-stream")
    live.write(b"y" * 10)
    assert store.sweep_temporaries(3600) == 0
    assert live.commit().size == 10


def test_the_sweeper_and_start_up_sweep_temporaries(runtime: Runtime, tmp_path: Path) -> None:
    assert "storage.sweep_temporaries" in [p.name for p in registry().periodics]
    if not isinstance(runtime.store, LocalObjectStore):
        pytest.skip("the local store's files")
    stale = runtime.store.root / ".tmp" / "upload-stale"
    stale.write_bytes(b"z" * 1000)
    os.utime(stale, (time.time() - STALE_TEMPORARY_SECONDS - 60,) * 2)
    from examtrail.app import create_app

    with TestClient(create_app(runtime=runtime)):
        assert not stale.exists()  # removed at start-up
    stale.write_bytes(b"z")
    os.utime(stale, (time.time() - STALE_TEMPORARY_SECONDS - 60,) * 2)
    assert sweep_temporaries(runtime) == 1


@pytest.mark.parametrize(
    "key", [".tmp/x", "./.tmp/x", "a/../.tmp/x", ".//.tmp/x", "./.tmp", "../x", "/etc/passwd"]
)
def test_local_keys_cannot_reach_the_temporaries_or_escape(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(tmp_path / "objects", "http://testserver", b"k" * 32)
    store.ensure_ready()
    (store.root / ".tmp" / "x").write_bytes(b"secret upload in progress")
    with pytest.raises(StorageError):
        store.path_for(key)


def test_a_signed_link_to_a_temporary_is_404(http: TestClient, runtime: Runtime) -> None:
    store = runtime.store
    if not isinstance(store, LocalObjectStore):
        pytest.skip("local store links")
    (store.root / ".tmp" / "x").write_bytes(b"secret upload in progress")
    for key in ("./.tmp/x", "a/../.tmp/x"):
        url = signing.sign("http://testserver", runtime.settings.signing_key(), key, int(time.time()) + 60)
        response = http.get(url.removeprefix("http://testserver"))
        assert response.status_code in (404, 403), (key, response.status_code, response.text)
        assert b"secret" not in response.content


def _stored_parts(store: S3ObjectStore, writer: Any, count: int) -> None:
    """Wait (bounded) until ``count`` parts of the writer's upload are stored: they are sent
    on the writer's threads."""
    for _ in range(200):
        listed = store.client.list_parts(Bucket=store.bucket, Key=writer._full_key, UploadId=writer.upload_id)
        if len(listed.get("Parts", [])) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} parts were not stored")


@pytest.mark.s3
@pytest.mark.parametrize("client", S3_CLIENTS)
def test_an_upload_still_being_written_is_not_swept(make_s3_store: S3StoreFactory, client: str) -> None:
    """The sweep keys on the upload's last part, not its start: an upload started before the
    cutoff that stored a part since is live, whichever process writes it (the sweep sees only
    the bucket)."""
    store = make_s3_store(s3_client=client)
    store.ensure_ready()
    writer = store.open_writer("exports/1/job/live.json", content_type="application/json")
    writer.write(b"x" * PART_SIZE)  # the first part starts the upload
    _stored_parts(store, writer, 1)
    time.sleep(3)  # S3 times are whole seconds (rounded either way): margins of a second
    writer.write(b"x" * PART_SIZE)
    _stored_parts(store, writer, 2)
    assert store.sweep_temporaries(2.0) == 0  # started 3 s ago, a part stored just now
    writer.write(b"y" * 10)
    assert writer.commit().size == 2 * PART_SIZE + 10
    assert _pending(store) == []


class _PagedUploads:
    """A client whose uploads come two to a page (S3 gives 1,000), each with parts in pages."""

    def __init__(self, uploads: dict[str, datetime]) -> None:
        self.uploads = uploads  # upload id -> time of its last part
        self.aborted: list[str] = []

    def list_multipart_uploads(
        self, *, Bucket: str, Prefix: str, KeyMarker: str = "", UploadIdMarker: str = ""
    ) -> dict[str, Any]:
        ids = sorted(self.uploads)
        start = ids.index(UploadIdMarker) + 1 if UploadIdMarker else 0
        page = ids[start : start + 2]
        initiated = datetime.now(UTC) - timedelta(hours=3)
        answer: dict[str, Any] = {
            "Uploads": [{"Key": f"k-{i}", "UploadId": i, "Initiated": initiated} for i in page],
            "IsTruncated": start + 2 < len(ids),
        }
        if answer["IsTruncated"]:
            answer |= {"NextKeyMarker": f"k-{page[-1]}", "NextUploadIdMarker": page[-1]}
        return answer

    def list_parts(
        self, *, Bucket: str, Key: str, UploadId: str, PartNumberMarker: int = 0
    ) -> dict[str, Any]:
        old = datetime.now(UTC) - timedelta(hours=2)
        if PartNumberMarker == 0:  # a first page of old parts, then the last part
            return {
                "Parts": [{"PartNumber": 1, "LastModified": old}],
                "IsTruncated": True,
                "NextPartNumberMarker": 1,
            }
        return {"Parts": [{"PartNumber": 2, "LastModified": self.uploads[UploadId]}], "IsTruncated": False}

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:
        self.aborted.append(UploadId)
        return {}


def test_every_page_of_uploads_and_parts_is_read() -> None:
    now = datetime.now(UTC)
    uploads = {f"u{n}": now - timedelta(hours=2 if n % 2 else 0) for n in range(5)}
    client = _PagedUploads(uploads)
    store = S3ObjectStore(cast("Any", client), "bucket")
    assert store.sweep_temporaries(STALE_TEMPORARY_SECONDS) == 2
    assert client.aborted == ["u1", "u3"]  # idle for two hours; the others stored a part just now
