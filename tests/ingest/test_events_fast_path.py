"""``POST …/events`` answers its plain calls without FastAPI's dependency solving
(``core.fastpath``): the same answers, byte for byte, the same errors in the same order, the
same audit entries and the same idempotency as the route's regular handler (which any
dependency override selects)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from examtrail.audit.models import AuditEntry
from examtrail.deps import get_runtime_dep
from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client, get_token, seed_test

URL = "/v1/test/42/candidates/100/events"
JSON = {"content-type": "application/json"}
T = b'"timeStamp": "2026-06-01T10:00:00Z"'
VALIDATION, MEDIA = "validation_error", "unsupported_media_type"
OK = b'{"event": "x", %s}' % T
# Spellings of 42 and 100 that int() or pydantic's lax mode accept, in a URL path.
LOOSE_42 = ["42.0", "%2B42", "4_2", "%2042", "42%20", "%C2%B3", "%EF%BC%94%EF%BC%92"]
LOOSE_100 = ["100.0", "%2B100", "1_00", "%20100"]


@pytest.fixture
def seeded(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=42, candidates=2, events_per_candidate=0)


def _event(event_id: str, **extra: Any) -> dict[str, Any]:
    return {"eventId": event_id, "event": "network_lost", "timeStamp": "2026-06-01T10:00:00.5+02:00", **extra}


def _regular(http: TestClient, runtime: Runtime, send: Callable[[], httpx.Response]) -> httpx.Response:
    """``send`` through the route's regular handler: any dependency override selects it."""
    app = getattr(http, "app")  # noqa: B009 (TestClient's app is untyped)
    app.dependency_overrides[get_runtime_dep] = lambda: runtime
    try:
        return send()
    finally:
        app.dependency_overrides.clear()


def _alike(fast: httpx.Response, regular: httpx.Response) -> None:
    assert fast.status_code == regular.status_code, (fast.text, regular.text)
    assert fast.content == regular.content
    for name in ("content-type", "content-length", "www-authenticate", "retry-after"):
        assert fast.headers.get(name) == regular.headers.get(name), name


def _both(http: TestClient, runtime: Runtime, send: Callable[[], httpx.Response]) -> httpx.Response:
    fast = send()
    _alike(fast, _regular(http, runtime, send))
    return fast


def _post(
    http: TestClient, body: bytes, headers: dict[str, str], url: str = URL
) -> Callable[[], httpx.Response]:
    return lambda: http.post(url, content=body, headers=headers)


@pytest.mark.usefixtures("seeded")
def test_bad_input_gets_the_regular_routes_error_byte_for_byte(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    auth = {**headers, **JSON}
    cases: list[tuple[bytes, dict[str, str], str, int, str]] = [
        (b'{"event": ', auth, URL, 400, "malformed_json"),
        (b"", auth, URL, 400, "malformed_json"),
        (b"   ", auth, URL, 400, "malformed_json"),
        (b"not json", auth, URL, 400, "malformed_json"),
        (b'{"event": "x"}', auth, URL, 422, VALIDATION),
        (b'{"event": "x", %s, "extra": 1}' % T, auth, URL, 422, VALIDATION),
        (b'{"event": "x", "timeStamp": "2026-06-01T10:00:00"}', auth, URL, 422, VALIDATION),
        (b'{"event": "x", "timeStamp": "3000-01-01T00:00:00Z"}', auth, URL, 422, VALIDATION),
        (b'{"event": "x", %s, "userId": "3"}' % T, auth, URL, 422, VALIDATION),
        (b'{"event": "\\u0000", %s}' % T, auth, URL, 422, VALIDATION),
        (b'{"eventId": "a b", "event": "x", %s}' % T, auth, URL, 422, VALIDATION),
        (b"[]", auth, URL, 422, VALIDATION),
        (b'[%s, {"event": ""}]' % OK, auth, URL, 422, VALIDATION),
        (b"42", auth, URL, 422, VALIDATION),
        (b'{"event": "x"}', {**headers, "content-type": "text/plain"}, URL, 415, MEDIA),
        # The token is checked after the body, as the route's dependencies are solved.
        (b"{", JSON, URL, 400, "malformed_json"),
        (b"{}", JSON, URL, 422, VALIDATION),
        (b"{}", {"content-type": "text/plain"}, URL, 415, MEDIA),
        (OK, JSON, URL, 401, "unauthorized"),
        (OK, {**JSON, "Authorization": "Basic x"}, URL, 401, "unauthorized"),
        (OK, {**JSON, **bearer("not.a.token")}, URL, 401, "invalid_token"),
        # Unknown test or candidate: 404 (nothing stored).
        (OK, auth, "/v1/test/999/candidates/100/events", 404, "test_not_found"),
        (OK, auth, "/v1/test/42/candidates/999/events", 404, "candidate_not_found"),
        # Ids the fast path leaves to the route's own validation.
        (OK, auth, "/v1/test/abc/candidates/100/events", 422, VALIDATION),
        (OK, auth, f"/v1/test/{2**63}/candidates/1/events", 422, VALIDATION),
        (OK, auth, "/v1/test/42/candidates/-1/events", 422, VALIDATION),
        (OK, auth, f"/v1/test/{'9' * 5000}/candidates/1/events", 422, VALIDATION),
        # Only ASCII digits: what pydantic's lax mode would read as 42 or 100 is refused.
        *((OK, auth, f"/v1/test/{loose}/candidates/100/events", 422, VALIDATION) for loose in LOOSE_42),
        *((OK, auth, f"/v1/test/42/candidates/{loose}/events", 422, VALIDATION) for loose in LOOSE_100),
    ]  # fmt: skip
    for body, sent, url, code, error in cases:
        response = _both(http, runtime, _post(http, body, sent, url))
        assert response.status_code == code, (body, url, response.text)
        assert response.json()["error"] == error, (body, url, response.text)
    assert _ingested(runtime) == [], "a refused request writes no audit entry"
    # Leading zeros are the same ids, on both paths.
    send = _post(
        http, b'{"eventId": "z", "event": "x", %s}' % T, auth, "/v1/test/0042/candidates/00100/events"
    )
    assert send().status_code == 201
    assert _regular(http, runtime, send).status_code == 200


def test_a_token_without_the_ingest_scope_is_403(http: TestClient, runtime: Runtime, seeded: None) -> None:
    client_id, key = create_client(runtime, "uni-a", scopes="export")
    export_only = {**bearer(get_token(http, client_id, key)), **JSON}
    body = OK
    response = _both(http, runtime, _post(http, body, export_only))
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"


@pytest.mark.settings(max_request_bytes=2048, max_batch_events=3)
def test_too_large_bodies_and_batches_are_413_alike(
    http: TestClient, headers: dict[str, str], runtime: Runtime, seeded: None
) -> None:
    auth = {**headers, **JSON}
    big = httpx.Request("POST", "/", json=_event("big", extraInfo={"type": "t", "value": "v" * 3000})).content
    response = _both(http, runtime, _post(http, big, auth))
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
    batch = httpx.Request("POST", "/", json=[_event(f"b{n}") for n in range(4)]).content
    response = _both(http, runtime, _post(http, batch, auth))
    assert response.status_code == 413 and response.json()["error"] == "batch_too_large"


def _ingested(runtime: Runtime) -> list[AuditEntry]:
    with runtime.sessions() as session:
        stmt = select(AuditEntry).where(AuditEntry.action == "events.ingested").order_by(AuditEntry.id)
        return list(session.scalars(stmt))


def _json(body: Any) -> bytes:
    return httpx.Request("POST", "/", json=body).content


@pytest.mark.usefixtures("seeded")
def test_stored_resent_and_conflicting_events_answer_and_audit_alike(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    auth = {**headers, **JSON}
    answers: dict[str, list[httpx.Response]] = {}
    for way, event_id in (("fast", "ev-f"), ("regular", "ev-r")):
        sends = [
            _post(http, _json(_event(event_id)), {**auth, "X-Request-ID": f"{way}-new"}),
            _post(http, _json(_event(event_id)), {**auth, "X-Request-ID": f"{way}-again"}),
            _post(http, _json(_event(event_id, event="other")), {**auth, "X-Request-ID": f"{way}-409"}),
        ]
        answers[way] = [send() if way == "fast" else _regular(http, runtime, send) for send in sends]
    for fast, regular in zip(answers["fast"], answers["regular"], strict=True):
        # The same bytes but for the event's id.
        fast_bytes = fast.content.replace(b"ev-f", b"ev-r")
        assert (fast.status_code, fast_bytes) == (regular.status_code, regular.content)
        assert fast.headers["content-type"] == regular.headers["content-type"] == "application/json"
    assert [r.status_code for r in answers["fast"]] == [201, 200, 409]
    assert answers["fast"][0].json() == {"received": 1, "created": 1, "duplicates": 0, "eventIds": ["ev-f"]}
    assert answers["fast"][1].json() == {"received": 1, "created": 0, "duplicates": 1, "eventIds": ["ev-f"]}
    assert answers["fast"][2].json()["error"] == "event_conflict"
    entries = {entry.request_id: entry for entry in _ingested(runtime)}
    assert set(entries) == {"fast-new", "fast-again", "regular-new", "regular-again"}
    for way in ("fast", "regular"):
        for entry in (entries[f"{way}-new"], entries[f"{way}-again"]):
            assert (entry.object_type, entry.object_id, entry.test_id) == ("test", "42", 42)
            assert entry.client_id is not None and entry.source_ip is not None
            assert entry.tenant_id == entries["regular-new"].tenant_id
            assert entry.client_id == entries["regular-new"].client_id
        assert orjson.loads(entries[f"{way}-new"].details or "") == {
            "received": 1,
            "created": 1,
            "duplicates": 0,
        }
        assert orjson.loads(entries[f"{way}-again"].details or "") == {
            "received": 1,
            "created": 0,
            "duplicates": 1,
        }


@pytest.mark.usefixtures("seeded")
def test_one_event_is_the_same_stored_event_whichever_way_it_was_validated(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    auth = {**headers, **JSON}
    flagged = _event(
        "ev-flag",
        extraInfo={"type": "t", "value": "v"},
        flaggingInfo={"flagType": "f", "severityLevel": "high"},
        userId=7,
    )
    first = http.post(URL, content=_json(flagged), headers=auth)
    assert first.status_code == 201, first.text
    # The same event again: as a batch of one, through the regular handler, and with an int64
    # sent as 7.0 (which only the full model accepts): a duplicate each time, never a 409.
    assert http.post(URL, content=_json([flagged]), headers=auth).status_code == 200
    assert _regular(http, runtime, _post(http, _json(flagged), auth)).status_code == 200
    as_float = _json({**flagged, "userId": 7.0})
    assert b"7.0" in as_float
    response = http.post(URL, content=as_float, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["duplicates"] == 1
    # A new event whose int64 arrives as a float is stored by the fallback validation.
    response = http.post(URL, content=_json({**_event("ev-float"), "userId": 8.0}), headers=auth)
    assert response.status_code == 201, response.text


@pytest.mark.usefixtures("seeded")
def test_a_cancelled_insert_is_the_retryable_503_not_a_500(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    """PostgreSQL: single events are inserted on the driver's own cursor, whose errors SQLAlchemy
    does not wrap; a statement cancelled by the server (what statement_timeout and lock_timeout
    raise too) is answered 503 with Retry-After, as the same error through SQLAlchemy is."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("the driver-level insert is PostgreSQL's")
    dsn = runtime.settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")
    body, auth = _json(_event("held")), {**headers, **JSON}
    answers: list[httpx.Response] = []
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn, autocommit=True) as admin:
        # Another transaction holds the event's key: the request's insert waits for it ...
        holder.execute(
            "INSERT INTO events (test_pk, candidate_pk, event_id, event, occurred_at_ms, doc, "
            "file_count, created_at, received_at) SELECT t.id, c.id, 'held', 'x', 0, '{}', 0, now(), 0 "
            "FROM tests t JOIN candidates c ON c.test_pk = t.id WHERE t.external_id = 42 AND c.user_id = 100"
        )
        sender = threading.Thread(target=lambda: answers.append(http.post(URL, content=body, headers=auth)))
        sender.start()
        # ... and is cancelled by the server each time it waits (the group's try, then its own).
        deadline = time.monotonic() + 60
        while sender.is_alive():
            assert time.monotonic() < deadline, "the request never finished"
            admin.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            time.sleep(0.05)
        holder.rollback()
    (response,) = answers
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "database_unavailable"
    assert response.headers["retry-after"] == "2"
    assert _ingested(runtime) == [], "nothing was stored, no audit entry"
    assert http.post(URL, content=body, headers=auth).status_code == 201
