from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from examtrail.ingest.models import Attachment, Candidate, Event, Test
from examtrail.runtime import Runtime
from tests.support.api import seed_test


def count(runtime: Runtime, model: Any) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "eventId": f"ev-{n}",
        "event": "network_lost",
        "timeStamp": "2026-06-01T10:00:00.5+02:00",
        **extra,
    }


@pytest.fixture
def test_42(http: TestClient, headers: dict[str, str]) -> str:
    seed_test(http, headers, test_id=42, candidates=2, events_per_candidate=0)
    return "/v1/test/42/candidates/100/events"


def test_put_test_creates_then_updates(http: TestClient, headers: dict[str, str]) -> None:
    created = http.put("/v1/test/5", json={"title": "Physics"}, headers=headers)
    assert created.status_code == 201
    assert created.json()["title"] == "Physics"
    updated = http.put("/v1/test/5", json={"title": "Physics II"}, headers=headers)
    assert updated.status_code == 200
    got = http.get("/v1/test/5", headers=headers).json()
    assert got["title"] == "Physics II"
    assert got["candidates"] == 0


def test_candidates_upsert(http: TestClient, headers: dict[str, str], runtime: Runtime) -> None:
    http.put("/v1/test/5", json={"title": "x"}, headers=headers)
    first = http.put("/v1/test/5/candidates", json=[{"userId": 1, "candidateId": "a"}], headers=headers)
    assert first.json() == {"received": 1, "created": 1, "updated": 0}
    again = http.put(
        "/v1/test/5/candidates",
        json=[{"userId": 1, "candidateId": "a2"}, {"userId": 2, "candidateId": "b"}],
        headers=headers,
    )
    assert again.json() == {"received": 2, "created": 1, "updated": 1}
    assert count(runtime, Candidate) == 2


def _candidates(runtime: Runtime, test_id: int) -> dict[int, tuple[str, int | None]]:
    with runtime.sessions() as session:
        rows = session.execute(
            select(Candidate.user_id, Candidate.candidate_id, Candidate.ingest_xid)
            .join(Test, Test.id == Candidate.test_pk)
            .where(Test.external_id == test_id)
        )
        return {user_id: (name, stamp) for user_id, name, stamp in rows}


def test_renaming_many_candidates_is_one_statement_with_one_stamp(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    for test_id in (5, 6):
        http.put(f"/v1/test/{test_id}", json={"title": "x"}, headers=headers)
        people = [{"userId": n, "candidateId": f"c{n}"} for n in range(300)]
        assert http.put(f"/v1/test/{test_id}/candidates", json=people, headers=headers).status_code == 200
    before = _candidates(runtime, 5)
    other_before = _candidates(runtime, 6)
    updates: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE CANDIDATES"):
            updates.append(statement)

    renamed = [{"userId": n, "candidateId": f"renamed-{n}" if n < 200 else f"c{n}"} for n in range(300)]
    sa_event.listen(runtime.engine, "before_cursor_execute", seen)
    try:
        answer = http.put("/v1/test/5/candidates", json=renamed, headers=headers)
    finally:
        sa_event.remove(runtime.engine, "before_cursor_execute", seen)
    assert answer.json() == {"received": 300, "created": 0, "updated": 200}
    # One UPDATE per renamed candidate held SQLite's write lock 18 s for 100,000 of them (33 s on
    # PostgreSQL): one statement (an executemany on SQLite).
    assert len(updates) == 1, updates[:3]
    after = _candidates(runtime, 5)
    assert {n: name for n, (name, _) in after.items()} == {
        n: f"renamed-{n}" if n < 200 else f"c{n}" for n in range(300)
    }
    stamps = {after[n][1] for n in range(200)}
    assert len(stamps) == 1 and stamps.isdisjoint({stamp for _, stamp in before.values()})
    assert all(after[n] == before[n] for n in range(200, 300))  # unchanged: stamp kept
    assert _candidates(runtime, 6) == other_before  # another test's same user ids


def test_candidates_contradicting_list_is_refused(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    http.put("/v1/test/5", json={"title": "x"}, headers=headers)
    response = http.put(
        "/v1/test/5/candidates",
        json=[{"userId": 1, "candidateId": "a"}, {"userId": 1, "candidateId": "b"}],
        headers=headers,
    )
    assert response.status_code == 422
    assert response.json()["details"][0]["index"] == 1
    assert count(runtime, Candidate) == 0


def test_single_event_and_batch(
    http: TestClient, headers: dict[str, str], test_42: str, runtime: Runtime
) -> None:
    one = http.post(test_42, json=event(1), headers=headers)
    assert one.status_code == 201
    assert one.json() == {"received": 1, "created": 1, "duplicates": 0, "eventIds": ["ev-1"]}
    batch = http.post(test_42, json=[event(2), event(3)], headers=headers)
    assert batch.status_code == 201
    assert batch.json()["created"] == 2
    assert count(runtime, Event) == 3


def test_server_assigns_event_ids(http: TestClient, headers: dict[str, str], test_42: str) -> None:
    body = {"event": "idle_warning", "timeStamp": "2026-06-01T10:00:00Z"}
    response = http.post(test_42, json=[body, body], headers=headers)
    assert response.status_code == 201
    ids = response.json()["eventIds"]
    assert len(set(ids)) == 2


def test_resending_is_idempotent(
    http: TestClient, headers: dict[str, str], test_42: str, runtime: Runtime
) -> None:
    assert http.post(test_42, json=[event(1), event(2)], headers=headers).status_code == 201
    again = http.post(test_42, json=[event(1), event(2)], headers=headers)
    assert again.status_code == 200
    assert again.json()["created"] == 0
    assert again.json()["duplicates"] == 2
    # Same instant written differently is the same event.
    same = event(1, timeStamp="2026-06-01T08:00:00.500Z")
    assert http.post(test_42, json=same, headers=headers).status_code == 200
    assert count(runtime, Event) == 2


def test_same_id_other_content_is_409_and_batch_rolls_back(
    http: TestClient, headers: dict[str, str], test_42: str, runtime: Runtime
) -> None:
    assert http.post(test_42, json=event(1), headers=headers).status_code == 201
    response = http.post(test_42, json=[event(5), event(1, event="submitted")], headers=headers)
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "event_conflict"
    assert body["details"][0]["index"] == 1
    assert count(runtime, Event) == 1  # ev-5 was not kept either
    # The same id on another candidate of the test is a conflict too.
    other = http.post("/v1/test/42/candidates/101/events", json=event(1), headers=headers)
    assert other.status_code == 409


def test_conflict_inside_one_batch(
    http: TestClient, headers: dict[str, str], test_42: str, runtime: Runtime
) -> None:
    response = http.post(test_42, json=[event(1), event(1, event="other")], headers=headers)
    assert response.status_code == 409
    assert count(runtime, Event) == 0


BAD_EVENTS: list[tuple[str, Any, str]] = [
    ("unknown field", event(1, color="red"), "color"),
    ("wrong type", event(1, userId="12"), "userId"),
    ("naive timestamp", event(1, timeStamp="2026-06-01T10:00:00"), "timeStamp"),
    ("garbage timestamp", event(1, timeStamp="yesterday"), "timeStamp"),
    ("missing event", {"eventId": "x", "timeStamp": "2026-06-01T10:00:00Z"}, "event"),
    ("over-long name", event(1, event="x" * 201), "event"),
    ("control chars", event(1, event="bad\nname"), "event"),
    ("bad event id", event(1, eventId="a/b"), "eventId"),
    ("negative creator", event(1, userId=-1), "userId"),
    ("int64 overflow", event(1, userId=2**63), "userId"),
    ("extraInfo shape", event(1, extraInfo={"type": "a"}), "extraInfo.value"),
    (
        "flag subtypes",
        event(1, flaggingInfo={"flagType": "f", "flagSubTypes": "x"}),
        "flaggingInfo.flagSubTypes",
    ),
    (
        "over-long comment",
        event(1, flaggingInfo={"flagType": "f", "comment": "c" * 10_001}),
        "flaggingInfo.comment",
    ),
]


@pytest.mark.parametrize(("case", "bad", "field"), BAD_EVENTS, ids=[c[0] for c in BAD_EVENTS])
def test_bad_event_in_batch_is_422_with_index_and_field(
    http: TestClient, headers: dict[str, str], test_42: str, runtime: Runtime, case: str, bad: Any, field: str
) -> None:
    response = http.post(test_42, json=[event(100), event(101), bad], headers=headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert any(d.get("index") == 2 and d.get("field", "").startswith(field) for d in body["details"]), body
    assert count(runtime, Event) == 0


def test_malformed_json_and_empty_body(http: TestClient, headers: dict[str, str], test_42: str) -> None:
    for raw in (b'[{"event": ', b"", b"not json"):
        response = http.post(test_42, content=raw, headers={**headers, "content-type": "application/json"})
        assert response.status_code == 400, raw
        assert response.json()["error"] == "malformed_json"
    response = http.put("/v1/test/42", content=b"{", headers={**headers, "content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


def test_empty_batch_is_refused(http: TestClient, headers: dict[str, str], test_42: str) -> None:
    assert http.post(test_42, json=[], headers=headers).status_code == 422


def test_oversize_batch_is_413(
    http: TestClient, headers: dict[str, str], test_42: str, runtime: Runtime
) -> None:
    limit = runtime.settings.max_batch_events
    response = http.post(test_42, json=[event(n) for n in range(limit + 1)], headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "batch_too_large"
    assert count(runtime, Event) == 0


@pytest.mark.settings(max_request_bytes=2048)
def test_oversize_body_is_413(
    http: TestClient, headers: dict[str, str], test_42: str, runtime: Runtime
) -> None:
    response = http.post(test_42, json=[event(n) for n in range(100)], headers=headers)
    assert response.status_code == 413
    assert count(runtime, Event) == 0


def test_unknown_test_and_candidate_are_404(http: TestClient, headers: dict[str, str], test_42: str) -> None:
    response = http.post("/v1/test/999/candidates/100/events", json=event(1), headers=headers)
    assert response.status_code == 404
    assert response.json()["error"] == "test_not_found"
    response = http.post("/v1/test/42/candidates/999/events", json=event(1), headers=headers)
    assert response.status_code == 404
    assert response.json()["error"] == "candidate_not_found"
    assert http.put("/v1/test/999/candidates", json=[], headers=headers).status_code == 404


def test_bad_path_parameters(http: TestClient, headers: dict[str, str]) -> None:
    assert http.put("/v1/test/abc", json={"title": "x"}, headers=headers).status_code == 422
    assert http.put(f"/v1/test/{2**63}", json={"title": "x"}, headers=headers).status_code == 422
    response = http.put("/v1/test/1", json={"title": "x", "extra": 1}, headers=headers)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "extra"


def test_tenants_are_isolated(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str], test_42: str
) -> None:
    assert http.post(test_42, json=event(1), headers=headers).status_code == 201
    assert http.get("/v1/test/42", headers=other_headers).status_code == 404
    assert http.post(test_42, json=event(2), headers=other_headers).status_code == 404
    # Another tenant may use the same test id for its own test.
    assert http.put("/v1/test/42", json={"title": "theirs"}, headers=other_headers).status_code == 201
    assert http.get("/v1/test/42", headers=headers).json()["title"] == "Test 42"


FILE_URL = "/v1/test/42/candidates/100/events/ev-1/files/{}"


def test_attach_file(http: TestClient, headers: dict[str, str], test_42: str, runtime: Runtime) -> None:
    http.post(test_42, json=event(1), headers=headers)
    payload = b"\x89PNG fake image" * 1000
    response = http.put(
        FILE_URL.format("photo.png"), content=payload, headers={**headers, "content-type": "image/png"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["fileName"] == "photo.png"
    assert body["fileSize"] == len(payload)
    assert isinstance(body["contentItemId"], int)
    with runtime.sessions() as session:
        attachment = session.get(Attachment, body["contentItemId"])
        assert attachment is not None
        assert b"".join(runtime.store.open_read(attachment.storage_key)) == payload
    # Evidence is immutable: the same bytes again are idempotent, other bytes a 409.
    again = http.put(FILE_URL.format("photo.png"), content=payload, headers=headers)
    assert again.status_code == 200
    assert again.json() == body
    other = http.put(FILE_URL.format("photo.png"), content=b"v2", headers=headers)
    assert other.status_code == 409
    assert other.json()["error"] == "file_exists"
    assert count(runtime, Attachment) == 1
    with runtime.sessions() as session:
        attachment = session.get(Attachment, body["contentItemId"])
        assert attachment is not None
        assert b"".join(runtime.store.open_read(attachment.storage_key)) == payload


@pytest.mark.settings(max_file_bytes=1000)
def test_file_too_large_stores_nothing(
    http: TestClient, headers: dict[str, str], test_42: str, runtime: Runtime
) -> None:
    http.post(test_42, json=event(1), headers=headers)

    def body() -> Any:
        yield b"x" * 800
        yield b"x" * 800

    # Streamed without Content-Length: the limit is enforced while reading.
    response = http.put(FILE_URL.format("big.bin"), content=body(), headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "file_too_large"
    response = http.put(FILE_URL.format("big.bin"), content=b"x" * 1001, headers=headers)
    assert response.status_code == 413
    assert count(runtime, Attachment) == 0
    assert list(runtime.store.list_keys("attachments/")) == []


def test_file_for_unknown_event_or_bad_name(http: TestClient, headers: dict[str, str], test_42: str) -> None:
    response = http.put(FILE_URL.format("a.txt"), content=b"x", headers=headers)
    assert response.status_code == 404
    assert response.json()["error"] == "event_not_found"
    http.post(test_42, json=event(1), headers=headers)
    assert http.put(FILE_URL.format(".."), content=b"x", headers=headers).status_code in (404, 422)
    assert http.put(FILE_URL.format("a%00b"), content=b"x", headers=headers).status_code == 422
    assert http.put(FILE_URL.format("x" * 256), content=b"x", headers=headers).status_code == 422


def received_at(runtime: Runtime) -> dict[str, int | None]:
    with runtime.sessions() as session:
        rows = session.execute(select(Event.event_id, Event.received_at))
        return {row.event_id: row.received_at for row in rows}


def test_events_record_the_servers_receipt_time(
    http: TestClient, headers: dict[str, str], test_42: str, runtime: Runtime
) -> None:
    before = time.time_ns() // 1_000_000
    # Claimed times in the past and the future: receivedAt is the server's clock regardless.
    batch = [event(1, timeStamp="2020-01-01T00:00:00Z"), event(2, timeStamp="2999-01-01T00:00:00Z")]
    assert http.post(test_42, json=batch, headers=headers).status_code == 201
    after = time.time_ns() // 1_000_000
    first = received_at(runtime)
    assert first["ev-1"] == first["ev-2"]  # one clock read per batch
    assert first["ev-1"] is not None and before <= first["ev-1"] <= after

    time.sleep(0.01)
    # An idempotent re-send stores nothing: the first receipt time stays.
    assert http.post(test_42, json=batch, headers=headers).status_code == 200
    assert http.post(test_42, json=event(3), headers=headers).status_code == 201
    again = received_at(runtime)
    assert again["ev-1"] == first["ev-1"] and again["ev-2"] == first["ev-2"]
    assert again["ev-3"] is not None and again["ev-3"] > first["ev-1"]
