"""A small S3 client of our own: the operations Examtrail's S3 store uses, on urllib3.

boto3 and botocore load S3's service model and endpoint rules: ~20 MB of every S3
worker's memory for a dozen plain HTTP requests (bench/notes.md, worker RSS). With
static credentials the store uses this client instead: requests signed with SigV4
(``storage/sigv4.py``), path-style addressing, the few XML answers parsed with
``xml.etree``, and retries like botocore's standard mode (4 attempts, exponential
backoff with full jitter, on connection errors, 5xx and throttling).

Methods take and return what boto3's client does for the same call (the subset the store
and its tests read), so the store runs on either client unchanged. Failures raise
:class:`S3ResponseError` (S3 answered with an error code) or :class:`S3TransportError`
(no usable answer); neither carries credentials.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

import urllib3
from urllib3.exceptions import HTTPError

from examtrail.storage.sigv4 import (
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
    S3Endpoint,
    S3RequestSigner,
    canonical_query,
    uri_encode_path,
)

MAX_ATTEMPTS = 4
MAX_BACKOFF_SECONDS = 20.0
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
# botocore's standard mode: transient and throttling error codes, retried like a 5xx.
_RETRY_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
    }
)
_XML = "application/xml"


class S3Error(Exception):
    """A failed S3 request of the light client."""

    code: str


class S3ResponseError(S3Error):
    """S3 answered with an error: ``code`` is its error code (the HTTP status for HEAD)."""

    def __init__(self, operation: str, status: int, code: str) -> None:
        super().__init__(f"{operation}: HTTP {status} {code}")
        self.operation = operation
        self.status = status
        self.code = code


class S3TransportError(S3Error):
    """No usable answer: connection refused or reset, timeout, malformed response."""

    def __init__(self, operation: str, cause: BaseException) -> None:
        super().__init__(f"{operation}: {type(cause).__name__}")
        self.operation = operation
        self.code = type(cause).__name__


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _parse(body: bytes) -> ElementTree.Element:
    # The configured endpoint answers; expat refuses external entities and (2.4.1+) entity
    # expansion bombs, so the stdlib parser is enough here.
    return ElementTree.fromstring(body)  # noqa: S314


def _child_text(element: ElementTree.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def _children(element: ElementTree.Element, name: str) -> Iterator[ElementTree.Element]:
    return (child for child in element if _local(child.tag) == name)


def _timestamp(value: str | None) -> datetime | None:
    # S3 answers ISO 8601 with milliseconds and "Z"; fromisoformat reads it (3.11+).
    return datetime.fromisoformat(value) if value else None


def _error_code(status: int, body: bytes) -> str:
    if body:
        try:
            code = _child_text(_parse(body), "Code")
        except ElementTree.ParseError:
            code = None
        if code:
            return code
    return str(status)


class StreamingBody:
    """A GetObject body read in chunks; closes (returns) its connection when done."""

    def __init__(self, response: urllib3.BaseHTTPResponse, operation: str) -> None:
        self._response = response
        self._operation = operation

    def iter_chunks(self, chunk_size: int) -> Iterator[bytes]:
        try:
            while chunk := self._response.read(chunk_size):
                yield chunk
        except HTTPError as exc:
            raise S3TransportError(self._operation, exc) from exc

    def read(self) -> bytes:
        return b"".join(self.iter_chunks(1 << 20))

    def close(self) -> None:
        # Closed first: a body left unread must not go back to the pool with its connection
        # (the next request would read the rest); a read to the end has released it already.
        self._response.close()
        self._response.release_conn()


class _Paginator:
    def __init__(self, client: LightS3Client) -> None:
        self._client = client

    def paginate(self, *, Bucket: str, Prefix: str = "") -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            page = self._client.list_objects_v2(Bucket=Bucket, Prefix=Prefix, ContinuationToken=token)
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return


class _Meta:
    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url


class LightS3Client:
    """S3 over one urllib3 connection pool; thread-safe (parts upload on several threads)."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        access_key: str,
        secret_key: str,
        *,
        session_token: str | None = None,
        max_pool_connections: int = 10,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.meta = _Meta(endpoint_url)
        self._endpoint = S3Endpoint(endpoint_url)
        self._signer = S3RequestSigner(region, access_key, secret_key, session_token)
        self._max_attempts = max(1, max_attempts)
        pool_options: dict[str, Any] = {
            "maxsize": max_pool_connections,
            "timeout": urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            "retries": False,
        }
        if self._endpoint.scheme == "https":
            # The CA bundle botocore would use: AWS_CA_BUNDLE, else the system's.
            bundle = os.environ.get("AWS_CA_BUNDLE")
            if bundle:
                pool_options["ca_certs"] = bundle
        self._pool = urllib3.PoolManager(**pool_options)

    def close(self) -> None:
        self._pool.clear()

    # -- transport -------------------------------------------------------------------

    def _request(
        self,
        operation: str,
        method: str,
        bucket: str,
        key: str | None = None,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | bytearray | memoryview = b"",
        headers: Mapping[str, str] | None = None,
        sign_body: bool = True,
        stream: bool = False,
        expect: tuple[int, ...] = (200,),
    ) -> urllib3.BaseHTTPResponse:
        path = f"{self._endpoint.prefix_path}/{uri_encode_path(bucket)}"
        if key is not None:
            path += "/" + uri_encode_path(key)
        query_string = canonical_query(dict(query)) if query else ""
        url = f"{self._endpoint.origin}{path}" + (f"?{query_string}" if query_string else "")
        send_headers = dict(headers or {})
        if body or method in ("PUT", "POST"):
            send_headers["Content-Length"] = str(len(body))
        if not body:
            payload_hash = EMPTY_SHA256
        elif sign_body:
            payload_hash = hashlib.sha256(body).hexdigest()
        else:
            payload_hash = UNSIGNED_PAYLOAD
        attempt = 0
        while True:
            attempt += 1
            # Signed per attempt: a retry after a long backoff needs a fresh date.
            signed = self._signer.sign(
                method, self._endpoint.host, path, query_string, send_headers, payload_hash
            )
            try:
                response = self._pool.urlopen(
                    method,
                    url,
                    body=body if body else None,
                    headers=signed,
                    retries=False,
                    redirect=False,
                    preload_content=not stream,
                )
            except HTTPError as exc:
                if attempt < self._max_attempts:
                    self._backoff(attempt)
                    continue
                raise S3TransportError(operation, exc) from exc
            if response.status in expect:
                return response
            try:
                # Preloaded answers hold their body in .data; a stream is read now.
                error_body = response.read() if stream else response.data
            except HTTPError:
                error_body = b""
            finally:
                response.release_conn()
            code = _error_code(response.status, error_body)
            if attempt < self._max_attempts and (response.status in _RETRY_STATUSES or code in _RETRY_CODES):
                self._backoff(attempt)
                continue
            raise S3ResponseError(operation, response.status, code)

    @staticmethod
    def _backoff(attempt: int) -> None:
        # botocore's standard mode: full jitter over 2^(attempt-1) s, at most 20 s.
        time.sleep(random.random() * min(MAX_BACKOFF_SECONDS, 2 ** (attempt - 1)))

    def _xml(self, operation: str, *args: Any, **kwargs: Any) -> ElementTree.Element:
        response = self._request(operation, *args, **kwargs)
        try:
            return _parse(response.data)
        except ElementTree.ParseError as exc:
            raise S3TransportError(operation, exc) from exc

    # -- buckets ---------------------------------------------------------------------

    def head_bucket(self, *, Bucket: str) -> dict[str, Any]:
        self._request("HeadBucket", "HEAD", Bucket)
        return {}

    def create_bucket(
        self,
        *,
        Bucket: str,
        CreateBucketConfiguration: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body = b""
        region = (CreateBucketConfiguration or {}).get("LocationConstraint")
        if region:
            body = (
                '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<LocationConstraint>{escape(region)}</LocationConstraint></CreateBucketConfiguration>"
            ).encode()
        self._request("CreateBucket", "PUT", Bucket, body=body)
        return {}

    # -- objects ---------------------------------------------------------------------

    def put_object(
        self,
        *,
        Bucket: str,
        Key: str,
        Body: bytes | bytearray | memoryview,
        ContentType: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Content-Type": ContentType} if ContentType else {}
        response = self._request("PutObject", "PUT", Bucket, Key, body=Body, headers=headers, sign_body=False)
        return {"ETag": response.headers.get("ETag", "")}

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        headers = self._request("HeadObject", "HEAD", Bucket, Key).headers
        return {
            "ContentLength": int(headers.get("Content-Length", "0")),
            "ContentType": headers.get("Content-Type", ""),
            "ETag": headers.get("ETag", ""),
        }

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        response = self._request("GetObject", "GET", Bucket, Key, stream=True)
        return {
            "Body": StreamingBody(response, "GetObject"),
            "ContentLength": int(response.headers.get("Content-Length", "0")),
            "ContentType": response.headers.get("Content-Type", ""),
        }

    def delete_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        self._request("DeleteObject", "DELETE", Bucket, Key, expect=(200, 204))
        return {}

    def delete_objects(self, *, Bucket: str, Delete: Mapping[str, Any]) -> dict[str, Any]:
        items = "".join(f"<Object><Key>{escape(item['Key'])}</Key></Object>" for item in Delete["Objects"])
        quiet = "<Quiet>true</Quiet>" if Delete.get("Quiet") else ""
        body = f'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{quiet}{items}</Delete>'.encode()
        # S3 requires an integrity header on DeleteObjects; Content-MD5 is the one all accept.
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        root = self._xml(
            "DeleteObjects",
            "POST",
            Bucket,
            query={"delete": ""},
            body=body,
            headers={"Content-Type": _XML, "Content-MD5": md5},
        )
        errors = [
            {"Key": _child_text(error, "Key"), "Code": _child_text(error, "Code")}
            for error in _children(root, "Error")
        ]
        return {"Errors": errors} if errors else {}

    def list_objects_v2(
        self,
        *,
        Bucket: str,
        Prefix: str = "",
        ContinuationToken: str | None = None,
    ) -> dict[str, Any]:
        query = {"list-type": "2", "prefix": Prefix}
        if ContinuationToken:
            query["continuation-token"] = ContinuationToken
        root = self._xml("ListObjectsV2", "GET", Bucket, query=query)
        contents = [
            {
                "Key": _child_text(item, "Key"),
                "Size": int(_child_text(item, "Size") or 0),
                "LastModified": _timestamp(_child_text(item, "LastModified")),
            }
            for item in _children(root, "Contents")
        ]
        page: dict[str, Any] = {"IsTruncated": _child_text(root, "IsTruncated") == "true"}
        if contents:
            page["Contents"] = contents
        token = _child_text(root, "NextContinuationToken")
        if token:
            page["NextContinuationToken"] = token
        return page

    def get_paginator(self, operation: str) -> _Paginator:
        if operation != "list_objects_v2":
            raise ValueError(f"no paginator for {operation}")
        return _Paginator(self)

    # -- multipart uploads -----------------------------------------------------------

    def create_multipart_upload(
        self,
        *,
        Bucket: str,
        Key: str,
        ContentType: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Content-Type": ContentType} if ContentType else {}
        root = self._xml("CreateMultipartUpload", "POST", Bucket, Key, query={"uploads": ""}, headers=headers)
        upload_id = _child_text(root, "UploadId")
        if not upload_id:
            raise S3TransportError("CreateMultipartUpload", ValueError("no UploadId"))
        return {"UploadId": upload_id}

    def upload_part(
        self,
        *,
        Bucket: str,
        Key: str,
        UploadId: str,
        PartNumber: int,
        Body: bytes | bytearray | memoryview,
        ContentType: str | None = None,
    ) -> dict[str, Any]:
        """``ContentType`` (not in boto3's UploadPart): the object's type, sent with the part.
        UploadPart's API defines no type (the object's comes from CreateMultipartUpload) and
        the header is not signed; SeaweedFS otherwise sniffs an untyped part, gzips one that
        looks like text before storing it and unzips it again to hash it (bench/notes.md)."""
        response = self._request(
            "UploadPart",
            "PUT",
            Bucket,
            Key,
            query={"partNumber": str(PartNumber), "uploadId": UploadId},
            body=Body,
            headers={"Content-Type": ContentType} if ContentType else None,
            sign_body=False,
        )
        etag = response.headers.get("ETag")
        if not etag:
            raise S3TransportError("UploadPart", ValueError("no ETag"))
        return {"ETag": etag}

    def complete_multipart_upload(
        self,
        *,
        Bucket: str,
        Key: str,
        UploadId: str,
        MultipartUpload: Mapping[str, Any],
    ) -> dict[str, Any]:
        parts = "".join(
            f"<Part><PartNumber>{part['PartNumber']}</PartNumber><ETag>{escape(part['ETag'])}</ETag></Part>"
            for part in MultipartUpload["Parts"]
        )
        body = (
            '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"{parts}</CompleteMultipartUpload>"
        ).encode()
        root = self._xml(
            "CompleteMultipartUpload",
            "POST",
            Bucket,
            Key,
            query={"uploadId": UploadId},
            body=body,
            headers={"Content-Type": _XML},
        )
        # S3 may answer 200 and report the failure in the body (it fails after the headers).
        if _local(root.tag) == "Error":
            raise S3ResponseError(
                "CompleteMultipartUpload", 200, _child_text(root, "Code") or "InternalError"
            )
        return {"ETag": _child_text(root, "ETag") or ""}

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:
        self._request(
            "AbortMultipartUpload", "DELETE", Bucket, Key, query={"uploadId": UploadId}, expect=(200, 204)
        )
        return {}

    def list_multipart_uploads(
        self, *, Bucket: str, Prefix: str = "", KeyMarker: str = "", UploadIdMarker: str = ""
    ) -> dict[str, Any]:
        query = {"uploads": "", "prefix": Prefix}
        if KeyMarker:
            query["key-marker"] = KeyMarker
        if UploadIdMarker:
            query["upload-id-marker"] = UploadIdMarker
        root = self._xml("ListMultipartUploads", "GET", Bucket, query=query)
        uploads = [
            {
                "Key": _child_text(item, "Key"),
                "UploadId": _child_text(item, "UploadId"),
                "Initiated": _timestamp(_child_text(item, "Initiated")),
            }
            for item in _children(root, "Upload")
        ]
        page: dict[str, Any] = {"IsTruncated": _child_text(root, "IsTruncated") == "true"}
        if uploads:
            page["Uploads"] = uploads
        for field in ("NextKeyMarker", "NextUploadIdMarker"):
            if value := _child_text(root, field):
                page[field] = value
        return page

    def list_parts(
        self, *, Bucket: str, Key: str, UploadId: str, PartNumberMarker: int = 0
    ) -> dict[str, Any]:
        query = {"uploadId": UploadId}
        if PartNumberMarker:
            query["part-number-marker"] = str(PartNumberMarker)
        root = self._xml("ListParts", "GET", Bucket, Key, query=query)
        parts = [
            {
                "PartNumber": int(_child_text(item, "PartNumber") or 0),
                "LastModified": _timestamp(_child_text(item, "LastModified")),
                "Size": int(_child_text(item, "Size") or 0),
            }
            for item in _children(root, "Part")
        ]
        page: dict[str, Any] = {"IsTruncated": _child_text(root, "IsTruncated") == "true"}
        if parts:
            page["Parts"] = parts
        if marker := _child_text(root, "NextPartNumberMarker"):
            page["NextPartNumberMarker"] = int(marker)
        return page
