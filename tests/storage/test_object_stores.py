"""The ObjectStore contract, run on the local directory store and on S3 (a real
SeaweedFS whose S3 gateway checks signatures and expiry), plus S3-specific behaviour:
multipart uploads, pre-signed URLs, bucket creation and an unreachable server."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import httpx
import pytest
from botocore.stub import Stubber

from examtrail.storage.base import ObjectStore, ObjectTooLarge, ObjectWriter, StorageError
from examtrail.storage.local import LocalObjectStore
from examtrail.storage.s3 import MAX_PRESIGN_SECONDS, MIN_PART_SIZE, S3ObjectStore, S3ObjectWriter
from tests.storage.conftest import S3_CLIENTS
from tests.support.seaweedfs import SeaweedS3, run_seaweedfs

MiB = 1024 * 1024
PART_SIZE = MIN_PART_SIZE

S3StoreFactory = Callable[..., S3ObjectStore]


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def write_chunks(
    store: ObjectStore,
    key: str,
    data: bytes,
    chunk: int = 700_001,
    content_type: str = "application/octet-stream",
    max_size: int | None = None,
) -> ObjectWriter:
    writer = store.open_writer(key, content_type=content_type, max_size=max_size)
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])
    return writer


def read_all(store: ObjectStore, key: str) -> bytes:
    return b"".join(store.open_read(key))


def leftovers(store: ObjectStore) -> list[str]:
    """Everything the backend holds: files (incl. temporary ones) or objects and pending uploads."""
    if isinstance(store, LocalObjectStore):
        return sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3ObjectStore)
    objects = store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    return sorted([str(o.get("Key")) for o in objects] + [f"upload:{u.get('Key')}" for u in uploads])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the contract, on both backends -------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4096, PART_SIZE - 1, PART_SIZE, PART_SIZE + 1])
def test_write_commit_read_back(store: ObjectStore, size: int) -> None:
    data = payload(size, seed=size)
    stored = write_chunks(store, "exports/t1/events.jsonl", data).commit()
    assert stored.key == "exports/t1/events.jsonl"
    assert stored.size == size
    assert stored.sha256 == sha256(data)
    assert store.exists("exports/t1/events.jsonl")
    assert read_all(store, "exports/t1/events.jsonl") == data


def test_multipart_object_round_trips(store: ObjectStore) -> None:
    data = payload(12 * MiB + 12_345, seed=7)  # three parts of 5 MiB, 5 MiB and ~2 MiB
    writer = write_chunks(store, "big/object.bin", data, chunk=777_777)
    if isinstance(writer, S3ObjectWriter):
        assert writer.upload_id is not None  # two full parts are already uploaded
    stored = writer.commit()
    assert (stored.size, stored.sha256) == (len(data), sha256(data))
    assert read_all(store, "big/object.bin") == data
    if isinstance(store, S3ObjectStore):
        head = store.client.head_object(Bucket=store.bucket, Key="big/object.bin")
        assert head["ContentLength"] == len(data)
        assert head["ETag"].strip('"').endswith("-3")


@pytest.mark.parametrize("size", [10, PART_SIZE + 10])
def test_object_is_invisible_until_commit(store: ObjectStore, size: int) -> None:
    writer = write_chunks(store, "pending/file.bin", payload(size))
    assert not store.exists("pending/file.bin")
    with pytest.raises(StorageError):
        read_all(store, "pending/file.bin")
    if isinstance(store, S3ObjectStore):
        listed = store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
        assert [o.get("Key") for o in listed] == []
    writer.commit()
    assert store.exists("pending/file.bin")


@pytest.mark.parametrize("size", [10, 2 * PART_SIZE + 10])
def test_abort_leaves_nothing(store: ObjectStore, size: int) -> None:
    writer = write_chunks(store, "aborted/file.bin", payload(size))
    writer.abort()
    writer.abort()  # idempotent
    assert not store.exists("aborted/file.bin")
    assert leftovers(store) == []
    with pytest.raises(StorageError):
        writer.write(b"more")
    with pytest.raises(StorageError):
        writer.commit()


def test_commit_then_abort_keeps_the_object(store: ObjectStore) -> None:
    writer = write_chunks(store, "kept.bin", b"data")
    writer.commit()
    writer.abort()
    assert read_all(store, "kept.bin") == b"data"


@pytest.mark.parametrize(("limit", "size"), [(100, 101), (PART_SIZE + MiB, 2 * PART_SIZE)])
def test_max_size_exceeded_raises_and_leaves_nothing(store: ObjectStore, limit: int, size: int) -> None:
    writer = store.open_writer("limited.bin", content_type="text/plain", max_size=limit)
    data = payload(size)
    written = 0
    while written + MiB <= limit:  # up to the limit: fine
        writer.write(data[written : written + MiB])
        written += MiB
    with pytest.raises(ObjectTooLarge):
        writer.write(data[written:])
    writer.abort()
    assert not store.exists("limited.bin")
    assert leftovers(store) == []


def test_max_size_exactly_reached_is_fine(store: ObjectStore) -> None:
    stored = write_chunks(store, "exact.bin", b"x" * 100, max_size=100).commit()
    assert stored.size == 100


def test_overwrite_replaces_the_object(store: ObjectStore) -> None:
    write_chunks(store, "same.bin", b"first version").commit()
    write_chunks(store, "same.bin", b"second").commit()
    assert read_all(store, "same.bin") == b"second"


def test_missing_object(store: ObjectStore) -> None:
    assert not store.exists("nope/missing.bin")
    with pytest.raises(StorageError):
        read_all(store, "nope/missing.bin")
    store.delete("nope/missing.bin")  # deleting nothing is fine


def test_a_read_stopped_early_leaves_the_store_usable(store: ObjectStore) -> None:
    """A reader that stops after the first chunk: its connection (S3) must not be reused
    with the rest of the body unread; the reads after it get their own bytes."""
    first, second = payload(3 * MiB, seed=21), payload(2 * MiB + 7, seed=22)
    write_chunks(store, "early/first.bin", first).commit()
    write_chunks(store, "early/second.bin", second).commit()
    for _ in range(3):
        chunks = store.open_read("early/first.bin")
        head = next(iter(chunks))
        assert first.startswith(head)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        assert read_all(store, "early/second.bin") == second
        assert store.exists("early/first.bin")


def test_delete_and_delete_prefix_with_keep(store: ObjectStore) -> None:
    keys = [
        "exp/1/a.jsonl",
        "exp/1/b.jsonl",
        "exp/1/sub/c.jsonl",
        "exp/10/a.jsonl",
        "exp/2/a.jsonl",
        "other.bin",
    ]
    for key in keys:
        write_chunks(store, key, key.encode()).commit()

    store.delete("other.bin")
    assert not store.exists("other.bin")

    assert store.delete_prefix("exp/1/", keep="exp/1/b.jsonl") == 2
    assert [k for k in keys if store.exists(k)] == ["exp/1/b.jsonl", "exp/10/a.jsonl", "exp/2/a.jsonl"]
    assert store.delete_prefix("exp/1/") == 1
    assert store.delete_prefix("exp/1/") == 0
    assert store.delete_prefix("nothing/here/") == 0
    assert [k for k in keys if store.exists(k)] == ["exp/10/a.jsonl", "exp/2/a.jsonl"]


def test_ensure_ready_and_check_are_idempotent(store: ObjectStore) -> None:
    store.ensure_ready()
    store.ensure_ready()
    store.check()


def test_presigned_url(store: ObjectStore) -> None:
    data = payload(3000, seed=3)
    write_chunks(store, "links/events.jsonl", data).commit()
    expires_at = datetime.now(UTC) + timedelta(minutes=10)
    url = store.presigned_get_url("links/events.jsonl", expires_at=expires_at, filename="events.jsonl")
    if isinstance(store, LocalObjectStore):
        # The HTTP route lives in examtrail.storage.api; check the link's shape and signature.
        parts = urlsplit(url)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        assert url.startswith("http://testserver/files/")
        assert unquote(parts.path) == "/files/links/events.jsonl"
        expires, sig = int(query["expires"]), query["sig"]
        assert expires == int(expires_at.timestamp())
        assert query["filename"] == "events.jsonl"
        assert store.verify_signature("links/events.jsonl", expires, "events.jsonl", sig)
        forged = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        assert not store.verify_signature("links/events.jsonl", expires, "events.jsonl", forged)
        assert not store.verify_signature("links/other.jsonl", expires, "events.jsonl", sig)
        assert not store.verify_signature("links/events.jsonl", expires + 1, "events.jsonl", sig)
        assert not store.verify_signature("links/events.jsonl", expires, "other.jsonl", sig)
        return
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-disposition"] == 'attachment; filename="events.jsonl"'


# -- S3 only ------------------------------------------------------------------------------


@pytest.fixture(params=S3_CLIENTS)
def s3_store(request: pytest.FixtureRequest, make_s3_store: S3StoreFactory) -> S3ObjectStore:
    store = make_s3_store(s3_client=request.param)
    store.ensure_ready()
    return store


def _tamper(url: str) -> str:
    head, _, signature = url.rpartition("X-Amz-Signature=")
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    return f"{head}X-Amz-Signature={flipped}"


@pytest.mark.s3
def test_presigned_url_rejects_tampering(s3_store: S3ObjectStore) -> None:
    write_chunks(s3_store, "secret/a.bin", b"payload a").commit()
    write_chunks(s3_store, "secret/b.bin", b"payload b").commit()
    url = s3_store.presigned_get_url("secret/a.bin", expires_at=datetime.now(UTC) + timedelta(minutes=5))
    assert httpx.get(url).status_code == 200

    assert httpx.get(_tamper(url)).status_code == 403
    assert httpx.get(url.replace("/secret/a.bin?", "/secret/b.bin?")).status_code == 403
    assert httpx.get(url.replace("X-Amz-Expires=", "X-Amz-Expires=9")).status_code == 403
    unsigned = url.split("?", 1)[0]
    assert httpx.get(unsigned).status_code == 403


@pytest.mark.s3
def test_presigned_url_expires(s3_store: S3ObjectStore) -> None:
    write_chunks(s3_store, "expiring.bin", b"soon gone").commit()
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    url = s3_store.presigned_get_url("expiring.bin", expires_at=expires_at)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["2"]
    assert httpx.get(url).status_code == 200
    # X-Amz-Date has whole seconds, so the link may die up to a second early; wait past the end.
    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 1.2)
    response = httpx.get(url)
    assert response.status_code == 403
    assert b"expired" in response.content.lower()


@pytest.mark.s3
def test_presigned_url_headers(s3_store: S3ObjectStore) -> None:
    write_chunks(s3_store, "dl/x.jsonl", b'{"a": 1}\n', content_type="application/octet-stream").commit()
    expires_at = datetime.now(UTC) + timedelta(minutes=5)

    url = s3_store.presigned_get_url(
        "dl/x.jsonl",
        expires_at=expires_at,
        filename="test 42 events.jsonl",
        content_type="application/x-ndjson",
    )
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="test 42 events.jsonl"'
    assert response.headers["content-type"] == "application/x-ndjson"

    url = s3_store.presigned_get_url("dl/x.jsonl", expires_at=expires_at, filename='Prüfung "A"\n.jsonl')
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"Pr_fung _A__.jsonl\"; filename*=UTF-8''Pr%C3%BCfung%20%22A%22%0A.jsonl"
    )

    plain = httpx.get(s3_store.presigned_get_url("dl/x.jsonl", expires_at=expires_at))
    assert "content-disposition" not in plain.headers
    assert plain.headers["content-type"] == "application/octet-stream"


@pytest.mark.s3
def test_presigned_expiry_is_clamped(s3_store: S3ObjectStore) -> None:
    def expires_param(expires_at: datetime) -> int:
        url = s3_store.presigned_get_url("k", expires_at=expires_at)
        return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])

    now = datetime.now(UTC)
    assert expires_param(now + timedelta(days=30)) == MAX_PRESIGN_SECONDS
    assert expires_param(now - timedelta(hours=1)) == 1
    assert 3599 <= expires_param(now + timedelta(hours=1)) <= 3600
    naive_utc = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    assert 3598 <= expires_param(naive_utc) <= 3600


@pytest.mark.s3
def test_presigned_url_uses_public_endpoint(seaweed: SeaweedS3, make_s3_store: S3StoreFactory) -> None:
    public = f"http://localhost:{seaweed.ports.s3}"
    store = make_s3_store(s3_public_endpoint_url=public)
    store.ensure_ready()
    write_chunks(store, "pub.bin", b"public").commit()
    url = store.presigned_get_url("pub.bin", expires_at=datetime.now(UTC) + timedelta(minutes=1))
    assert url.startswith(f"{public}/{store.bucket}/pub.bin?")
    assert httpx.get(url).content == b"public"


@pytest.mark.s3
def test_prefix_is_invisible_to_callers(make_s3_store: S3StoreFactory) -> None:
    store = make_s3_store(s3_prefix="/tenant-a//exports/")
    store.ensure_ready()
    write_chunks(store, "t1/file.bin", b"one").commit()
    write_chunks(store, "t1/keep.bin", b"two").commit()
    raw = store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
    assert sorted(str(o.get("Key")) for o in raw) == [
        "tenant-a/exports/t1/file.bin",
        "tenant-a/exports/t1/keep.bin",
    ]
    # An object beside the prefix must survive a delete of everything under it.
    store.client.put_object(Bucket=store.bucket, Key="tenant-b/t1/file.bin", Body=b"x")
    store.client.put_object(Bucket=store.bucket, Key="tenant-a/exports2/file.bin", Body=b"x")

    assert store.exists("t1/file.bin")
    assert read_all(store, "/t1/file.bin") == b"one"
    url = store.presigned_get_url("t1/file.bin", expires_at=datetime.now(UTC) + timedelta(minutes=1))
    assert "/tenant-a/exports/t1/file.bin?" in url
    assert httpx.get(url).content == b"one"
    assert store.delete_prefix("", keep="t1/keep.bin") == 1
    assert not store.exists("t1/file.bin")
    assert store.exists("t1/keep.bin")
    for outside in ("tenant-b/t1/file.bin", "tenant-a/exports2/file.bin"):
        assert store.client.head_object(Bucket=store.bucket, Key=outside)["ContentLength"] == 1


@pytest.mark.s3
def test_abort_tolerates_an_upload_that_is_already_gone(s3_store: S3ObjectStore) -> None:
    writer = write_chunks(s3_store, "gone.bin", payload(PART_SIZE + 1))
    assert isinstance(writer, S3ObjectWriter)
    assert writer.upload_id is not None
    s3_store.client.abort_multipart_upload(Bucket=s3_store.bucket, Key="gone.bin", UploadId=writer.upload_id)
    writer.abort()  # NoSuchUpload is not an error
    assert leftovers(s3_store) == []


def test_abort_swallows_no_such_upload_only() -> None:
    """SeaweedFS accepts a repeated abort, AWS answers NoSuchUpload: both are fine."""
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret"
    )
    with Stubber(client) as stubber:
        stubber.add_response("create_multipart_upload", {"UploadId": "u-1"})
        stubber.add_response("upload_part", {"ETag": '"e1"'})
        stubber.add_client_error("abort_multipart_upload", "AccessDenied", http_status_code=403)
        stubber.add_client_error("abort_multipart_upload", "NoSuchUpload", http_status_code=404)
        writer = S3ObjectWriter(
            client, "b", "k", "k", content_type="text/plain", part_size=PART_SIZE, max_size=None
        )
        writer.write(b"x" * PART_SIZE)
        assert writer.upload_id == "u-1"
        with pytest.raises(StorageError) as raised:
            writer.abort()
        assert "AccessDenied" in str(raised.value)
        assert "secret" not in str(raised.value)
        assert writer.upload_id == "u-1"  # kept for another try
        writer.abort()  # NoSuchUpload: already gone
        writer.abort()  # and no further call
        stubber.assert_no_pending_responses()


@pytest.mark.s3
def test_delete_prefix_in_batches(s3_store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from examtrail.storage import s3 as s3_module

    monkeypatch.setattr(s3_module, "_DELETE_BATCH", 3)
    for number in range(8):
        s3_store.client.put_object(Bucket=s3_store.bucket, Key=f"many/{number}.bin", Body=b"x")
    assert s3_store.delete_prefix("many/", keep="many/4.bin") == 7
    assert leftovers(s3_store) == ["many/4.bin"]


@pytest.mark.s3
def test_ensure_ready_creates_a_missing_bucket(make_s3_store: S3StoreFactory) -> None:
    store = make_s3_store()
    with pytest.raises(StorageError):
        store.check()
    store.ensure_ready()
    store.check()
    store.ensure_ready()  # idempotent
    write_chunks(store, "k", b"v").commit()
    assert read_all(store, "k") == b"v"


@pytest.mark.s3
@pytest.mark.parametrize("client", S3_CLIENTS)
def test_wrong_credentials_are_reported_without_leaking(
    seaweed: SeaweedS3, make_s3_store: S3StoreFactory, client: str
) -> None:
    store = make_s3_store(s3_secret_access_key="not-the-secret-0123456789", s3_client=client)
    with pytest.raises(StorageError) as raised:
        store.ensure_ready()
    assert "not-the-secret" not in str(raised.value)
    assert seaweed.secret_key not in str(raised.value)
    with pytest.raises(StorageError):
        store.check()


# -- an S3 server that goes away (its own SeaweedFS, so the shared one stays up) ------------


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[SeaweedS3]:
    with run_seaweedfs(tmp_path / "seaweedfs") as server:
        yield server


@pytest.mark.s3
def test_stopped_server_raises_storage_error_and_recovers(own_seaweed: SeaweedS3) -> None:
    from examtrail.core.settings import Settings

    store = S3ObjectStore.from_settings(
        Settings(**own_seaweed.settings_overrides("fault-bucket", s3_part_size=PART_SIZE))
    )
    store.ensure_ready()
    data = payload(PART_SIZE + 100, seed=11)
    write_chunks(store, "before.bin", data).commit()
    interrupted = write_chunks(store, "interrupted.bin", payload(PART_SIZE + 10))  # one part uploaded
    assert isinstance(interrupted, S3ObjectWriter)
    assert interrupted.upload_id is not None

    own_seaweed.stop()
    with pytest.raises(StorageError) as raised:
        store.check()
    assert own_seaweed.secret_key not in str(raised.value)
    with pytest.raises(StorageError):
        store.exists("before.bin")
    with pytest.raises(StorageError):
        read_all(store, "before.bin")
    with pytest.raises(StorageError):
        interrupted.commit()
    with pytest.raises(StorageError):
        interrupted.abort()  # the server is away: the upload cannot be dropped yet

    own_seaweed.start()
    store.check()
    assert read_all(store, "before.bin") == data
    interrupted.abort()  # now it can
    interrupted.abort()
    assert leftovers(store) == ["before.bin"]


def test_large_object_is_written_back_on_the_way(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local writer starts the disk writeback every few MiB (so the final fsync is
    short); the bytes, size and hash are unchanged. S3 takes pieces of any buffer type
    (the export pipeline hands it memoryviews and bytearrays directly)."""
    from examtrail.storage import local

    monkeypatch.setattr(local, "_WRITEBACK_BYTES", MiB)
    data = payload(3 * PART_SIZE + 54_321, seed=11)
    writer = store.open_writer("big/written-back.bin", content_type="application/octet-stream")
    for n, start in enumerate(range(0, len(data), 300_007)):
        piece = data[start : start + 300_007]
        if isinstance(writer, S3ObjectWriter):
            writer.write((memoryview, bytearray, bytes)[n % 3](piece))
        else:
            writer.write(piece)
    stored = writer.commit()
    assert (stored.size, stored.sha256) == (len(data), sha256(data))
    assert read_all(store, "big/written-back.bin") == data
