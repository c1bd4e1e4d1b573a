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
    # The signer as first written: a query dict through urlencode, the key through quote; each
    # signed field after its length.
    message = f"v2:{len(object_key)}:{object_key}{expires}:{len(filename)}:{filename}"
    message += f"{len(content_type)}:{content_type}"
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


def _sig(url: str) -> str:
    return url.split("sig=")[1].split("&")[0]


def _first_form(key: bytes, object_key: str, expires: int, filename: str, content_type: str) -> str:
    """A signature as links were signed before the fields were length-prefixed."""
    message = f"{object_key}\n{expires}\n{filename}" + (f"\n{content_type}" if content_type else "")
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def test_the_type_cannot_be_moved_into_the_file_name() -> None:
    signature = _sig(signing.sign("http://h", b"k", "a/shot.bin", 99, "shot.png", "image/png"))
    assert signing.verify(b"k", "a/shot.bin", 99, "shot.png", signature, "image/png")
    assert not signing.verify(b"k", "a/shot.bin", 99, "shot.png\nimage/png", signature, "")
    assert not signing.verify(b"k", "a/shot.bin", 99, "shot.pngimage/png", signature, "")
    # Nor with a link of the first form, which signed both the same.
    first = _first_form(b"k", "a/shot.bin", 99, "shot.png", "image/png")
    assert first == _first_form(b"k", "a/shot.bin", 99, "shot.png\nimage/png", "")
    assert not signing.verify(b"k", "a/shot.bin", 99, "shot.png\nimage/png", first, "")


@pytest.mark.parametrize("filename", NAMES)
@pytest.mark.parametrize("content_type", TYPES)
def test_links_signed_before_the_upgrade_still_verify(filename: str, content_type: str) -> None:
    # Handed out before the upgrade, live for up to a token lifetime: no control characters, so
    # their fields are unambiguous.
    signature = _first_form(b"old", "a/b.bin", 99, filename, content_type)
    assert signing.verify([b"new", b"old"], "a/b.bin", 99, filename, signature, content_type)
    assert not signing.verify([b"new", b"old"], "a/b.bin", 98, filename, signature, content_type)


# C1 (U+0080-U+009F) is accepted by uploads; C0 and DEL are not, but v2 signs any character.
C1_AND_OTHER_CONTROLS = ["a\x85b.png", "a\x9fb.png", "\x80", "a\rb", "a\x00b", "a\x7fb", "\t"]


@pytest.mark.parametrize("odd", C1_AND_OTHER_CONTROLS)
@pytest.mark.parametrize("field", ["object_key", "filename", "content_type"])
def test_any_character_is_signed_and_verified(odd: str, field: str) -> None:
    args = {"object_key": "a/b.bin", "filename": "r.pdf", "content_type": "application/pdf", field: odd}
    key, name, kind = args["object_key"], args["filename"], args["content_type"]
    url = signing.sign("http://h", b"new", key, 99, name, kind)
    assert url == _reference("http://h", b"new", key, 99, name, kind)
    assert signing.verify([b"new", b"old"], key, 99, name, _sig(url), kind)
    assert not signing.verify([b"new"], key, 98, name, _sig(url), kind)
    assert not signing.verify([b"new"], key, 99, name + "x", _sig(url), kind)
    # Links of the first form hold no newline: still verified with any other character.
    first = _first_form(b"old", key, 99, name, kind)
    assert signing.verify([b"new", b"old"], key, 99, name, first, kind)


@pytest.mark.parametrize("field", ["object_key", "filename", "content_type"])
def test_the_first_form_is_refused_when_a_field_holds_its_separator(field: str) -> None:
    args = {"object_key": "a/b.bin", "filename": "r.pdf", "content_type": "application/pdf", field: "a\nb"}
    key, name, kind = args["object_key"], args["filename"], args["content_type"]
    assert not signing.verify(b"k", key, 99, name, _first_form(b"k", key, 99, name, kind), kind)
    # The same fields in v2: unambiguous, so signed and verified.
    assert signing.verify(
        b"k", key, 99, name, _sig(signing.sign("http://h", b"k", key, 99, name, kind)), kind
    )
