"""The light S3 client (``storage/s3http.py``): its SigV4 header signatures are botocore's
byte for byte, the store picks it with static credentials, and it retries, parses errors and
reports failures like botocore's standard mode (against a scripted local HTTP server; the
contract suite runs it against a signature-checking SeaweedFS)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from examtrail.core.settings import Settings
from examtrail.storage import s3http
from examtrail.storage.base import StorageError
from examtrail.storage.s3 import S3ObjectStore
from examtrail.storage.s3http import LightS3Client, S3ResponseError, S3TransportError
from examtrail.storage.sigv4 import UNSIGNED_PAYLOAD, S3RequestSigner, canonical_query, uri_encode_path

ACCESS, SECRET = "AKIDEXAMPLE", "wJalr/XUtnFEMI+K7MDENG"


def _botocore_authorization(
    method: str, url: str, body: bytes, headers: dict[str, str], token: str | None, unsigned: bool
) -> tuple[str, str]:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    if unsigned:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(Credentials(ACCESS, SECRET, token), "s3", "eu-west-1").add_auth(request)
    return str(request.headers["Authorization"]), str(request.headers["X-Amz-Date"])


@pytest.mark.parametrize("token", [None, "session/token+=="])
@pytest.mark.parametrize(
    ("method", "key", "query", "body", "headers", "unsigned"),
    [
        ("GET", None, {"list-type": "2", "prefix": "a b/ü&c=d"}, b"", {}, False),
        ("PUT", "exports/1/a b/ü-ñ+x=y&z.json", {}, b"data" * 100, {}, True),
        ("PUT", "k", {"partNumber": "3", "uploadId": "u/1+2=="}, b"part", {}, True),
        ("POST", "we!rd'(*)~key", {"uploads": ""}, b"", {}, False),
        ("POST", None, {"delete": ""}, b"<Delete/>", {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, False),
        ("HEAD", "plain/key.json", {}, b"", {}, False),
        ("DELETE", "k", {"uploadId": "abc"}, b"", {}, False),
    ],
)
@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8333", "https://s3.eu-west-1.amazonaws.com"])
def test_header_signature_is_botocores(
    endpoint: str,
    method: str,
    key: str | None,
    query: dict[str, str],
    body: bytes,
    headers: dict[str, str],
    unsigned: bool,
    token: str | None,
) -> None:
    path = "/my-bucket" + ("/" + uri_encode_path(key) if key is not None else "")
    query_string = canonical_query(query)
    url = endpoint + path + (f"?{query_string}" if query_string else "")
    theirs, amz_date = _botocore_authorization(method, url, body, dict(headers), token, unsigned)
    now = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    payload = UNSIGNED_PAYLOAD if unsigned else hashlib.sha256(body).hexdigest()
    host = endpoint.split("://", 1)[1]
    signer = S3RequestSigner("eu-west-1", ACCESS, SECRET, token)
    ours = signer.sign(method, host, path, query_string, dict(headers), payload, now=now)
    assert ours["Authorization"] == theirs
    assert ours["X-Amz-Date"] == amz_date
    if token:
        assert ours["X-Amz-Security-Token"] == token


# -- which client the store uses ----------------------------------------------------------


def _settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "_env_file": None,
        "storage": "s3",
        "s3_endpoint_url": "http://127.0.0.1:9",
        "s3_access_key_id": ACCESS,
        "s3_secret_access_key": SECRET,
    }
    return Settings(**{**base, **values})


def test_static_credentials_choose_the_light_client() -> None:
    store = S3ObjectStore.from_settings(_settings())
    assert isinstance(store.client, LightS3Client)
    assert store.presigner is not None
    public = S3ObjectStore.from_settings(_settings(s3_public_endpoint_url="https://files.example.org"))
    link = public.presigned_get_url("k", expires_at=datetime(2100, 1, 1, tzinfo=UTC))
    assert link.startswith("https://files.example.org/examtrail/k?")


def test_boto3_on_request_or_without_static_credentials() -> None:
    assert not isinstance(S3ObjectStore.from_settings(_settings(s3_client="boto3")).client, LightS3Client)
    chain = _settings(s3_access_key_id=None, s3_secret_access_key=None)
    assert not isinstance(S3ObjectStore.from_settings(chain).client, LightS3Client)
    with pytest.raises(StorageError, match="static credentials"):
        S3ObjectStore.from_settings(_settings(s3_client="light", s3_secret_access_key=None))


def test_aws_default_endpoint_without_an_endpoint_url() -> None:
    store = S3ObjectStore.from_settings(_settings(s3_endpoint_url=None, s3_region="eu-north-1"))
    assert isinstance(store.client, LightS3Client)
    assert store.client.meta.endpoint_url == "https://s3.eu-north-1.amazonaws.com"


# -- retries and errors, against a scripted server -----------------------------------------


class _Script:
    """Answers (status, body, headers) in order; records each request's method and path."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes, dict[str, str]]] = []
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_Script, str]]:
    script = _Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.seen.append((self.command, self.path, dict(self.headers), body))
            status, payload, headers = script.answers.pop(0)
            self.send_response(status)
            for name, value in {"Content-Length": str(len(payload)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(s3http.LightS3Client, "_backoff", staticmethod(lambda attempt: None))
    try:
        yield script, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _error(code: str) -> bytes:
    return f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>m</Message></Error>".encode()


def test_retries_5xx_and_throttling_then_succeeds(scripted: tuple[_Script, str]) -> None:
    script, endpoint = scripted
    client = LightS3Client(endpoint, "us-east-1", ACCESS, SECRET)
    script.answers = [
        (503, _error("SlowDown"), {}),
        (400, _error("RequestTimeout"), {}),
        (500, b"", {}),
        (200, b"", {"ETag": '"e7"'}),
    ]
    assert client.upload_part(Bucket="b", Key="a b", UploadId="u", PartNumber=7, Body=b"xyz") == {
        "ETag": '"e7"'
    }
    assert len(script.seen) == 4
    method, path, headers, body = script.seen[-1]
    assert (method, path, body) == ("PUT", "/b/a%20b?partNumber=7&uploadId=u", b"xyz")
    assert headers["X-Amz-Content-SHA256"] == UNSIGNED_PAYLOAD
    assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS}/")


def test_upload_part_sends_the_content_type_it_is_given(scripted: tuple[_Script, str]) -> None:
    # SeaweedFS sniffs an untyped part, and gzips (then unzips to hash) one that looks like text.
    script, endpoint = scripted
    client = LightS3Client(endpoint, "us-east-1", ACCESS, SECRET)
    script.answers = [(200, b"", {"ETag": '"e1"'}), (200, b"", {"ETag": '"e2"'})]
    client.upload_part(
        Bucket="b", Key="k", UploadId="u", PartNumber=1, Body=b"{}", ContentType="application/json"
    )
    client.upload_part(Bucket="b", Key="k", UploadId="u", PartNumber=2, Body=b"{}")
    typed, untyped = (headers for _, _, headers, _ in script.seen)
    assert typed["Content-Type"] == "application/json"
    assert "Content-Type" not in untyped


def test_gives_up_after_four_attempts_and_reports_the_code(scripted: tuple[_Script, str]) -> None:
    script, endpoint = scripted
    client = LightS3Client(endpoint, "us-east-1", ACCESS, SECRET)
    script.answers = [(503, _error("SlowDown"), {})] * 4
    with pytest.raises(S3ResponseError) as raised:
        client.put_object(Bucket="b", Key="k", Body=b"x")
    assert (raised.value.status, raised.value.code, len(script.seen)) == (503, "SlowDown", 4)
    assert SECRET not in str(raised.value)


def test_client_errors_are_not_retried(scripted: tuple[_Script, str]) -> None:
    script, endpoint = scripted
    client = LightS3Client(endpoint, "us-east-1", ACCESS, SECRET)
    script.answers = [(403, _error("SignatureDoesNotMatch"), {}), (404, b"", {})]
    with pytest.raises(S3ResponseError, match="SignatureDoesNotMatch"):
        client.delete_object(Bucket="b", Key="k")
    with pytest.raises(S3ResponseError) as raised:
        client.head_object(Bucket="b", Key="k")
    assert raised.value.code == "404"  # HEAD has no body: the status, as botocore reports it
    assert len(script.seen) == 2


def test_a_completion_that_fails_after_200_is_an_error(scripted: tuple[_Script, str]) -> None:
    script, endpoint = scripted
    client = LightS3Client(endpoint, "us-east-1", ACCESS, SECRET)
    script.answers = [(200, _error("InternalError"), {})]
    with pytest.raises(S3ResponseError, match="InternalError"):
        client.complete_multipart_upload(
            Bucket="b", Key="k", UploadId="u", MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"e"'}]}
        )
    _, path, headers, body = script.seen[0]
    assert path == "/b/k?uploadId=u"
    assert b'<Part><PartNumber>1</PartNumber><ETag>"e"</ETag></Part>' in body
    assert headers["X-Amz-Content-SHA256"] != UNSIGNED_PAYLOAD  # small XML bodies are signed


def test_listing_pages_and_parses_answers(scripted: tuple[_Script, str]) -> None:
    script, endpoint = scripted
    client = LightS3Client(endpoint, "us-east-1", ACCESS, SECRET)
    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    first = (
        f"<ListBucketResult {ns}><IsTruncated>true</IsTruncated>"
        "<NextContinuationToken>t/1=</NextContinuationToken>"
        "<Contents><Key>p/a&amp;b</Key><Size>3</Size><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
        "</Contents></ListBucketResult>"
    ).encode()
    second = f"<ListBucketResult {ns}><IsTruncated>false</IsTruncated></ListBucketResult>".encode()
    script.answers = [(200, first, {}), (200, second, {})]
    pages = list(client.get_paginator("list_objects_v2").paginate(Bucket="b", Prefix="p/"))
    assert [item["Key"] for page in pages for item in page.get("Contents", [])] == ["p/a&b"]
    assert script.seen[0][1] == "/b?list-type=2&prefix=p%2F"
    assert script.seen[1][1] == "/b?continuation-token=t%2F1%3D&list-type=2&prefix=p%2F"


def test_connection_failures_raise_a_transport_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3http.LightS3Client, "_backoff", staticmethod(lambda attempt: None))
    client = LightS3Client("http://127.0.0.1:9", "us-east-1", ACCESS, SECRET, max_attempts=2)
    with pytest.raises(S3TransportError) as raised:
        client.head_bucket(Bucket="b")
    assert raised.value.code != ""
    assert SECRET not in str(raised.value)
