from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest
from fastapi.testclient import TestClient

from examtrail.core.db import transaction, utcnow
from examtrail.exports import repository
from examtrail.exports.schemas import export_file_schema
from examtrail.runtime import Runtime
from tests.support.api import create_client, fetch, mint_token, seed_test, tamper, wait_for_job


def export(http: TestClient, headers: dict[str, str], test_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    ordered = http.post(f"/v1/test/{test_id}/events", headers=headers)
    assert ordered.status_code == 202, ordered.text
    status = wait_for_job(http, headers, test_id, ordered.json()["jobId"])
    assert status["status"] == "finished", status
    download = fetch(http, status["downloadUrl"])
    assert download.status_code == 200
    return status, download.json()


def test_file_matches_ingested_events_and_schema(http: TestClient, headers: dict[str, str]) -> None:
    http.put("/v1/test/7", json={"title": "Chemistry"}, headers=headers)
    people = [
        {"userId": 30, "candidateId": "c30"},
        {"userId": 10, "candidateId": "c10"},
        {"userId": 20, "candidateId": "c20"},
    ]
    http.put("/v1/test/7/candidates", json=people, headers=headers)
    events = [
        {
            "eventId": "b",
            "event": "flag",
            "timeStamp": "2026-06-01T09:00:00.000Z",
            "userId": 77,
            "flaggingInfo": {
                "flagType": "cheating",
                "flagSubTypes": ["phone", "notes"],
                "comment": "seen",
                "severityLevel": "high",
            },
        },
        {"eventId": "a", "event": "network_lost", "timeStamp": "2026-06-01T09:00:00.000Z"},
        {
            "eventId": "c",
            "event": "new_seb_login",
            "timeStamp": "2026-06-01T08:59:59.999+00:00",
            "extraInfo": {"type": "sebVersion", "value": "3.7"},
        },
        {"eventId": "d", "event": "submitted", "timeStamp": "2026-06-01T11:30:00.123456+01:00"},
    ]
    assert http.post("/v1/test/7/candidates/10/events", json=events, headers=headers).status_code == 201
    http.post(
        "/v1/test/7/candidates/30/events",
        json={"eventId": "z", "event": "idle", "timeStamp": "2026-06-01T10:00:00Z"},
        headers=headers,
    )

    status, body = export(http, headers, 7)
    jsonschema.validate(body, export_file_schema())
    assert [c["userId"] for c in body["candidates"]] == [10, 20, 30]
    assert body["candidates"][1] == {"userId": 20, "candidateId": "c20", "events": []}
    first = body["candidates"][0]["events"]
    # timeStamp then eventId; UTC with milliseconds.
    assert [e["eventId"] for e in first] == ["c", "a", "b", "d"]
    assert [e["timeStamp"] for e in first] == [
        "2026-06-01T08:59:59.999Z",
        "2026-06-01T09:00:00.000Z",
        "2026-06-01T09:00:00.000Z",
        "2026-06-01T10:30:00.123Z",
    ]
    assert first[2] == {
        "eventId": "b",
        "event": "flag",
        "timeStamp": "2026-06-01T09:00:00.000Z",
        "extraInfo": None,
        "flaggingInfo": {
            "flagType": "cheating",
            "flagSubTypes": ["phone", "notes"],
            "comment": "seen",
            "severityLevel": "high",
        },
        "attachedFiles": [],
        "userId": 77,
    }
    assert first[0]["extraInfo"] == {"type": "sebVersion", "value": "3.7"}
    assert first[1]["flaggingInfo"] is None and first[1]["userId"] is None
    assert status["candidatesTotal"] == 3 and status["candidatesDone"] == 3 and status["eventsWritten"] == 5


def test_status_fields_size_and_sha(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=8)
    status, _ = export(http, headers, 8)
    raw = fetch(http, status["downloadUrl"]).content
    assert status["fileSize"] == len(raw)
    assert status["sha256"] == hashlib.sha256(raw).hexdigest()
    assert status["progress"] == 100
    assert status["error"] is None
    for key in ("created", "started", "finished", "downloadUrlExpires"):
        assert status[key].endswith("Z")


def test_attachments_listed_with_working_links(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=9, candidates=1, events_per_candidate=2)
    url = "/v1/test/9/candidates/100/events/e-100-1/files/{}"
    http.put(url.format("b.txt"), content=b"second", headers={**headers, "content-type": "text/plain"})
    http.put(url.format("a.jpg"), content=b"first", headers={**headers, "content-type": "image/jpeg"})
    _, body = export(http, headers, 9)
    files = body["candidates"][0]["events"][1]["attachedFiles"]
    assert [f["fileName"] for f in files] == ["a.jpg", "b.txt"]
    assert [f["fileSize"] for f in files] == [5, 6]
    got = fetch(http, files[0]["presignedUrl"])
    assert got.status_code == 200
    assert got.content == b"first"
    assert got.headers["content-type"].startswith("image/jpeg")
    assert body["candidates"][0]["events"][0]["attachedFiles"] == []
    jsonschema.validate(body, export_file_schema())


@pytest.mark.parametrize("c1", ["\x85", "\x9f"])
def test_attachments_named_with_c1_characters_export_with_working_links(
    http: TestClient, headers: dict[str, str], c1: str
) -> None:
    # Uploads accept C1 (U+0080-U+009F); the local store once refused to sign their links, and
    # every export of the test failed (internal_error).
    seed_test(http, headers, test_id=9, candidates=1, events_per_candidate=1)
    name = f"a{c1}.png"
    url = f"/v1/test/9/candidates/100/events/e-100-0/files/{quote(name)}"  # a%C2%85.png
    uploaded = http.put(url, content=b"c1 bytes", headers={**headers, "content-type": "image/png"})
    assert uploaded.status_code == 201, uploaded.text
    _, body = export(http, headers, 9)
    files = body["candidates"][0]["events"][0]["attachedFiles"]
    assert [f["fileName"] for f in files] == [name]
    got = fetch(http, files[0]["presignedUrl"])
    assert got.status_code == 200
    assert got.content == b"c1 bytes"
    jsonschema.validate(body, export_file_schema())


def hold_queued_job(runtime: Runtime, test_id: int) -> str:
    """An ordered job that no worker will run for an hour (so tests can look at it queued)."""
    from examtrail.core.security import Principal
    from examtrail.exports.service import order_export

    with transaction(runtime.sessions) as session:
        principal = Principal(
            require_tenant(session), "et_test", frozenset({"export"}), utcnow() + timedelta(hours=1)
        )
        job = order_export(session, principal, test_id, reuse=True, retention_days=0).job
        job.not_before = utcnow() + timedelta(hours=1)
        return job.id


def test_get_without_job_id_orders(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=10)
    first = http.get("/v1/test/10/events", headers=headers)
    # Inspera's job APIs answer the order with 200 (POST answers 202).
    assert first.status_code == 200
    assert first.headers["Location"] == f"/v1/test/10/events?jobId={first.json()['jobId']}"
    assert first.json()["status"] in ("queued", "running", "finished")
    assert wait_for_job(http, headers, 10, first.json()["jobId"])["status"] == "finished"


def test_duplicate_order_returns_job_under_way(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    seed_test(http, headers, test_id=10)
    job_id = hold_queued_job(runtime, 10)
    again = http.post("/v1/test/10/events", headers=headers)
    assert again.status_code == 202
    assert again.json()["jobId"] == job_id
    assert again.json()["status"] == "queued"
    assert again.json()["downloadUrl"] is None


def test_unknown_test_job_and_other_tenant(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    seed_test(http, headers, test_id=11)
    assert http.post("/v1/test/999/events", headers=headers).status_code == 404
    status, _ = export(http, headers, 11)
    job_id = status["jobId"]
    assert http.get("/v1/test/11/events", params={"jobId": "nope"}, headers=headers).status_code == 404
    # Right job, wrong test in the path.
    seed_test(http, headers, test_id=12)
    assert http.get("/v1/test/12/events", params={"jobId": job_id}, headers=headers).status_code == 404
    responses = [
        http.post("/v1/test/11/events", headers=other_headers),
        http.get("/v1/test/11/events", params={"jobId": job_id}, headers=other_headers),
        http.delete("/v1/test/11/events", params={"jobId": job_id}, headers=other_headers),
    ]
    for response in responses:
        assert response.status_code == 404
        assert response.json()["error"] in ("test_not_found", "job_not_found")


def test_download_url_expires_with_token_and_refuses_tampering(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    seed_test(http, headers, test_id=13)
    client_id, _ = create_client(runtime, "uni-a")
    status, _ = export(http, headers, 13)
    # A long-lived token: its link works whatever the machine's load (no race with expiry).
    long_lived = mint_token(runtime, client_id, ttl_seconds=600)
    url = http.get("/v1/test/13/events", params={"jobId": status["jobId"]}, headers=long_lived).json()[
        "downloadUrl"
    ]
    ranged = fetch(http, url, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.content == b'{"created"'
    assert fetch(http, tamper(url)).status_code == 403
    # A short token: its link dies with it. Only asserted once the expiry has surely passed.
    short = mint_token(runtime, client_id, ttl_seconds=5)
    minted = time.time()
    short_url = http.get("/v1/test/13/events", params={"jobId": status["jobId"]}, headers=short).json()[
        "downloadUrl"
    ]
    time.sleep(max(0.0, minted + 7 - time.time()))
    assert fetch(http, short_url).status_code == 403
    assert http.get("/v1/test/13/events", params={"jobId": status["jobId"]}, headers=short).status_code == 401
    assert fetch(http, url).status_code == 200


def test_cancel_queued_job(http: TestClient, headers: dict[str, str], runtime: Runtime) -> None:
    seed_test(http, headers, test_id=14)
    job_id = hold_queued_job(runtime, 14)
    response = http.delete("/v1/test/14/events", params={"jobId": job_id}, headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = http.delete("/v1/test/14/events", params={"jobId": job_id}, headers=headers)
    assert again.status_code == 409
    # A cancelled job no longer blocks a new order.
    assert http.post("/v1/test/14/events", headers=headers).json()["jobId"] != job_id


def require_tenant(session: Any) -> int:
    from sqlalchemy import select

    from examtrail.auth.models import Tenant

    return int(session.scalars(select(Tenant.id).where(Tenant.name == "uni-a")).one())


def test_cancel_finished_job_is_409(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=15)
    status, _ = export(http, headers, 15)
    response = http.delete("/v1/test/15/events", params={"jobId": status["jobId"]}, headers=headers)
    assert response.status_code == 409
    assert response.json()["error"] == "job_not_cancellable"


def test_export_schema_is_served(http: TestClient) -> None:
    assert http.get("/schemas/export-file.schema.json").json()["title"].startswith("Examtrail")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs"])
def test_service_endpoints(http: TestClient, path: str) -> None:
    assert http.get(path).status_code == 200


def test_unknown_route_is_json_404(http: TestClient) -> None:
    response = http.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_job_lease_lost_is_recovered(http: TestClient, headers: dict[str, str], runtime: Runtime) -> None:
    """A job whose worker died mid-run (running, lease expired) is finished by the sweeper."""
    seed_test(http, headers, test_id=16)
    with transaction(runtime.sessions) as session:
        tenant_id = require_tenant(session)
        from examtrail.core.security import Principal
        from examtrail.exports.service import order_export

        principal = Principal(tenant_id, "et_test", frozenset({"export"}), utcnow() + timedelta(hours=1))
        job = order_export(session, principal, 16, reuse=True, retention_days=0).job
        job.status = "running"
        job.attempts = 1
        job.lease_owner = "dead-worker"
        job.lease_expires_at = utcnow() - timedelta(seconds=1)
        job.enqueued_at = None  # as a claim leaves it: the wake-up message was consumed
        job_id = job.id
    # No message was ever sent for this job: only the sweeper can find it.
    status = wait_for_job(http, headers, 16, job_id, timeout=20)
    assert status["status"] == "finished"
    with runtime.sessions() as session:
        done = repository.load_job(session, job_id)
        assert done is not None and done.attempts == 2 and done.lease_owner is None


def test_local_links_explain_why_they_are_refused(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    if runtime.settings.storage != "local":
        pytest.skip("local-store links only")
    seed_test(http, headers, test_id=17)
    status, _ = export(http, headers, 17)
    url = httpx.URL(status["downloadUrl"])
    path = url.raw_path.decode()
    assert http.get(path.replace("expires=", "expires=9")).json()["error"] == "invalid_signature"
    expired = url.copy_set_param("expires", "1000")
    assert http.get(expired.raw_path.decode()).status_code == 403
    assert http.get("/files/exports/../../etc/passwd?expires=9999999999&sig=x").status_code in (403, 404)


def test_openapi_documents_the_event_body(http: TestClient) -> None:
    schema = http.get("/openapi.json").json()
    body = schema["paths"]["/v1/test/{testId}/candidates/{userId}/events"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["oneOf"][0] == {
        "$ref": "#/components/schemas/EventIn"
    }
    components = schema["components"]["schemas"]
    assert {"EventIn", "ExtraInfo", "FlaggingInfo"} <= set(components)
    assert components["EventIn"]["properties"]["flaggingInfo"]["anyOf"][0]["$ref"].startswith("#/components/")


def test_garbage_signatures_are_403_not_500(http: TestClient, runtime: Runtime) -> None:
    if runtime.settings.storage != "local":
        pytest.skip("the app serves links only for the local store")
    for sig in ("%D8%A7%D9%84", "x" * 64, ""):
        response = http.get(f"/files/exports/a.json?expires=9999999999&sig={sig}")
        assert response.status_code == 403
