"""Object store on an S3-compatible service (AWS S3, SeaweedFS, MinIO, Ceph RGW, ...).

Uploads stream through a multipart upload with memory bounded by the part size; an
object only appears at its key when the upload is completed on ``commit()``. Small
objects (less than one part) are sent with a single ``PutObject``. Download links are
pre-signed ``GetObject`` URLs, signed against the public endpoint when one is set.

Two clients speak to S3 (``EXAMTRAIL_S3_CLIENT``): with static credentials our own light
client (``storage/s3http.py``, ~20 MB less per process than boto3), otherwise boto3, which
finds credentials on its own chain (environment, profile, instance role, SSO) and is only
imported then. Every client failure surfaces as :class:`StorageError` with a short message
(the operation, the key and the S3 error code); credentials never appear in it.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from examtrail.core.settings import Settings
from examtrail.storage.base import ObjectTooLarge, StorageError, StoredObject
from examtrail.storage.s3http import LightS3Client, S3Error, S3ResponseError
from examtrail.storage.sigv4 import S3Presigner, response_query

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        MultipartUploadTypeDef,
        ObjectIdentifierTypeDef,
    )

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_READ_CHUNK = 1024 * 1024
_DELETE_BATCH = 1000
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
# Retries (botocore's standard mode on both clients) and timeouts.
_MAX_ATTEMPTS = 4
_CONNECT_TIMEOUT = 5
_READ_TIMEOUT = 60


def _client_errors() -> tuple[type[Exception], ...]:
    """The exceptions a client raises for a failed request. botocore's only matter once
    botocore is loaded (the boto3 client), and looking them up must not load it."""
    boto = sys.modules.get("botocore.exceptions")
    if boto is None:
        return (S3Error,)
    return (S3Error, boto.BotoCoreError, boto.ClientError)


def _response_code(exc: Exception) -> str | None:
    """The S3 error code when S3 answered with an error; None when there was no answer."""
    if isinstance(exc, S3ResponseError):
        return exc.code
    response = getattr(exc, "response", None)  # botocore's ClientError
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or "unknown error")
    return None


def _error_code(exc: Exception) -> str:
    code = _response_code(exc)
    if code is not None:
        return code
    return exc.code if isinstance(exc, S3Error) else type(exc).__name__


class UploadGone(StorageError):
    """The multipart upload no longer exists (S3's ``NoSuchUpload``: completed or aborted)."""


@contextmanager
def _translate(action: str) -> Iterator[None]:
    """Re-raise client failures as StorageError with a short, credential-free message."""
    try:
        yield
    except _client_errors() as exc:
        code = _error_code(exc)
        error = UploadGone if code == "NoSuchUpload" else StorageError
        raise error(f"S3 {action} failed: {code}") from exc


def content_disposition(filename: str) -> str:
    """``attachment; filename="..."``, plus RFC 6266 ``filename*`` when the name is not plain ASCII."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


@lru_cache(maxsize=1024)
def _response_query(filename: str, content_type: str) -> str:
    """The encoded ``&response-…`` part of a link: the same for every link to a file of
    that name and type (an export's names repeat: report.pdf, photo.jpg…)."""
    params: list[tuple[str, str]] = []
    if filename:
        params.append(("response-content-disposition", content_disposition(filename)))
    if content_type:
        params.append(("response-content-type", content_type))
    return response_query(params)


def _boto3_client(settings: Settings, endpoint_url: str | None) -> S3Client:
    """A boto3 client: credentials from settings, or boto's default chain (env, profile,
    instance role, SSO) when they are not set. Imported here, only when used (~20 MB)."""
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    config = Config(
        signature_version="s3v4",
        # UNSIGNED-PAYLOAD: SigV4 would otherwise hash every part a second time on plain
        # HTTP endpoints; integrity is still checked (Content-Length, our SHA-256).
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        retries={"mode": "standard", "max_attempts": _MAX_ATTEMPTS},
        connect_timeout=_CONNECT_TIMEOUT,
        read_timeout=_READ_TIMEOUT,
        max_pool_connections=max(10, settings.worker_threads * 2 + 4),
        # Checksums only where S3 requires them: several S3-compatible servers reject
        # the newer flexible-checksum headers and trailers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        config=config,
        region_name=settings.s3_region,
        # None falls back to boto's default chain (env, profile, instance role, ...).
        aws_access_key_id=settings.s3_access_key_id or None,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
    )


class S3ObjectWriter:
    """Streams one object into S3; see the module docstring.

    Parts are uploaded on a small thread pool, at most ``concurrency`` at once, while the
    caller keeps writing: memory stays within ``part_size x (concurrency + 1)`` (the
    parts in flight and the buffer being filled). A full buffer is handed over as the part
    itself, not copied, and once uploaded and hashed it is filled again with a later part:
    an object of many parts takes ``concurrency + 1`` buffers, not one new one per part
    (each new one costs its page faults and its unmapping). The
    SHA-256 is computed on its own thread, part by part in order (hashlib releases the
    GIL), so neither the caller nor the uploads wait for it. The upload is completed only
    when every part succeeded; any failure aborts it.
    """

    # ``write()`` only copies into the part buffer; uploads and hashing run on threads of
    # the writer's own, so callers need no writer thread of theirs (see exports.pipeline).
    buffers_in_background = True

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        full_key: str,
        *,
        content_type: str,
        part_size: int,
        max_size: int | None,
        concurrency: int = 2,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._full_key = full_key
        self._content_type = content_type
        self._part_size = max(part_size, MIN_PART_SIZE)
        self._concurrency = max(1, concurrency)
        self._max_size = max_size
        # The light client sends the object's type with each part (boto3's UploadPart has
        # no such field): SeaweedFS then stores a part as it stores a whole object of that
        # type, instead of gzipping what it sniffs as text (~15% of its CPU per export).
        light = isinstance(client, LightS3Client)
        self._part_type: dict[str, Any] = {"ContentType": content_type} if light else {}
        self._size = 0
        self._hash = hashlib.sha256()
        # The part being filled: grows by appends up to a part (a small object never takes
        # a whole one); a recycled buffer is a part long and filled in place up to _filled.
        self._buffer = bytearray()
        self._filled = 0
        self._free: list[bytearray] = []
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._next_part = 1
        # Uploads and hashing of the parts handed over, oldest first.
        self._in_flight: deque[tuple[Future[CompletedPartTypeDef], Future[None], bytearray | bytes]] = deque()
        self._uploads: ThreadPoolExecutor | None = None
        self._hasher: ThreadPoolExecutor | None = None
        # open -> committed | aborted; "failed" refuses writes but still allows abort().
        self._state = "open"

    @property
    def upload_id(self) -> str | None:
        """The multipart upload in progress, if one was started (for tests and logs)."""
        return self._upload_id

    def _ensure_open(self) -> None:
        if self._state != "open":
            raise StorageError(f"writer for {self._key!r} is {self._state}")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._ensure_open()
        self._size += len(data)
        if self._max_size is not None and self._size > self._max_size:
            # Nothing may stay behind: drop the parts already uploaded right away. Should
            # that fail, the writer stays "failed" and the caller's abort() tries again.
            with suppress(StorageError):
                self.abort()
            raise ObjectTooLarge(f"object exceeds the limit of {self._max_size} bytes")
        end = self._filled + len(data)
        if end < self._part_size:
            # The common case (many small writes): one copy into the part, nothing else.
            if len(self._buffer) == self._part_size:
                self._buffer[self._filled : end] = data
            else:
                self._buffer += data
            self._filled = end
            return
        view = memoryview(data).cast("B")
        try:
            while view:
                piece = view[: self._part_size - self._filled]
                end = self._filled + len(piece)
                if len(self._buffer) == self._part_size:
                    self._buffer[self._filled : end] = piece
                else:
                    self._buffer += piece
                self._filled = end
                view = view[len(piece) :]
                if end == self._part_size:
                    # The full buffer goes as the part (bytearray: both clients take it);
                    # _send_part waits for a slot, which returns a buffer to the pool.
                    self._send_part(self._buffer)
                    self._buffer = self._free.pop() if self._free else bytearray(self._part_size)
                    self._filled = 0
        except StorageError:
            self._state = "failed"
            raise

    def _pending(self) -> bytes:
        """The bytes written since the last part (a copy: the last part or a small object)."""
        return bytes(memoryview(self._buffer)[: self._filled])

    def _send_part(self, body: bytearray | bytes) -> None:
        if self._upload_id is None:
            with _translate(f"create multipart upload for {self._key!r}"):
                created = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._full_key, ContentType=self._content_type
                )
            self._upload_id = created["UploadId"]
            self._uploads = ThreadPoolExecutor(self._concurrency, thread_name_prefix="s3-part")
            self._hasher = ThreadPoolExecutor(1, thread_name_prefix="s3-hash")
        assert self._uploads is not None and self._hasher is not None
        self._wait_for_slot()
        number, self._next_part = self._next_part, self._next_part + 1
        self._in_flight.append(
            (
                self._uploads.submit(self._upload_part, self._upload_id, number, body),
                self._hasher.submit(self._hash.update, body),
                body,
            )
        )

    def _release_buffers(self) -> None:
        self._buffer = bytearray()
        self._filled = 0
        self._free.clear()

    def _wait_for_slot(self) -> None:
        # Bounded memory: wait for the oldest part before handing over one more.
        while len(self._in_flight) >= self._concurrency:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        upload, hashing, body = self._in_flight.popleft()
        hashing.result()
        self._parts.append(upload.result())
        if isinstance(body, bytearray) and len(body) == self._part_size:
            self._free.append(body)  # uploaded and hashed: free to take a later part

    def _upload_part(self, upload_id: str, number: int, body: bytearray | bytes) -> CompletedPartTypeDef:
        with _translate(f"upload of part {number} of {self._key!r}"):
            response = self._client.upload_part(
                Bucket=self._bucket,
                Key=self._full_key,
                UploadId=upload_id,
                PartNumber=number,
                Body=cast("bytes", body),  # botocore takes a bytearray too (its stubs say not)
                **self._part_type,
            )
        return {"ETag": response["ETag"], "PartNumber": number}

    def _drain(self) -> None:
        """Wait for every part handed over; the first failure is raised after all ended."""
        failure: BaseException | None = None
        while self._in_flight:
            try:
                self._finish_oldest()
            except BaseException as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _shutdown(self) -> None:
        for pool in (self._uploads, self._hasher):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._uploads = self._hasher = None

    def commit(self) -> StoredObject:
        self._ensure_open()
        try:
            if self._upload_id is None:
                body = self._pending()
                self._hash.update(body)
                with _translate(f"upload of {self._key!r}"):
                    self._client.put_object(
                        Bucket=self._bucket,
                        Key=self._full_key,
                        Body=body,
                        ContentType=self._content_type,
                    )
            else:
                if self._filled:
                    self._send_part(self._pending())
                self._release_buffers()
                self._drain()
                with _translate(f"completion of {self._key!r}"):
                    self._client.complete_multipart_upload(
                        Bucket=self._bucket,
                        Key=self._full_key,
                        UploadId=self._upload_id,
                        MultipartUpload={"Parts": self._parts},
                    )
        except StorageError:
            self._state = "failed"
            raise
        finally:
            self._shutdown()
            self._release_buffers()
        self._state = "committed"
        return StoredObject(key=self._key, size=self._size, sha256=self._hash.hexdigest())

    def abort(self) -> None:
        if self._state in ("committed", "aborted"):
            return
        self._release_buffers()
        # Parts still uploading would otherwise land after the abort and stay behind.
        for upload, hashing, _ in self._in_flight:
            upload.cancel()
            hashing.cancel()
        with suppress(BaseException):
            self._drain()
        self._shutdown()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            try:
                with _translate(f"abort of the upload of {self._key!r}"):
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=self._full_key, UploadId=upload_id
                    )
            except StorageError as exc:
                cause = exc.__cause__
                gone = isinstance(cause, Exception) and _response_code(cause) in ("NoSuchUpload", "404")
                if not gone:
                    self._upload_id = upload_id  # keep it so that a later abort() can retry
                    self._state = "failed"
                    raise
        self._state = "aborted"


class S3ObjectStore:
    name = "s3"

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        prefix: str = "",
        part_size: int = MIN_PART_SIZE,
        upload_concurrency: int = 2,
        presign_client: S3Client | None = None,
        region: str = "us-east-1",
        presigner: S3Presigner | None = None,
    ) -> None:
        self.client = client
        self.presign_client = presign_client or client
        # With static credentials links are signed locally (same URL, ~50x faster).
        self.presigner = presigner
        self.bucket = bucket
        self.prefix = "/".join(part for part in prefix.split("/") if part)
        self.part_size = max(part_size, MIN_PART_SIZE)
        self.upload_concurrency = upload_concurrency
        self.region = region
        self._last_expiry: tuple[datetime, int] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ObjectStore:
        secret = settings.s3_secret_access_key
        access_key = settings.s3_access_key_id or None
        secret_key = secret.get_secret_value() if secret is not None else None
        public = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        static = bool(access_key and secret_key)
        client: S3Client
        if settings.s3_client == "light" or (settings.s3_client == "auto" and static):
            if not (access_key and secret_key):
                raise StorageError(
                    "EXAMTRAIL_S3_CLIENT=light needs static credentials: "
                    "EXAMTRAIL_S3_ACCESS_KEY_ID and EXAMTRAIL_S3_SECRET_ACCESS_KEY"
                )
            # No endpoint: AWS's regional one, path-style as the boto3 client is configured.
            endpoint = settings.s3_endpoint_url or f"https://s3.{settings.s3_region}.amazonaws.com"
            light_client = LightS3Client(
                endpoint,
                settings.s3_region,
                access_key,
                secret_key,
                max_pool_connections=max(10, settings.worker_threads * 2 + 4),
                connect_timeout=_CONNECT_TIMEOUT,
                read_timeout=_READ_TIMEOUT,
                max_attempts=_MAX_ATTEMPTS,
            )
            # Same methods, arguments and answers as boto3's for what the store calls.
            client = cast("S3Client", light_client)
            presign_client = None
            presign_endpoint = public or endpoint
        else:
            client = _boto3_client(settings, settings.s3_endpoint_url)
            presign_client = _boto3_client(settings, public)
            presign_endpoint = presign_client.meta.endpoint_url
        presigner = None
        if access_key and secret_key and presign_endpoint:
            presigner = S3Presigner(
                presign_endpoint, settings.s3_bucket, settings.s3_region, access_key, secret_key
            )
        return cls(
            client,
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            part_size=settings.s3_part_size,
            upload_concurrency=settings.s3_upload_concurrency,
            presign_client=presign_client,
            region=settings.s3_region,
            presigner=presigner,
        )

    def full_key(self, key: str) -> str:
        """The S3 key behind a logical key (the configured prefix joined with '/')."""
        key = key.lstrip("/")
        if not key:
            raise StorageError("empty object key")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _full_prefix(self, prefix: str) -> str:
        prefix = prefix.lstrip("/")
        if not self.prefix:
            return prefix
        return f"{self.prefix}/{prefix}"

    def ensure_ready(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except _client_errors() as exc:
            code = _response_code(exc)
            if code is None:
                raise StorageError(f"S3 bucket {self.bucket!r} is not reachable: {_error_code(exc)}") from exc
            if code not in _MISSING_CODES:
                raise StorageError(f"S3 bucket {self.bucket!r} is not accessible: {code}") from exc
        try:
            if self.region == "us-east-1":
                self.client.create_bucket(Bucket=self.bucket)
            else:
                self.client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={
                        "LocationConstraint": cast("BucketLocationConstraintType", self.region)
                    },
                )
        except _client_errors() as exc:
            code = _error_code(exc)
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                # Someone else created it meanwhile; usable if we can see it.
                self.check()
                return
            if code in ("AccessDenied", "403", "Forbidden"):
                raise StorageError(
                    f"S3 bucket {self.bucket!r} does not exist and these credentials may not create it"
                ) from exc
            raise StorageError(f"S3 creation of bucket {self.bucket!r} failed: {code}") from exc

    def sweep_temporaries(self, older_than_seconds: float) -> int:
        """Abort the multipart uploads under this store's prefix idle for more than
        ``older_than_seconds``: started that long ago with no part stored since (a killed writer's
        parts; never visible as objects).

        An upload being written stores a part every ``part_size`` bytes, so the time of its last
        part keeps it fresh, as a live write's mtime does in the local store; this holds for the
        uploads of every process sharing the bucket, which no registry in this process knows."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        removed = 0
        for upload in self._pending_uploads():
            initiated = upload.get("Initiated")
            key, upload_id = str(upload.get("Key")), str(upload.get("UploadId"))
            if initiated is None or initiated >= cutoff or self._part_stored_since(key, upload_id, cutoff):
                continue
            try:
                with _translate(f"abort of a stale upload of {key!r}"):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except UploadGone:
                continue  # completed or aborted meanwhile
            removed += 1
        return removed

    def _pending_uploads(self) -> Iterator[MultipartUploadTypeDef]:
        """Every multipart upload under this store's prefix, page after page (1,000 a page)."""
        prefix = self._full_prefix("")
        markers: tuple[str, str] | None = None
        while True:
            with _translate(f"listing of pending uploads in {self.bucket!r}"):
                if markers is None:
                    page = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
                else:
                    page = self.client.list_multipart_uploads(
                        Bucket=self.bucket, Prefix=prefix, KeyMarker=markers[0], UploadIdMarker=markers[1]
                    )
            yield from page.get("Uploads", [])
            following = (page.get("NextKeyMarker", ""), page.get("NextUploadIdMarker", ""))
            # A store that names no next page, or the same one again, has no more to give.
            if not page.get("IsTruncated") or not following[0] or following == markers:
                return
            markers = following

    def _part_stored_since(self, key: str, upload_id: str, cutoff: datetime) -> bool:
        """Whether a part of the upload was stored at ``cutoff`` or later (the upload is live);
        an upload gone meanwhile (completed or aborted) counts as live: nothing to abort."""
        marker = 0
        while True:
            try:
                with _translate(f"listing of the parts of an upload of {key!r}"):
                    page = self.client.list_parts(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                    )
            except UploadGone:
                return True
            modified = (part.get("LastModified") for part in page.get("Parts", []))
            if any(when is not None and when >= cutoff for when in modified):
                return True
            next_marker = page.get("NextPartNumberMarker", 0)
            if not page.get("IsTruncated") or not next_marker or next_marker == marker:
                return False
            marker = next_marker

    def check(self) -> None:
        with _translate(f"check of bucket {self.bucket!r}"):
            self.client.head_bucket(Bucket=self.bucket)

    def open_writer(self, key: str, *, content_type: str, max_size: int | None = None) -> S3ObjectWriter:
        return S3ObjectWriter(
            self.client,
            self.bucket,
            key,
            self.full_key(key),
            content_type=content_type,
            part_size=self.part_size,
            max_size=max_size,
            concurrency=self.upload_concurrency,
        )

    def presigned_get_url(
        self, key: str, *, expires_at: datetime, filename: str | None = None, content_type: str | None = None
    ) -> str:
        """A pre-signed GetObject URL; a naive ``expires_at`` is taken as UTC."""
        if self.presigner is not None:
            # One clock read per link, in whole microseconds (as datetime.now reads it):
            # the expiry and the signing second come from the same moment, no datetime.
            now_us = time.time_ns() // 1000
            expires_in = min(
                max(-((now_us - self._expiry_us(expires_at)) // 1_000_000), 1), MAX_PRESIGN_SECONDS
            )
            response = _response_query(filename or "", content_type or "")
            return self.presigner.link(self.full_key(key), expires_in, response, now_us // 1_000_000)
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        seconds = math.ceil((expires_at - datetime.now(UTC)).total_seconds())
        expires_in = min(max(seconds, 1), MAX_PRESIGN_SECONDS)
        params: dict[str, str] = {"Bucket": self.bucket, "Key": self.full_key(key)}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        if content_type:
            params["ResponseContentType"] = content_type
        with _translate(f"signing of a link to {key!r}"):
            return self.presign_client.generate_presigned_url(
                "get_object",
                Params=params,
                ExpiresIn=expires_in,
            )

    def _expiry_us(self, expires_at: datetime) -> int:
        # An export signs every link with one expiry: converted once (a one-entry cache).
        cached = self._last_expiry
        if cached is not None and cached[0] is expires_at:
            return cached[1]
        aware = expires_at.replace(tzinfo=UTC) if expires_at.tzinfo is None else expires_at
        micros = (aware - _EPOCH) // _MICROSECOND
        self._last_expiry = (expires_at, micros)
        return micros

    def open_read(self, key: str) -> Iterator[bytes]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key))
        except _client_errors() as exc:
            if _response_code(exc) in _MISSING_CODES:
                raise StorageError(f"no object at {key!r}") from exc
            raise StorageError(f"S3 read of {key!r} failed: {_error_code(exc)}") from exc
        body = response["Body"]
        try:
            with _translate(f"read of {key!r}"):
                yield from body.iter_chunks(_READ_CHUNK)
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except _client_errors() as exc:
            if _response_code(exc) in _MISSING_CODES:
                return False
            raise StorageError(f"S3 lookup of {key!r} failed: {_error_code(exc)}") from exc
        return True

    def delete(self, key: str) -> None:
        with _translate(f"deletion of {key!r}"):
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key))

    def list_keys(self, prefix: str) -> Iterator[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        with _translate(f"listing under {prefix!r}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full_prefix(prefix)):
                for item in page.get("Contents", []):
                    name = item.get("Key")
                    if name is not None:
                        yield name[strip:]

    def delete_prefix(self, prefix: str, *, keep: str | None = None) -> int:
        full_prefix = self._full_prefix(prefix)
        kept = self.full_key(keep) if keep else None
        removed = 0
        batch: list[ObjectIdentifierTypeDef] = []
        with _translate(f"deletion under {prefix!r}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    name = item.get("Key")
                    if name is None or name == kept:
                        continue
                    batch.append({"Key": name})
                    if len(batch) == _DELETE_BATCH:
                        removed += self._delete_batch(batch)
                        batch = []
            if batch:
                removed += self._delete_batch(batch)
        return removed

    def _delete_batch(self, batch: list[ObjectIdentifierTypeDef]) -> int:
        response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise StorageError(
                f"S3 could not delete {len(errors)} object(s), e.g. {first.get('Key')!r}: {first.get('Code')}"
            )
        return len(batch)
