"""Temporaries a killed writer left behind are swept (finding 7); the local store's path
check is made on the normalised path (finding 10)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from examtrail.runtime import Runtime
from examtrail.storage import signing
from examtrail.storage.base import ObjectStore, StorageError
from examtrail.storage.local import LocalObjectStore
from examtrail.storage.s3 import MIN_PART_SIZE, S3ObjectStore
from examtrail.tasks import STALE_TEMPORARY_SECONDS, registry, sweep_temporaries


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
        time.sleep(1.5)
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
