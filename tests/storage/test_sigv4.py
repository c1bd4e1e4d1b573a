"""The local SigV4 pre-signer produces exactly botocore's URLs, and S3 accepts them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import botocore.auth
import httpx
import pytest
from botocore.config import Config

from examtrail.storage import s3 as s3_module
from examtrail.storage import sigv4
from examtrail.storage.s3 import S3ObjectStore, content_disposition
from examtrail.storage.sigv4 import S3Presigner
from tests.support.seaweedfs import SeaweedS3

KEYS = ["exports/1/a b/ü-ñ+x=y&z.json", "plain/key.json", "we!rd'(*)~key"]
ENDPOINTS = ["http://127.0.0.1:8333", "https://s3.eu-west-1.amazonaws.com", "http://minio.local:9000/base"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("key", KEYS)
def test_same_url_as_botocore(endpoint: str, key: str) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalr/XUtnFEMI+K7MDENG",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    disposition = 'attachment; filename="t é.json"'
    theirs = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": "my-bucket",
            "Key": key,
            "ResponseContentDisposition": disposition,
            "ResponseContentType": "application/json",
        },
        ExpiresIn=3597,
    )
    query = dict(parse_qsl(urlsplit(theirs).query))
    now = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    presigner = S3Presigner(endpoint, "my-bucket", "eu-west-1", "AKIDEXAMPLE", "wJalr/XUtnFEMI+K7MDENG")
    ours = presigner.url(
        key,
        3597,
        response_params={
            "response-content-disposition": disposition,
            "response-content-type": "application/json",
        },
        now=now,
    )
    assert urlsplit(ours).path == urlsplit(theirs).path
    assert dict(parse_qsl(urlsplit(ours).query)) == query


def test_seaweedfs_accepts_local_signatures(seaweed: SeaweedS3) -> None:
    bucket = seaweed.create_bucket()
    try:
        seaweed.client().put_object(Bucket=bucket, Key="dir/file one.txt", Body=b"hello")
        presigner = S3Presigner(
            seaweed.endpoint_url, bucket, seaweed.region, seaweed.access_key, seaweed.secret_key
        )
        url = presigner.url("dir/file one.txt", 60)
        assert httpx.get(url).content == b"hello"
        assert httpx.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
        wrong = S3Presigner(
            seaweed.endpoint_url, bucket, seaweed.region, seaweed.access_key, "not-the-secret"
        )
        assert httpx.get(wrong.url("dir/file one.txt", 60)).status_code == 403
    finally:
        seaweed.delete_bucket(bucket)


@pytest.mark.parametrize("safe", ["-_.~", "/-_.~"])
def test_uri_encode_matches_quote_for_every_character(safe: str) -> None:
    # The ASCII fast path (str.translate) must escape exactly as urllib's quote does.
    samples = [chr(code) for code in range(128)] + ["file name (1).png", "a/b?c=d&e", "ünïcødé €", ""]
    samples.append("".join(chr(code) for code in range(128)))
    for value in samples:
        assert sigv4._uri_encode(value, safe) == quote(value, safe=safe)


def _frozen_clock(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    """Both signers read ``moment`` as the current time (ours: one ``time_ns`` read)."""
    micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    monkeypatch.setattr(s3_module, "time", SimpleNamespace(time_ns=lambda: micros * 1000))
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment.replace(tzinfo=None))


def test_store_links_same_as_botocore_across_the_per_second_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    # One store signs in sequence, so its per-second state, per-expiry conversion and
    # per-file-name query cache are reused and renewed: second rollovers, an expiry whose
    # whole seconds change within one clock second, another expiry, naive expiries,
    # non-ASCII and quoted file names, keys that need escaping and keys that do not.
    client = boto3.client(
        "s3",
        endpoint_url="http://minio.local:9000/base",
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalr/XUtnFEMI+K7MDENG",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    presigner = S3Presigner(
        "http://minio.local:9000/base", "my-bucket", "eu-west-1", "AKIDEXAMPLE", "wJalr/XUtnFEMI+K7MDENG"
    )
    store = S3ObjectStore(client, "my-bucket", prefix="t1", presigner=presigner)
    base = datetime(2026, 11, 27, 13, 59, 58, tzinfo=UTC)
    expiry = base + timedelta(hours=2, microseconds=500_000)
    other = base + timedelta(days=3)
    cases = [
        (base + timedelta(microseconds=200_000), expiry, "photo.jpg", "image/jpeg", "a/plain-key_1.jpg"),
        (base + timedelta(microseconds=700_000), expiry, "photo.jpg", "image/jpeg", "a/plain-key_1.jpg"),
        (base + timedelta(microseconds=999_999), expiry, "Übung ñ.pdf", None, "a/b c/ü+=&.pdf"),
        (base + timedelta(seconds=1), expiry, "Übung ñ.pdf", None, "a/b c/ü+=&.pdf"),
        (base + timedelta(seconds=1, microseconds=1), other, 'r "A"\n.csv', "text/csv", "x~y.csv"),
        (base + timedelta(seconds=1, microseconds=2), expiry, None, None, "we!rd'(*)key"),
        (base + timedelta(seconds=2), other.replace(tzinfo=None), "photo.jpg", "image/jpeg", "k"),
        (base + timedelta(days=1), expiry, "photo.jpg", "image/jpeg", "k"),
    ]
    for moment, expires_at, filename, content_type, key in cases:
        _frozen_clock(monkeypatch, moment)
        aware = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        params = {"Bucket": "my-bucket", "Key": f"t1/{key}"}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        if content_type:
            params["ResponseContentType"] = content_type
        expires_in = max(math.ceil((aware - moment).total_seconds()), 1)
        theirs = client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
        ours = store.presigned_get_url(
            key, expires_at=expires_at, filename=filename, content_type=content_type
        )
        assert urlsplit(ours).path == urlsplit(theirs).path
        assert dict(parse_qsl(urlsplit(ours).query)) == dict(parse_qsl(urlsplit(theirs).query))
        # The query as sent is SigV4's canonical one: sorted, and escaped as signed.
        query = urlsplit(ours).query.rsplit("&X-Amz-Signature=", 1)[0]
        assert query == sigv4.canonical_query(dict(parse_qsl(query)))
