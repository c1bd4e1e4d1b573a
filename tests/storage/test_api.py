"""``GET /files/{key}``: the local store's signed links, with HTTP byte ranges (RFC 9110 §14)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from examtrail.runtime import Runtime
from examtrail.storage.local import LocalObjectStore

DATA = b"0123456789"
Link = Callable[..., str]


@pytest.fixture
def link(runtime: Runtime) -> Link:
    """Stores ``data`` under a key and returns the path (with query) of its signed link."""
    store = runtime.store
    if not isinstance(store, LocalObjectStore):
        pytest.skip("the app serves links of the local object store only")

    def make(data: bytes = DATA, key: str = "ranges/file.txt", content_type: str = "text/plain") -> str:
        writer = store.open_writer(key, content_type=content_type)
        writer.write(data)
        writer.commit()
        url = store.presigned_get_url(
            key,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
            filename="f.txt",
            content_type=content_type,
        )
        return httpx.URL(url).raw_path.decode()

    return make


def get(http: TestClient, path: str, range_: str | None = None, **headers: str) -> httpx.Response:
    if range_ is not None:
        headers["Range"] = range_
    response: httpx.Response = http.get(path, headers=headers)
    return response


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert body["message"]
    assert body["details"] == []


def test_no_range_serves_the_whole_file(http: TestClient, link: Link) -> None:
    response = get(http, link())
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-length"] == "10"
    assert response.headers["content-type"].startswith("text/plain")
    assert "content-range" not in response.headers


@pytest.mark.parametrize(
    ("header", "content_range", "body"),
    [
        ("bytes=0-3", "bytes 0-3/10", b"0123"),
        ("bytes=0-0", "bytes 0-0/10", b"0"),
        ("bytes=5-", "bytes 5-9/10", b"56789"),  # open
        ("bytes=-3", "bytes 7-9/10", b"789"),  # suffix
        ("bytes=-100", "bytes 0-9/10", DATA),  # a suffix longer than the file
        ("bytes=8-100", "bytes 8-9/10", b"89"),  # past the end: cut
        ("bytes=0-4,3-6", "bytes 0-6/10", b"0123456"),  # overlapping: merged
        ("bytes=0-1,100-200", "bytes 0-1/10", b"01"),  # Starlette alone answered 416
        (f"bytes=0-{'9' * 5000}", "bytes 0-9/10", DATA),  # int() refuses 5,000 digits
    ],
)
def test_single_range(http: TestClient, link: Link, header: str, content_range: str, body: bytes) -> None:
    response = get(http, link(), header)
    assert response.status_code == 206, response.text
    assert response.content == body
    assert response.headers["content-range"] == content_range
    assert response.headers["content-length"] == str(len(body))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"].startswith("text/plain")


def parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Range, bytes) of each part of a ``multipart/byteranges`` body."""
    boundary = re.fullmatch(r"multipart/byteranges; boundary=(\w+)", response.headers["content-type"])
    assert boundary is not None
    delimiter = b"--" + boundary.group(1).encode()
    chunks = response.content.split(delimiter)
    assert chunks[0] == b""
    assert chunks[-1] == b"--"
    found = []
    for chunk in chunks[1:-1]:
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        assert fields["Content-Type"].startswith("text/plain")
        found.append((fields["Content-Range"], data.removesuffix(b"\r\n")))
    return found


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-1,5-6", [("bytes 0-1/10", b"01"), ("bytes 5-6/10", b"56")]),
        ("bytes=5-6,0-1", [("bytes 5-6/10", b"56"), ("bytes 0-1/10", b"01")]),  # the order asked
        # The suffix overlaps the open range: merged, in file order.
        ("bytes=0-1,-2,4-", [("bytes 0-1/10", b"01"), ("bytes 4-9/10", b"456789")]),
    ],
)
def test_multiple_ranges(
    http: TestClient, link: Link, header: str, expected: list[tuple[str, bytes]]
) -> None:
    response = get(http, link(), header)
    assert response.status_code == 206, response.text
    assert response.headers["content-length"] == str(len(response.content))
    assert "content-range" not in response.headers
    assert parts(response) == expected


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (10, "bytes=10-"),
        (10, "bytes=10-20"),
        (10, "bytes=100-200,50-"),
        (10, "bytes=-0"),
        (0, "bytes=0-0"),
        (0, "bytes=0-"),
    ],
)
def test_unsatisfiable_range_is_a_json_416_with_the_size(
    http: TestClient, link: Link, size: int, header: str
) -> None:
    response = get(http, link(DATA[:size]), header)
    assert_error(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize(
    "header",
    [
        "bytes",
        "bytes=",
        "bytes=abc",
        "bytes=5-3",
        "bytes=+1-2",
        "bytes=1_0-20",
        "bytes=--5",
        "bytes=0-1,x",
        "0-5",
    ],
)
def test_malformed_range_is_a_json_400(http: TestClient, link: Link, header: str) -> None:
    response = get(http, link(), header)
    assert_error(response, 400, "invalid_range")
    assert "content-range" not in response.headers


def test_empty_file(http: TestClient, link: Link) -> None:
    path = link(b"")
    whole = get(http, path)
    assert (whole.status_code, whole.content, whole.headers["content-length"]) == (200, b"", "0")
    # A suffix range of an empty file is satisfiable, but no Content-Range can say so: all of it.
    suffix = get(http, path, "bytes=-5")
    assert (suffix.status_code, suffix.content, suffix.headers["content-length"]) == (200, b"", "0")
    assert "content-range" not in suffix.headers


@pytest.mark.parametrize("header", ["items=0-5", "bytes=" + ",".join(["0-0"] * 101)])
def test_unknown_unit_or_too_many_ranges_serve_the_whole_file(
    http: TestClient, link: Link, header: str
) -> None:
    response = get(http, link(), header)
    assert response.status_code == 200
    assert response.content == DATA


def test_if_range(http: TestClient, link: Link) -> None:
    path = link()
    etag = get(http, path).headers["etag"]
    assert get(http, path, "bytes=0-1", **{"If-Range": etag}).status_code == 206
    # A changed file: the whole of it, whatever the Range says (RFC 9110 §13.2.2).
    for header in ("bytes=0-1", "bytes=abc", "bytes=50-"):
        stale = get(http, path, header, **{"If-Range": '"stale"'})
        assert (stale.status_code, stale.content) == (200, DATA)


def test_head_answers_the_headers_of_the_range(http: TestClient, link: Link) -> None:
    path = link()
    response = http.head(path, headers={"Range": "bytes=2-4"})
    assert response.status_code == 206
    assert response.headers["content-range"] == "bytes 2-4/10"
    assert response.headers["content-length"] == "3"
    assert response.content == b""
    assert http.head(path, headers={"Range": "bytes=20-"}).status_code == 416


def test_document_lists_every_answer(http: TestClient) -> None:
    operation = http.get("/openapi.json").json()["paths"]["/files/{key}"]["get"]
    responses = operation["responses"]
    assert set(responses) == {"200", "206", "400", "403", "404", "416", "422", "503"}
    assert set(responses["200"]["headers"]) >= {"Accept-Ranges", "Content-Length"}
    assert set(responses["206"]["headers"]) >= {"Accept-Ranges", "Content-Length", "Content-Range"}
    assert set(responses["416"]["headers"]) == {"Content-Range"}
    assert "`invalid_range`" in responses["400"]["description"]
    assert "malformed_json" not in responses["400"]["description"]
    assert "`range_not_satisfiable`" in responses["416"]["description"]
    # A signed link carries no token: no scope to lack.
    assert "insufficient_scope" not in responses["403"]["description"]
    assert "headers" not in responses["403"]
    assert {p["name"] for p in operation["parameters"] if p["in"] == "header"} == {"Range", "If-Range"}


def test_the_download_hook_sees_only_what_is_served(
    http: TestClient, link: Link, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit's ``download.served`` entry comes from this hook: a refused range (400, 416)
    downloads nothing, so it records nothing; an ignored one (another unit, a stale If-Range)
    sends the whole file, recorded without a Range."""
    seen: list[tuple[str, int, str | None]] = []
    monkeypatch.setattr(getattr(http.app, "state"), "download_hook", lambda *call: seen.append(call))  # noqa: B009
    path = link()
    assert get(http, path, "bytes=2-4").status_code == 206
    assert get(http, path, "bytes=5-3").status_code == 400
    assert get(http, path, "bytes=50-").status_code == 416
    assert get(http, path, "items=0-5").status_code == 200
    assert get(http, path, "bytes=0-1", **{"If-Range": '"stale"'}).status_code == 200
    assert get(http, path).status_code == 200
    key = "ranges/file.txt"
    assert seen == [(key, 10, "bytes=2-4"), (key, 10, None), (key, 10, None), (key, 10, None)]


def test_a_link_whose_type_moved_into_its_file_name_is_refused(http: TestClient, link: Link) -> None:
    path = link(content_type="image/png")
    assert get(http, path).status_code == 200
    query = httpx.URL(path).params
    forged = httpx.URL(
        httpx.URL(path).path,
        params={"expires": query["expires"], "sig": query["sig"], "filename": "f.txt\nimage/png"},
    )
    assert_error(get(http, str(forged)), 403, "invalid_signature")
