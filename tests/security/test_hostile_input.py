"""Hostile input answers 4xx alike on SQLite and PostgreSQL, never 500 (findings 3, 4, 6)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from examtrail.core.timeutil import format_ms, to_epoch_ms
from examtrail.exports import service as export_service
from examtrail.ingest import repository
from examtrail.ingest import service as ingest_service
from examtrail.runtime import Runtime
from examtrail.storage.local import LocalObjectStore
from tests.support.api import bearer, create_client, get_token, seed_test

EVENTS = "/v1/test/42/candidates/100/events"


def _event(**changes: Any) -> dict[str, Any]:
    return {"event": "network_lost", "timeStamp": "2026-06-01T09:00:00Z", **changes}


CONTROL = ["a\u0000b", "a\u0001b", "a\u001bb", "a\u007fb", "\u0000"]


@pytest.mark.parametrize("text", CONTROL)
def test_control_characters_in_stored_strings_are_422(
    http: TestClient, headers: dict[str, str], text: str
) -> None:
    seed_test(http, headers, candidates=1, events_per_candidate=0)
    bodies: list[tuple[str, str, Any]] = [
        ("PUT", "/v1/test/42", {"title": text}),
        ("PUT", "/v1/test/42/candidates", [{"userId": 1, "candidateId": text}]),
        ("POST", EVENTS, _event(event=text)),
        ("POST", EVENTS, _event(extraInfo={"type": text, "value": "v"})),
        ("POST", EVENTS, _event(extraInfo={"type": "t", "value": text})),
        ("POST", EVENTS, _event(flaggingInfo={"flagType": text})),
        ("POST", EVENTS, _event(flaggingInfo={"flagType": "f", "comment": text})),
        ("POST", EVENTS, _event(flaggingInfo={"flagType": "f", "flagSubTypes": [text]})),
        ("POST", EVENTS, _event(flaggingInfo={"flagType": "f", "severityLevel": text})),
        ("POST", EVENTS, [_event(), _event(event=text)]),
    ]
    for method, path, body in bodies:
        response = http.request(method, path, json=body, headers=headers)
        assert response.status_code == 422, (path, body, response.status_code, response.text)
        assert response.json()["error"] == "validation_error"
    assert http.get("/v1/test/42", headers=headers).json()["title"] == "Test 42"


@pytest.mark.parametrize("text", CONTROL)
def test_control_characters_in_ids_and_searches_are_422(
    http: TestClient, headers: dict[str, str], runtime: Runtime, text: str
) -> None:
    # No stored id or title holds one, and PostgreSQL cannot even compare a text with NUL: these
    # were 500s there (the status call's fast path and regular route alike), 404s on SQLite.
    seed_test(http, headers, candidates=1, events_per_candidate=0)
    eraser = bearer(get_token(http, *create_client(runtime, "uni-a", "erase")))
    bad = quote(text, safe="")
    calls = [
        ("GET", f"/v1/test/42/events?jobId={bad}", headers),
        ("GET", f"/v1/test/42/events/{bad}", headers),
        ("DELETE", f"/v1/test/42/events?jobId={bad}", headers),
        ("DELETE", f"/v1/test/42/events/{bad}", headers),
        ("GET", f"/v1/tests?q={bad}", headers),
        ("GET", f"/v1/subscription/{bad}", headers),
        ("DELETE", f"/v1/subscription/{bad}", headers),
        ("GET", f"/v1/subscription/{bad}/deliveries", headers),
        ("POST", f"/v1/subscription/{bad}/deliveries/{bad}/redeliver", headers),
        ("GET", f"/v1/erasures/{bad}", eraser),
        ("GET", f"/ui/fragments/tests?q={bad}", headers),
        ("GET", f"/ui/fragments/tests/42?event={bad}", headers),
        ("GET", f"/ui/fragments/tests/42?candidate={bad}", headers),
        ("GET", f"/ui/fragments/tests/42/candidates/100?event={bad}", headers),
    ]
    for method, path, sent in calls:
        response = http.request(method, path, headers=sent)
        assert response.status_code == 422, (method, path, response.status_code, response.text)
        assert response.json()["error"] == "validation_error"


def test_digits_that_are_not_ascii_are_text_not_a_500(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    # str.isdigit() takes "³" (and "①"), which int() refuses: searches and cursors were 500s.
    seed_test(http, headers, candidates=1, events_per_candidate=0)
    auditor = bearer(get_token(http, *create_client(runtime, "uni-a", "audit")))
    for digits in ("\u00b3", "\u2460", "1\u00b3"):
        listed = http.get(f"/v1/tests?q={quote(digits)}", headers=headers)
        assert listed.status_code == 200, listed.text
        assert listed.json()["tests"] == []
        page = http.get(f"/ui/fragments/tests/42?candidate={quote(digits)}", headers=headers)
        assert page.status_code == 200, page.text
        cursor = base64.urlsafe_b64encode(f"a1:{digits}".encode()).decode().rstrip("=")
        audit = http.get(f"/v1/audit?cursor={cursor}", headers=auditor)
        assert audit.status_code == 422, audit.text
        assert audit.json()["details"][0]["field"] == "cursor"
    with runtime.sessions() as session:
        assert export_service.job_of_key(session, "exports/\u00b3/job/file.json") is None
        assert ingest_service.attachment_of_key(session, "attachments/\u00b3/42/\u00b3/f") is None


def test_a_client_id_with_nul_is_an_unknown_client(http: TestClient, runtime: Runtime) -> None:
    client_id, key = create_client(runtime, "uni-a")
    for sent in ("\u0000", client_id + "\u0000"):
        oauth = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": sent, "client_secret": key},
        )
        inspera = http.post(
            f"/api/authenticate/token/?grant_type=authorization_code&client_id={quote(sent)}",
            headers={"code": key},
        )
        for response in (oauth, inspera):
            assert response.status_code == 401, response.text
            assert response.json()["error"] == "invalid_grant"


def test_free_text_keeps_tabs_and_line_breaks(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, candidates=1, events_per_candidate=0)
    # A title is one line: no tab there.
    assert http.put("/v1/test/42", json={"title": "a\tb"}, headers=headers).status_code == 422
    comment = {"flagType": "f", "comment": "line 1\r\nline 2\tend"}
    assert http.post(EVENTS, json=_event(flaggingInfo=comment), headers=headers).status_code == 201


@pytest.mark.parametrize(
    "stamp",
    [
        "9999-12-31T23:59:59-00:01",
        "0001-01-01T00:00:00+23:59",
        "0999-06-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:30:00+01:00",
        "3000-01-01T00:00:00Z",
        "2999-12-31T23:00:00-01:00",
    ],
)
def test_timestamps_outside_1970_2999_utc_are_422_with_index_and_field(
    http: TestClient, headers: dict[str, str], stamp: str
) -> None:
    seed_test(http, headers, candidates=1, events_per_candidate=0)
    batch = [_event(eventId=f"ok-{n}") for n in range(9_999)]
    batch.insert(1234, _event(eventId="bad", timeStamp=stamp))
    response = http.post(EVENTS, json=batch, headers=headers)
    assert response.status_code == 422, response.text
    details = response.json()["details"]
    assert [(d["index"], d["field"]) for d in details] == [(1234, "timeStamp")], details
    single = http.post(EVENTS, json=_event(timeStamp=stamp), headers=headers)
    assert single.status_code == 422
    assert single.json()["details"][0]["field"] == "timeStamp"


@pytest.mark.parametrize(
    ("stamp", "exported"),
    [
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
        ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00.000Z"),
        ("2999-12-31T23:59:59.999Z", "2999-12-31T23:59:59.999Z"),
        ("3000-01-01T00:59:00+01:00", "2999-12-31T23:59:00.000Z"),
    ],
)
def test_the_edges_of_the_range_are_accepted(
    http: TestClient, headers: dict[str, str], stamp: str, exported: str
) -> None:
    seed_test(http, headers, candidates=1, events_per_candidate=0)
    response = http.post(EVENTS, json=_event(eventId="edge", timeStamp=stamp), headers=headers)
    assert response.status_code == 201, response.text


def test_years_are_always_formatted_with_four_digits() -> None:
    from datetime import UTC, datetime

    assert format_ms(to_epoch_ms(datetime(999, 6, 1, tzinfo=UTC))) == "0999-06-01T00:00:00.000Z"
    assert format_ms(to_epoch_ms(datetime(1, 1, 1, tzinfo=UTC))) == "0001-01-01T00:00:00.000Z"
    assert format_ms(0) == "1970-01-01T00:00:00.000Z"


def _with_event(http: TestClient, headers: dict[str, str]) -> str:
    seed_test(http, headers, candidates=1, events_per_candidate=1)
    return "/v1/test/42/candidates/100/events/e-100-0/files/"


@pytest.mark.parametrize("content_type", ["a/" + "b" * 298, "text/plain; x=\u00e9", "text/\u0001plain"])
def test_bad_upload_content_types_are_422(
    http: TestClient, headers: dict[str, str], content_type: str
) -> None:
    base = _with_event(http, headers)
    response = http.put(
        base + "f.txt", content=b"hello", headers={**headers, "content-type": content_type.encode("utf-8")}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_content_type"
    ok = http.put(base + "f.txt", content=b"hello", headers={**headers, "content-type": "text/plain"})
    assert ok.status_code == 201 and ok.json()["contentType"] == "text/plain"


def test_racing_first_uploads_of_one_file_name_get_sequential_answers(
    http: TestClient, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loser of two concurrent first uploads (it read "no such file" before the winner
    committed) gets the answer of a sequential second upload (200 for the same bytes, 409
    for others: evidence is immutable), not a unique-constraint 500."""
    base = _with_event(http, headers)
    first = http.put(base + "race.bin", content=b"one", headers=headers)
    assert first.status_code == 201
    real = repository.get_attachment

    def stale_first_read() -> Any:
        calls = {"n": 0}

        def stale_read(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            # The upload's first read predates the winner's commit.
            return None if calls["n"] <= 1 else real(*args, **kwargs)

        return stale_read

    monkeypatch.setattr(repository, "get_attachment", stale_first_read())
    other = http.put(base + "race.bin", content=b"two!", headers=headers)
    assert other.status_code == 409, other.text
    assert other.json()["error"] == "file_exists"
    monkeypatch.setattr(repository, "get_attachment", stale_first_read())
    same = http.put(base + "race.bin", content=b"one", headers=headers)
    assert same.status_code == 200, same.text
    assert same.json()["contentItemId"] == first.json()["contentItemId"]


# Every int id in a path or a query string, with the answer its plain form gets. Erasures name
# test 9, which does not exist (404), so that the calls after them still find test 42.
ID_CALLS: list[tuple[str, str, int]] = [
    ("PUT", "/v1/test/{t}", 200),
    ("GET", "/v1/test/{t}", 200),
    ("PUT", "/v1/test/{t}/candidates", 200),
    ("POST", "/v1/test/{t}/candidates/{u}/events", 201),
    ("PUT", "/v1/test/{t}/candidates/{u}/events/e-100-0/files/a.txt", 201),
    ("POST", "/v1/test/{t}/events", 202),
    ("GET", "/v1/test/{t}/events", 200),
    ("GET", "/v1/test/{t}/events/jobs", 200),
    ("GET", "/v1/test/{t}/events?jobId=none", 404),
    ("GET", "/v1/test/{t}/events/none", 404),
    ("DELETE", "/v1/test/{t}/events?jobId=none", 404),
    ("DELETE", "/v1/test/{t}/events/none", 404),
    ("GET", "/v1/test/{t}/hold", 200),
    ("PUT", "/v1/test/{t}/hold", 200),
    ("DELETE", "/v1/test/{t}/hold", 200),
    ("DELETE", "/v1/test/{t}/candidates/{u}", 404),
    ("DELETE", "/v1/test/{t}", 404),
    ("GET", "/v1/tests?after={t}", 200),
    ("GET", "/v1/audit?testId={t}", 200),
    ("POST", "/v1/test/42/events?userId={u}", 202),
    ("GET", "/ui/tests/{t}", 200),
    ("GET", "/ui/tests/{t}/candidates/{u}", 200),
    ("GET", "/ui/fragments/tests?after={t}", 200),
    ("GET", "/ui/fragments/tests/{t}", 200),
    ("GET", "/ui/fragments/tests/{t}/candidates/{u}", 200),
]
LOOSE_IDS = ["{}.0", "%2B{}", "{}_0", "%20{}", "{}%20", "0x{}", "{}e0", "%C2%B3"]


def _body(path: str) -> dict[str, Any]:
    if path.endswith("/candidates"):
        return {"json": [{"userId": 100, "candidateId": "cand-0"}]}
    if path.endswith("/events") and "/candidates/" in path:
        return {"json": _event()}
    if "/files/" in path:
        return {"content": b"evidence", "headers": {"content-type": "text/plain"}}
    if path.startswith("/v1/test/{t}") and path.count("/") == 3:
        return {"json": {"title": "Test 42"}}
    return {}


@pytest.fixture
def every(http: TestClient, headers: dict[str, str], runtime: Runtime) -> dict[str, str]:
    """Test 42 (candidate 100, one event) and the headers of a client with every scope."""
    seed_test(http, headers, candidates=1, events_per_candidate=1)
    return bearer(get_token(http, *create_client(runtime, "uni-a", "ingest,export,erase,audit")))


def test_int_ids_are_ascii_digits_everywhere(http: TestClient, every: dict[str, str]) -> None:
    # Pydantic's lax mode read "42.0", "+42", "4_2" and " 42" as 42 (and the fast paths of the
    # status and event calls hand them to these same routes): the OpenAPI document says integer.
    for method, path, plain_status in ID_CALLS:
        body = _body(path)
        sent = {**every, **body.pop("headers", {})}
        erasure = method == "DELETE" and path in ("/v1/test/{t}", "/v1/test/{t}/candidates/{u}")
        ids = {"testId": "9" if erasure else "42", "userId": "100"}
        for name, value in ids.items():
            key = "{t}" if name == "testId" else "{u}"
            if key not in path:
                continue
            field = "after" if "after=" in path else name
            for loose in LOOSE_IDS:
                url = path.replace(key, loose.format(value)).format(t=ids["testId"], u=ids["userId"])
                response = http.request(method, url, headers=sent, **body)
                assert response.status_code == 422, (method, url, response.status_code, response.text)
                assert response.json()["error"] == "validation_error", response.text
                assert response.json()["details"][0]["field"].split(".")[0] == field, response.text
        url = path.format(t=ids["testId"], u=ids["userId"])
        response = http.request(method, url, headers=sent, **body)
        assert response.status_code == plain_status, (method, url, response.text)


# Every other integer in a query: page sizes, the review page's offset, a link's expiry.
INT_QUERY_CALLS: list[tuple[str, str, int]] = [
    ("/v1/tests?limit={n}", "limit", 200),
    ("/v1/test/42/events/jobs?limit={n}", "limit", 200),
    ("/v1/audit?limit={n}", "limit", 200),
    ("/v1/subscription/none/deliveries?limit={n}", "limit", 404),
    ("/ui/fragments/tests/42?offset={n}", "offset", 200),
    ("/files/none?expires={n}&sig=x", "expires", 403),  # 404 on S3: the store serves its own links
]


def test_int_query_parameters_are_ascii_digits_everywhere(
    http: TestClient, every: dict[str, str], runtime: Runtime
) -> None:
    for path, field, plain_status in INT_QUERY_CALLS:
        for loose in LOOSE_IDS:
            url = path.format(n=loose.format("5"))
            response = http.get(url, headers=every)
            assert response.status_code == 422, (url, response.status_code, response.text)
            assert response.json()["details"][0]["field"] == field, response.text
        response = http.get(path.format(n="5"), headers=every)
        if path.startswith("/files/") and not isinstance(runtime.store, LocalObjectStore):
            plain_status = 404
        assert response.status_code == plain_status, (path, response.text)


def test_a_content_length_of_unicode_digits_is_not_a_500(http: TestClient, headers: dict[str, str]) -> None:
    # "³" (latin-1 0xB3) passes str.isdigit(), then int() refused it. uvicorn refuses such a
    # header itself; another ASGI server may hand it on (httpx's ASGI transport does, raw).
    seed_test(http, headers, candidates=1, events_per_candidate=1)
    sent = {name.encode(): value.encode() for name, value in headers.items()} | {b"content-length": b"\xb3"}

    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(getattr(http, "app"))  # noqa: B009 (TestClient's app is untyped)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            event = orjson.dumps(_event())
            json_type, text_type = {b"content-type": b"application/json"}, {b"content-type": b"text/plain"}
            return [
                await client.post(EVENTS, content=event, headers=sent | json_type),
                await client.put(f"{EVENTS}/e-100-0/files/a.txt", content=b"abc", headers=sent | text_type),
            ]

    for response in asyncio.run(send()):
        assert response.status_code == 201, response.text
