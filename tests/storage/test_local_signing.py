"""The local store's link signer: the same URL as quote()/urlencode() build, verifiable."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode

import pytest

from examtrail.storage import signing

KEYS = ["attachments/1/0001-5f0c.bin", "a b/ü+=&?#.pdf", "we!rd'(*)~key", "/lead/slash", ""]
NAMES = ["", "photo.jpg", "answer sheet.pdf", "Übung ñ.docx", 'a"b&c=d+e%.x', "x/y z"]
TYPES = ["", "application/octet-stream", "text/plain; charset=utf-8"]


def _reference(
    base_url: str, key: bytes, object_key: str, expires: int, filename: str, content_type: str
) -> str:
    # The signer as first written: a query dict through urlencode, the key through quote.
    message = f"{object_key}\n{expires}\n{filename}" + (f"\n{content_type}" if content_type else "")
    query = {"expires": str(expires), "sig": hmac.new(key, message.encode(), hashlib.sha256).hexdigest()}
    if filename:
        query["filename"] = filename
    if content_type:
        query["type"] = content_type
    return f"{base_url.rstrip('/')}/files/{quote(object_key)}?{urlencode(query)}"


@pytest.mark.parametrize("object_key", KEYS)
def test_sign_builds_the_reference_url(object_key: str) -> None:
    # Twice each: the second call takes the cached query tail of the name and type.
    for _ in range(2):
        for filename in NAMES:
            for content_type in TYPES:
                for base in ("http://localhost:8000/", "https://x.example/base"):
                    args = (base, b"k" * 32, object_key, 4_102_444_800, filename, content_type)
                    assert signing.sign(*args) == _reference(*args)


def test_signed_link_verifies_and_a_changed_one_does_not() -> None:
    url = signing.sign("http://h", b"new", "a/b.bin", 99, "r.pdf", "application/pdf")
    signature = url.split("sig=")[1].split("&")[0]
    assert signing.verify([b"new", b"old"], "a/b.bin", 99, "r.pdf", signature, "application/pdf")
    assert not signing.verify([b"new"], "a/b.bin", 99, "r.pdf", signature, "text/plain")
    assert not signing.verify([b"old"], "a/b.bin", 99, "r.pdf", signature, "application/pdf")
