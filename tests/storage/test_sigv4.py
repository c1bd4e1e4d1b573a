"""The local SigV4 pre-signer produces exactly botocore's URLs, and S3 accepts them."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config

from examtrail.storage import sigv4
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
