"""Export options (issue 11): filters, formats, gzip, incremental ``since``, re-use, job list.

Runs on both deployments like the rest of the suite.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from examtrail.exports.schemas import export_file_schema
from examtrail.runtime import Runtime
from tests.support.api import fetch, seed_test, wait_for_job

Params = list[tuple[str, str]] | dict[str, Any]


def order(
    http: TestClient, headers: dict[str, str], test_id: int, params: Params | None = None
) -> dict[str, Any]:
    ordered = http.post(f"/v1/test/{test_id}/events", params=params or {}, headers=headers)
    assert ordered.status_code == 202, ordered.text
    body: dict[str, Any] = ordered.json()
    if body["status"] == "finished":
        return body
    status = wait_for_job(http, headers, test_id, body["jobId"])
    assert status["status"] == "finished", status
    return status


def download(http: TestClient, status: dict[str, Any]) -> bytes:
    response = fetch(http, status["downloadUrl"])
    assert response.status_code == 200, response.text
    return response.content


def export_json(
    http: TestClient, headers: dict[str, str], test_id: int, params: Params | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    status = order(http, headers, test_id, params)
    body = json.loads(download(http, status))
    jsonschema.validate(body, export_file_schema())
    return status, body


def all_ids(body: dict[str, Any]) -> list[str]:
    return [e["eventId"] for c in body["candidates"] for e in c["events"]]


def event_ids(body: dict[str, Any]) -> dict[int, list[str]]:
    return {c["userId"]: [e["eventId"] for e in c["events"]] for c in body["candidates"]}


def jsonl(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode().splitlines()]


FLAG_HIGH = {
    "flagType": "cheating",
    "flagSubTypes": ["phone", "notes"],
    "comment": "c",
    "severityLevel": "high",
}
FLAG_LOW = {"flagType": "noise", "flagSubTypes": [], "severityLevel": "low"}


def seed_mixed(http: TestClient, headers: dict[str, str], test_id: int) -> None:
    """Three candidates; 101 has flags, 102 none at all."""
    assert http.put(f"/v1/test/{test_id}", json={"title": "t"}, headers=headers).status_code in (200, 201)
    people = [{"userId": u, "candidateId": f"cand-{u}"} for u in (100, 101, 102)]
    assert http.put(f"/v1/test/{test_id}/candidates", json=people, headers=headers).status_code == 200
    batches = {
        100: [
            {"eventId": "a1", "event": "new_seb_login", "timeStamp": "2026-06-01T08:00:00Z"},
            {"eventId": "a2", "event": "network_lost", "timeStamp": "2026-06-01T09:00:00Z"},
            {"eventId": "a3", "event": "submitted", "timeStamp": "2026-06-01T11:00:00Z"},
        ],
        101: [
            {"eventId": "b1", "event": "new_seb_login", "timeStamp": "2026-06-01T08:30:00Z"},
            {
                "eventId": "b2",
                "event": "flag",
                "timeStamp": "2026-06-01T09:15:00Z",
                "flaggingInfo": FLAG_HIGH,
            },
            {"eventId": "b3", "event": "flag", "timeStamp": "2026-06-01T10:00:00Z", "flaggingInfo": FLAG_LOW},
        ],
    }
    for user_id, batch in batches.items():
        response = http.post(f"/v1/test/{test_id}/candidates/{user_id}/events", json=batch, headers=headers)
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"userId": "101"}, {101: ["b1", "b2", "b3"]}),
        ([("userId", "100"), ("userId", "102")], {100: ["a1", "a2", "a3"], 102: []}),
        ({"candidateId": "cand-100"}, {100: ["a1", "a2", "a3"]}),
        ({"event": "new_seb_login"}, {100: ["a1"], 101: ["b1"], 102: []}),
        ([("event", "flag"), ("event", "submitted")], {100: ["a3"], 101: ["b2", "b3"], 102: []}),
        ({"flagged": "true"}, {100: [], 101: ["b2", "b3"], 102: []}),
        ({"severityLevel": "high"}, {100: [], 101: ["b2"], 102: []}),
        (
            {"from": "2026-06-01T09:00:00Z", "to": "2026-06-01T10:00:00Z"},
            {100: ["a2"], 101: ["b2"], 102: []},
        ),
        ({"from": "2026-06-01T11:00:00+02:00"}, {100: ["a2", "a3"], 101: ["b2", "b3"], 102: []}),
        ({"to": "2026-06-01T08:30:00.000Z"}, {100: ["a1"], 101: [], 102: []}),
        # Finer than a millisecond: exact (a2 is at 09:00:00.000, before either bound).
        (
            {"from": "2026-06-01T09:00:00.0005Z", "to": "2026-06-01T10:00:00Z"},
            {100: [], 101: ["b2"], 102: []},
        ),
        (
            {"from": "2026-06-01T08:59:00Z", "to": "2026-06-01T09:00:00.0005Z"},
            {100: ["a2"], 101: [], 102: []},
        ),
        # Combined: AND.
        ({"userId": "101", "flagged": "true", "from": "2026-06-01T09:30:00Z"}, {101: ["b3"]}),
        ({"userId": "101", "candidateId": "cand-100"}, {}),
    ],
)
def test_each_filter_alone_and_combined(
    http: TestClient, headers: dict[str, str], params: Params, expected: dict[int, list[str]]
) -> None:
    seed_mixed(http, headers, 60)
    status, body = export_json(http, headers, 60, params)
    assert event_ids(body) == expected
    assert status["eventsWritten"] == sum(len(v) for v in expected.values())
    assert status["candidatesTotal"] == len(expected)
    assert status["format"] == "json" and status["compression"] == "none"
    assert status["contentType"] == "application/json"


def test_no_options_is_todays_file_and_status(http: TestClient, headers: dict[str, str]) -> None:
    seed_mixed(http, headers, 61)
    status, body = export_json(http, headers, 61)
    assert event_ids(body) == {100: ["a1", "a2", "a3"], 101: ["b1", "b2", "b3"], 102: []}
    assert status["options"] == {
        "userId": [],
        "candidateId": [],
        "event": [],
        "flagged": False,
        "severityLevel": [],
        "from": None,
        "to": None,
        "since": None,
        "format": "json",
        "compression": "none",
        "pseudonymize": False,
    }
    assert status["nextSince"]
    assert status["downloadUrl"]


def test_options_are_normalised(http: TestClient, headers: dict[str, str]) -> None:
    seed_mixed(http, headers, 62)
    params = [
        ("userId", "101"),
        ("userId", "100"),
        ("userId", "101"),
        ("from", "2026-06-01T10:00:00.1234+01:00"),
    ]
    status = order(http, headers, 62, params)
    assert status["options"]["userId"] == [100, 101]
    # Rounded up to the events' millisecond: an event at .123 lies before this bound.
    assert status["options"]["from"] == "2026-06-01T09:00:00.124Z"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"format": "xml"}, "format"),
        ({"compression": "zip"}, "compression"),
        ({"userId": "abc"}, "userId.0"),
        ({"flagged": "maybe"}, "flagged"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-06-01T09:00:00"}, "from"),  # no zone
        ({"to": "0.5"}, "to"),  # not read as a Unix time
        ({"from": "1700000000"}, "from"),
        ({"event": ""}, "event.0"),
        ({"from": "2026-06-01T10:00:00Z", "to": "2026-06-01T10:00:00Z"}, "from"),
        # No whole millisecond between them, however close: the window holds no event time.
        ({"from": "2026-06-01T10:00:00.0001Z", "to": "2026-06-01T10:00:00.0009Z"}, "from"),
        # Past year 9999 or before year 1 once in UTC.
        ({"from": "9999-12-31T23:59:59-01:00"}, "from"),
        ({"to": "0001-01-01T00:00:00+01:00"}, "to"),
        ({"to": "9999-12-31T23:59:59.9995Z"}, "to"),
        ({"since": "garbage"}, "since"),
        ({"since": "v1.e30"}, "since"),
    ],
)
def test_bad_options_are_422_naming_the_field(
    http: TestClient, headers: dict[str, str], params: Params, field: str
) -> None:
    seed_mixed(http, headers, 63)
    for method in (http.post, http.get):
        response = method("/v1/test/63/events", params=params, headers=headers)
        assert response.status_code == 422, response.text
        body = response.json()
        assert set(body) == {"error", "message", "details"}
        assert field in [detail.get("field") for detail in body["details"]], body


def test_since_of_another_test_is_422(http: TestClient, headers: dict[str, str]) -> None:
    seed_mixed(http, headers, 64)
    seed_test(http, headers, test_id=65)
    cursor = order(http, headers, 64)["nextSince"]
    response = http.post("/v1/test/65/events", params={"since": cursor}, headers=headers)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "since"


def test_order_refuses_a_job_id(http: TestClient, headers: dict[str, str]) -> None:
    """``POST`` orders: a ``jobId`` (a client meaning to poll) is refused, not ignored."""
    seed_mixed(http, headers, 76)
    response = http.post("/v1/test/76/events", params={"jobId": "x"}, headers=headers)
    assert response.status_code == 422
    assert [detail["field"] for detail in response.json()["details"]] == ["jobId"]
    assert http.get("/v1/test/76/events/jobs", headers=headers).json()["jobs"] == []


def test_status_call_refuses_options(http: TestClient, headers: dict[str, str]) -> None:
    seed_mixed(http, headers, 66)
    job_id = order(http, headers, 66)["jobId"]
    response = http.get("/v1/test/66/events", params={"jobId": job_id, "format": "csv"}, headers=headers)
    assert response.status_code == 422


def test_jsonl(http: TestClient, headers: dict[str, str]) -> None:
    seed_mixed(http, headers, 67)
    _, whole = export_json(http, headers, 67)
    status = order(http, headers, 67, {"format": "jsonl"})
    assert status["contentType"] == "application/x-ndjson"
    response = fetch(http, status["downloadUrl"])
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert f'test-67-events-{status["jobId"]}.jsonl"' in response.headers["content-disposition"]
    lines = jsonl(response.content)
    assert list(lines[0]) == [
        "eventId",
        "event",
        "timeStamp",
        "extraInfo",
        "flaggingInfo",
        "attachedFiles",
        "userId",
        "candidateUserId",
        "candidateId",
        "receivedAt",
    ]
    # The server's receipt time (this test's ingestion: moments ago), not the client's timeStamp.
    for line in lines:
        received = datetime.fromisoformat(line.pop("receivedAt"))
        assert timedelta(0) <= datetime.now(UTC) - received < timedelta(minutes=5)
    expected = [
        {**event, "candidateUserId": c["userId"], "candidateId": c["candidateId"]}
        for c in whole["candidates"]
        for event in c["events"]
    ]
    assert lines == expected
    assert response.content.endswith(b"}\n")


def test_csv_round_trips_every_field(http: TestClient, headers: dict[str, str]) -> None:
    assert http.put("/v1/test/68", json={"title": "t"}, headers=headers).status_code in (200, 201)
    people = [
        {"userId": 5, "candidateId": '=HYPERLINK("x")'},
        {"userId": 6, "candidateId": "plain, with comma"},
    ]
    assert http.put("/v1/test/68/candidates", json=people, headers=headers).status_code == 200
    tricky = 'He said "no", then\nleft 🙂\r\nline 3'
    events = [
        {
            "eventId": "e1",
            "event": "flag",
            "timeStamp": "2026-06-01T09:00:00.5+02:00",
            "extraInfo": {"type": "note", "value": "-2+3"},
            "flaggingInfo": {
                "flagType": "@cheating",
                "flagSubTypes": ["phone", "notes, paper"],
                "comment": tricky,
                "severityLevel": "+high",
            },
            "userId": 77,
        },
        {"eventId": "e2", "event": "idle", "timeStamp": "2026-06-01T09:00:01Z"},
    ]
    assert http.post("/v1/test/68/candidates/5/events", json=events, headers=headers).status_code == 201
    http.put(
        "/v1/test/68/candidates/5/events/e2/files/a;b.txt",
        content=b"x",
        headers={**headers, "content-type": "text/plain"},
    )
    status = order(http, headers, 68, {"format": "csv"})
    assert status["contentType"] == "text/csv; charset=utf-8"
    response = fetch(http, status["downloadUrl"])
    assert response.headers["content-type"].startswith("text/csv")
    raw = response.content
    assert raw.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in raw
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert len(rows) == 2
    first, second = rows
    assert first == {
        "candidateUserId": "5",
        "candidateId": '\'=HYPERLINK("x")',
        "eventId": "e1",
        "event": "flag",
        "timeStamp": "2026-06-01T07:00:00.500Z",
        "receivedAt": first["receivedAt"],
        "userId": "77",
        "extraInfo.type": "note",
        "extraInfo.value": "'-2+3",
        "flaggingInfo.flagType": "'@cheating",
        "flaggingInfo.flagSubTypes": "phone;notes, paper",
        "flaggingInfo.comment": tricky,
        "flaggingInfo.severityLevel": "'+high",
        "attachedFiles.fileName": "",
        "attachedFiles.contentItemId": "",
        "attachedFiles.fileSize": "",
        "attachedFiles.presignedUrl": "",
    }
    assert list(first)[4:7] == ["timeStamp", "receivedAt", "userId"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["receivedAt"])
    assert second["receivedAt"] == first["receivedAt"]  # one batch, one clock read
    assert second["eventId"] == "e2" and second["userId"] == "" and second["flaggingInfo.comment"] == ""
    assert second["attachedFiles.fileName"] == "a;b.txt" and second["attachedFiles.fileSize"] == "1"
    assert fetch(http, second["attachedFiles.presignedUrl"]).content == b"x"


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_gzip_decompresses_to_the_uncompressed_export(
    http: TestClient, headers: dict[str, str], fmt: str
) -> None:
    seed_mixed(http, headers, 69)
    plain_status = order(http, headers, 69, {"format": fmt})
    plain = download(http, plain_status)
    status = order(http, headers, 69, {"format": fmt, "compression": "gzip"})
    assert status["contentType"] == "application/gzip" and status["compression"] == "gzip"
    response = fetch(http, status["downloadUrl"])
    stored = response.content
    assert response.headers["content-type"].startswith("application/gzip")
    assert f'test-69-events-{status["jobId"]}.{fmt}.gz"' in response.headers["content-disposition"]
    assert status["fileSize"] == len(stored)
    import hashlib

    assert status["sha256"] == hashlib.sha256(stored).hexdigest()
    unpacked = gzip.decompress(stored)
    if fmt == "json":  # each file carries its own "created"
        a, b = json.loads(unpacked), json.loads(plain)
        assert a.pop("created") and b.pop("created")
        assert a == b
        assert unpacked.split(b',"candidates":', 1)[1] == plain.split(b',"candidates":', 1)[1]
    else:
        assert unpacked == plain


def ingest(
    http: TestClient, headers: dict[str, str], test_id: int, user_id: int, events: list[dict[str, Any]]
) -> None:
    response = http.post(f"/v1/test/{test_id}/candidates/{user_id}/events", json=events, headers=headers)
    assert response.status_code in (200, 201), response.text


def test_incremental_chain_of_three(http: TestClient, headers: dict[str, str]) -> None:
    seed_mixed(http, headers, 70)
    first, body = export_json(http, headers, 70)
    assert first["nextSince"]
    # Nothing new: an incremental export lists every candidate with no events.
    _, empty = export_json(http, headers, 70, {"since": first["nextSince"]})
    assert event_ids(empty) == {100: [], 101: [], 102: []}

    # A late invigilator flag on an early timestamp, and a new event.
    ingest(
        http,
        headers,
        70,
        100,
        [
            {
                "eventId": "late-flag",
                "event": "flag",
                "timeStamp": "2026-06-01T07:00:00Z",
                "flaggingInfo": FLAG_HIGH,
            }
        ],
    )
    ingest(http, headers, 70, 102, [{"eventId": "c1", "event": "idle", "timeStamp": "2026-06-01T12:00:00Z"}])
    # Re-sending an already exported event is a duplicate, not a change.
    ingest(
        http,
        headers,
        70,
        100,
        [{"eventId": "a1", "event": "new_seb_login", "timeStamp": "2026-06-01T08:00:00Z"}],
    )
    second, delta = export_json(http, headers, 70, {"since": first["nextSince"], "format": "json"})
    assert event_ids(delta) == {100: ["late-flag"], 101: [], 102: ["c1"]}
    assert second["nextSince"] != first["nextSince"]

    ingest(
        http, headers, 70, 101, [{"eventId": "b4", "event": "submitted", "timeStamp": "2026-06-01T08:45:00Z"}]
    )
    third = order(http, headers, 70, {"since": second["nextSince"], "format": "jsonl"})
    assert [line["eventId"] for line in jsonl(download(http, third))] == ["b4"]
    # Incremental exports combine with filters.
    fourth, only = export_json(http, headers, 70, {"since": first["nextSince"], "flagged": "true"})
    assert event_ids(only) == {100: ["late-flag"], 101: [], 102: []}
    # The three together hold every event exactly once.
    _, full = export_json(
        http, headers, 70, {"event": ["new_seb_login", "network_lost", "submitted", "flag", "idle"]}
    )
    chain = sorted([*all_ids(body), *all_ids(delta), "b4"])
    assert chain == sorted(all_ids(full))
    assert fourth["options"]["since"] == first["nextSince"]


def test_incremental_carries_files_attached_later(http: TestClient, headers: dict[str, str]) -> None:
    seed_mixed(http, headers, 71)
    first = order(http, headers, 71)
    response = http.put(
        "/v1/test/71/candidates/101/events/b2/files/photo.jpg",
        content=b"jpeg",
        headers={**headers, "content-type": "image/jpeg"},
    )
    assert response.status_code == 201
    _, delta = export_json(http, headers, 71, {"since": first["nextSince"]})
    assert event_ids(delta) == {100: [], 101: ["b2"], 102: []}
    files = delta["candidates"][1]["events"][0]["attachedFiles"]
    assert [f["fileName"] for f in files] == ["photo.jpg"]


def test_reuse_of_an_unchanged_finished_export(http: TestClient, headers: dict[str, str]) -> None:
    seed_mixed(http, headers, 72)
    first = order(http, headers, 72, {"format": "jsonl", "userId": "101"})
    again = http.post("/v1/test/72/events", params={"userId": "101", "format": "jsonl"}, headers=headers)
    assert again.status_code == 202
    body = again.json()
    assert body["jobId"] == first["jobId"] and body["status"] == "finished"
    assert body["downloadUrl"] and body["nextSince"] == first["nextSince"]
    assert download(http, body) == download(http, first)
    # Other options: another job.
    other = order(http, headers, 72, {"format": "jsonl"})
    assert other["jobId"] != first["jobId"]
    # After new events: a new job and a fresh file, never the stale one.
    ingest(http, headers, 72, 101, [{"eventId": "b9", "event": "idle", "timeStamp": "2026-06-01T08:00:00Z"}])
    fresh = order(http, headers, 72, {"format": "jsonl", "userId": "101"})
    assert fresh["jobId"] != first["jobId"]
    assert "b9" in [line["eventId"] for line in jsonl(download(http, fresh))]
    # A new candidate changes the file too.
    again = order(http, headers, 72, {"format": "json"})
    assert (
        http.put(
            "/v1/test/72/candidates", json=[{"userId": 103, "candidateId": "n"}], headers=headers
        ).status_code
        == 200
    )
    assert order(http, headers, 72, {"format": "json"})["jobId"] != again["jobId"]
    renamed = order(http, headers, 72)
    http.put("/v1/test/72/candidates", json=[{"userId": 103, "candidateId": "renamed"}], headers=headers)
    assert order(http, headers, 72)["jobId"] != renamed["jobId"]


def test_job_list(http: TestClient, headers: dict[str, str], other_headers: dict[str, str]) -> None:
    seed_mixed(http, headers, 73)
    ids = [order(http, headers, 73, {"userId": str(u)})["jobId"] for u in (100, 101, 102)]
    page = http.get("/v1/test/73/events/jobs", params={"limit": 2}, headers=headers)
    assert page.status_code == 200, page.text
    first = page.json()
    assert [job["jobId"] for job in first["jobs"]] == ids[::-1][:2]
    assert first["jobs"][0]["options"]["userId"] == [102] and first["jobs"][0]["downloadUrl"]
    rest = http.get(
        "/v1/test/73/events/jobs", params={"limit": 2, "cursor": first["nextCursor"]}, headers=headers
    )
    assert [job["jobId"] for job in rest.json()["jobs"]] == [ids[0]]
    assert rest.json()["nextCursor"] is None
    finished = http.get("/v1/test/73/events/jobs", params={"status": "finished"}, headers=headers).json()
    assert len(finished["jobs"]) == 3
    assert (
        http.get("/v1/test/73/events/jobs", params={"status": "queued"}, headers=headers).json()["jobs"] == []
    )
    assert http.get("/v1/test/73/events/jobs", params={"status": "nope"}, headers=headers).status_code == 422
    assert http.get("/v1/test/73/events/jobs", params={"cursor": "!!"}, headers=headers).status_code == 422
    # A cursor whose job id holds a NUL (PostgreSQL refuses one in a query): refused alike.
    nul = base64.urlsafe_b64encode(b"2026-06-01T10:00:00+00:00|a\x00b").decode()
    assert http.get("/v1/test/73/events/jobs", params={"cursor": nul}, headers=headers).status_code == 422
    # Well formed, but out of range once in UTC.
    for when in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        extreme = base64.urlsafe_b64encode(f"{when}|x".encode()).decode()
        response = http.get("/v1/test/73/events/jobs", params={"cursor": extreme}, headers=headers)
        assert response.status_code == 422, response.text
    assert http.get("/v1/test/73/events/jobs", headers=other_headers).status_code == 404


def test_webhook_payload_carries_format_compression_next_since(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    from datetime import UTC, datetime

    from examtrail.exports.schemas import ExportJobOut
    from examtrail.webhooks.models import WebhookDelivery
    from examtrail.webhooks.service import build_payload

    seed_mixed(http, headers, 74)
    status = ExportJobOut.model_validate(order(http, headers, 74, {"format": "csv", "compression": "gzip"}))
    delivery = WebhookDelivery(
        event="event_by_candidates_export_finished", occurred_at=datetime.now(UTC), test_external_id=74
    )
    payload = build_payload(delivery, status)
    assert payload["format"] == "csv" and payload["compression"] == "gzip"
    assert payload["nextSince"] == status.nextSince and payload["nextSince"]


def test_openapi_documents_the_options(http: TestClient) -> None:
    schema = http.get("/openapi.json").json()
    for method in ("post", "get"):
        params = {p["name"]: p for p in schema["paths"]["/v1/test/{testId}/events"][method]["parameters"]}
        for name in ("userId", "candidateId", "event", "flagged", "severityLevel", "from", "to", "since"):
            assert params[name]["description"], name
        assert "/v1/test/{testId}/events/jobs" in schema["paths"]
    text = json.dumps(schema)
    assert '"jsonl"' in text and '"gzip"' in text


def test_filters_on_a_candidate_with_more_events_than_fit_a_row(
    http: TestClient, headers: dict[str, str]
) -> None:
    """PostgreSQL streams a candidate with over 2,000 (matching) events in pieces: filters apply there too."""
    assert http.put("/v1/test/75", json={"title": "t"}, headers=headers).status_code in (200, 201)
    people = [{"userId": 1, "candidateId": "many"}, {"userId": 2, "candidateId": "few"}]
    assert http.put("/v1/test/75/candidates", json=people, headers=headers).status_code == 200
    batch = [
        {
            "eventId": f"m{n:05d}",
            "event": "flag" if n % 3 == 0 else "tick",
            "timeStamp": f"2026-06-01T{8 + n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
            **({"flaggingInfo": FLAG_LOW} if n % 3 == 0 else {}),
        }
        for n in range(7000)
    ]
    ingest(http, headers, 75, 1, batch)
    ingest(http, headers, 75, 2, [{"eventId": "f1", "event": "tick", "timeStamp": "2026-06-01T08:00:00Z"}])
    first, whole = export_json(http, headers, 75)
    assert len(whole["candidates"][0]["events"]) == 7000
    _, flagged = export_json(http, headers, 75, {"flagged": "true"})
    assert all_ids(flagged) == [f"m{n:05d}" for n in range(0, 7000, 3)]
    lines = jsonl(download(http, order(http, headers, 75, {"format": "jsonl"})))
    assert all(line.pop("receivedAt") for line in lines)
    expected_lines = [
        {**e, "candidateUserId": c["userId"], "candidateId": c["candidateId"]}
        for c in whole["candidates"]
        for e in c["events"]
    ]
    assert lines == expected_lines
    table = download(http, order(http, headers, 75, {"format": "csv"})).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(table, newline="")))
    assert [row["eventId"] for row in rows] == [line["eventId"] for line in lines]
    flagged_lines = jsonl(download(http, order(http, headers, 75, {"format": "jsonl", "flagged": "true"})))
    assert [line["eventId"] for line in flagged_lines] == all_ids(flagged)
    _, window = export_json(http, headers, 75, {"from": "2026-06-01T08:10:00Z", "to": "2026-06-01T09:00:00Z"})
    assert all_ids(window) == [f"m{n:05d}" for n in range(600, 3600)]
    ingest(
        http, headers, 75, 1, [{"eventId": "m-late", "event": "tick", "timeStamp": "2026-06-01T07:00:00Z"}]
    )
    _, delta = export_json(http, headers, 75, {"since": first["nextSince"]})
    assert event_ids(delta) == {1: ["m-late"], 2: []}
