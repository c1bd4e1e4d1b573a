"""Erasure of a candidate and of a test: nothing of it is left (rows, stored objects, export
files), nothing of anyone else is touched, and it is out of sight from the moment it is accepted."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from examtrail.auth.models import Tenant
from examtrail.core.db import transaction, utcnow
from examtrail.core.security import Principal
from examtrail.lifecycle import service
from examtrail.runtime import Runtime
from tests.lifecycle.helpers import (
    attachment_keys,
    counts,
    erase_headers,
    erasure_row,
    export,
    keys,
    seed_with_files,
    user_rows,
)
from tests.support.api import bearer, fetch


def _export_keys(runtime: Runtime, job_id: str) -> set[str]:
    return {key for key in keys(runtime) if f"/{job_id}/" in key}


def test_candidate_erasure_deletes_only_that_candidate(
    http: TestClient, runtime: Runtime, headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    eraser = erase_headers(http, runtime)
    seed_with_files(http, headers)
    seed_with_files(http, other_headers)  # the same test and user ids in another tenant
    whole = export(http, headers, 42)
    only_100 = export(http, headers, 42, userId=100)
    only_101 = export(http, headers, 42, userId=101)
    theirs = export(http, other_headers, 42)
    doomed = attachment_keys(runtime, 42, 100)
    assert len(doomed) == 2  # ours and the other tenant's (same ids)
    before = keys(runtime)
    assert _export_keys(runtime, whole["jobId"]) and _export_keys(runtime, only_100["jobId"])

    response = http.delete("/v1/test/42/candidates/100", headers=eraser)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "finished"
    assert job["kind"] == "candidate" and job["testId"] == 42 and job["userId"] == 100
    assert (job["eventsTotal"], job["eventsDeleted"], job["filesDeleted"]) == (4, 4, 1)
    assert job["exportsExpired"] == 2
    assert response.headers["Location"] == f"/v1/erasures/{job['jobId']}"

    # No row of the candidate anywhere in our tenant; the other tenant's identical candidate intact.
    assert user_rows(runtime, "uni-a", 100) == {"candidates": 0, "events": 0, "attachments": 0}
    assert user_rows(runtime, "uni-b", 100) == {"candidates": 1, "events": 4, "attachments": 1}
    assert user_rows(runtime, "uni-a", 101) == {"candidates": 1, "events": 4, "attachments": 1}
    assert counts(runtime)["tests"] == 2  # the holding test is gone too
    # Objects: its file and the two export files holding it are gone; nothing else is.
    after = keys(runtime)
    gone = before - after
    assert after <= before
    assert attachment_keys(runtime, 42, 100) | (doomed - after) == doomed
    assert len(doomed - after) == 1
    assert not _export_keys(runtime, whole["jobId"]) and not _export_keys(runtime, only_100["jobId"])
    assert _export_keys(runtime, only_101["jobId"]) and _export_keys(runtime, theirs["jobId"])
    assert gone == (doomed - after) | {
        k for k in before if f"/{whole['jobId']}/" in k or f"/{only_100['jobId']}/" in k
    }

    # The expired exports answer without a link (never a 500); the others still download.
    for expired in (whole, only_100):
        status = http.get("/v1/test/42/events", params={"jobId": expired["jobId"]}, headers=headers)
        assert status.status_code == 200
        assert status.json()["status"] == "expired"
        assert status.json()["downloadUrl"] is None and status.json()["fileSize"] is None
    kept = http.get(f"/v1/test/42/events/{only_101['jobId']}", headers=headers).json()
    assert kept["status"] == "finished" and fetch(http, kept["downloadUrl"]).status_code == 200
    listed = http.get("/v1/test/42/events/jobs", params={"status": "expired"}, headers=headers).json()
    assert {j["jobId"] for j in listed["jobs"]} == {whole["jobId"], only_100["jobId"]}

    # A new export of the test (not the expired one handed out again) has no trace of it.
    fresh = export(http, headers, 42)
    assert fresh["jobId"] != whole["jobId"]
    assert "e-100-" not in fetch(http, fresh["downloadUrl"]).text

    # Idempotent: the same erasure again; its status for its tenant only; scope needed.
    again = http.delete("/v1/test/42/candidates/100", headers=eraser)
    assert again.status_code == 200 and again.json()["jobId"] == job["jobId"]
    assert http.get(f"/v1/erasures/{job['jobId']}", headers=eraser).json() == again.json()
    other_eraser = erase_headers(http, runtime, "uni-b")
    assert http.get(f"/v1/erasures/{job['jobId']}", headers=other_eraser).status_code == 404
    assert http.delete("/v1/test/42/candidates/101", headers=headers).status_code == 403
    missing = http.delete("/v1/test/42/candidates/999", headers=eraser)
    assert missing.status_code == 404 and missing.json()["error"] == "candidate_not_found"
    assert http.delete("/v1/test/9/candidates/100", headers=eraser).json()["error"] == "test_not_found"


def test_re_ingesting_an_erased_candidate_starts_afresh(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    eraser = erase_headers(http, runtime)
    seed_with_files(http, headers, candidates=1)
    assert http.delete("/v1/test/42/candidates/100", headers=eraser).status_code == 200
    # Events for the erased candidate are refused until it is registered again.
    event = {"eventId": "e-100-0", "event": "idle", "timeStamp": "2026-06-01T10:00:00Z"}
    refused = http.post("/v1/test/42/candidates/100/events", json=[event], headers=headers)
    assert refused.status_code == 404 and refused.json()["error"] == "candidate_not_found"
    assert (
        http.put(
            "/v1/test/42/candidates", json=[{"userId": 100, "candidateId": "x"}], headers=headers
        ).status_code
        == 200
    )
    # The same event id is new again: nothing of the erased candidate is left to collide with.
    created = http.post("/v1/test/42/candidates/100/events", json=[event], headers=headers)
    assert created.status_code == 201 and created.json()["created"] == 1
    assert user_rows(runtime, "uni-a", 100) == {"candidates": 1, "events": 1, "attachments": 0}


def test_test_erasure_deletes_the_whole_test_only(
    http: TestClient, runtime: Runtime, headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    eraser = erase_headers(http, runtime)
    seed_with_files(http, headers)
    seed_with_files(http, headers, test_id=43, candidates=1)
    seed_with_files(http, other_headers)
    ours = export(http, headers, 42)
    kept = export(http, headers, 43)
    theirs = export(http, other_headers, 42)
    before = keys(runtime)

    response = http.delete("/v1/test/42", headers=eraser)
    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["kind"], job["status"], job["userId"]) == ("test", "finished", None)
    assert (job["eventsDeleted"], job["filesDeleted"], job["exportsExpired"]) == (12, 3, 1)

    assert http.get("/v1/test/42", headers=headers).status_code == 404
    assert [t["testId"] for t in http.get("/v1/tests", headers=headers).json()["tests"]] == [43]
    for user_id in (100, 101, 102):
        assert user_rows(runtime, "uni-a", user_id)["events"] == (4 if user_id == 100 else 0)  # 100 is on 43
    assert counts(runtime) == {"tests": 2, "candidates": 4, "events": 16, "attachments": 4}
    after = keys(runtime)
    assert after <= before
    assert not _export_keys(runtime, ours["jobId"])
    assert _export_keys(runtime, kept["jobId"]) and _export_keys(runtime, theirs["jobId"])
    assert len(before - after) == 3 + len({k for k in before if f"/{ours['jobId']}/" in k})
    # The erased test's export jobs went with it.
    gone = http.get("/v1/test/42/events", params={"jobId": ours["jobId"]}, headers=headers)
    assert gone.status_code == 404

    again = http.delete("/v1/test/42", headers=eraser)
    assert again.status_code == 200 and again.json()["jobId"] == job["jobId"]
    # The testId is free: a PUT creates a new, empty test.
    created = http.put("/v1/test/42", json={"title": "again"}, headers=headers)
    assert created.status_code == 201 and created.json()["events"] == 0
    assert http.delete("/v1/test/77", headers=eraser).json()["error"] == "test_not_found"


@pytest.mark.settings(erasure_sync_max_events=2, erasure_batch_size=3)
def test_large_erasure_answers_202_and_finishes_in_the_background(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    eraser = erase_headers(http, runtime)
    seed_with_files(http, headers)
    response = http.delete("/v1/test/42", headers=eraser)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] in ("queued", "running", "finished")
    location = response.headers["Location"]
    deadline = time.monotonic() + 30
    while (status := http.get(location, headers=eraser).json())["status"] != "finished":
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["eventsDeleted"] == 12 and status["filesDeleted"] == 3
    assert counts(runtime) == {"tests": 0, "candidates": 0, "events": 0, "attachments": 0}
    assert not {k for k in keys(runtime) if k.startswith(("attachments/", "exports/"))}


def test_accepted_erasure_is_out_of_sight_before_anything_is_deleted(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    """Between acceptance and the job: nothing of the candidate is readable or exportable."""
    seed_with_files(http, headers)
    with transaction(runtime.sessions) as session:
        principal = Principal(
            _tenant_id(runtime), "test", frozenset({"erase"}), utcnow() + timedelta(hours=1)
        )
        accepted = service.erase_candidate(session, principal, 42, 101)
    job = erasure_row(runtime, accepted.job.id)
    assert job.status == "queued" and job.events_deleted == 0
    assert counts(runtime)["events"] == 12  # nothing deleted yet
    test = http.get("/v1/test/42", headers=headers).json()
    assert (test["candidates"], test["events"]) == (2, 8)
    assert [t["testId"] for t in http.get("/v1/tests", headers=headers).json()["tests"]] == [42]
    fresh = export(http, headers, 42)
    assert fresh["candidatesTotal"] == 2
    assert "e-101-" not in fetch(http, fresh["downloadUrl"]).text
    jsonl = export(http, headers, 42, format="jsonl")
    assert "e-101-" not in fetch(http, jsonl["downloadUrl"]).text
    page = http.get("/ui/fragments/tests/42", headers=headers)
    assert page.status_code == 200 and "cand-0" in page.text and "cand-1" not in page.text
    assert http.get("/ui/fragments/tests/42/candidates/101", headers=headers).status_code == 404
    # And the job, when it runs, finishes it.
    service.run_job(runtime, job.id)
    assert erasure_row(runtime, job.id).status == "finished"
    assert user_rows(runtime, "uni-a", 101) == {"candidates": 0, "events": 0, "attachments": 0}


def _tenant_id(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        found = session.scalar(select(Tenant.id).where(Tenant.name == "uni-a"))
        assert found is not None
        return found


def test_an_upload_racing_with_the_erasure_of_its_candidate_leaves_nothing(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    """The file streams while its candidate is erased: the upload fails cleanly (404), and
    neither its row nor its object is left behind."""
    import anyio

    from examtrail.core.errors import NotFound
    from examtrail.ingest.service import FileUploads

    seed_with_files(http, headers, candidates=1)
    before = keys(runtime)
    principal = Principal(_tenant_id(runtime), "test", frozenset({"erase"}), utcnow() + timedelta(hours=1))

    async def body() -> AsyncIterator[bytes]:
        yield b"first half "
        with transaction(runtime.sessions) as session:
            accepted = service.erase_candidate(session, principal, 42, 100)
        service.run_job(runtime, accepted.job.id)
        yield b"second half"

    async def run() -> object:
        uploads = FileUploads(runtime.sessions, runtime.store, 1 << 20)
        return await uploads.upload(_tenant_id(runtime), 42, 100, "e-100-1", "late.bin", "text/plain", body())

    with pytest.raises(NotFound):
        anyio.run(run)
    assert user_rows(runtime, "uni-a", 100) == {"candidates": 0, "events": 0, "attachments": 0}
    left = keys(runtime)
    assert left < before and not {k for k in left if k.startswith("attachments/")}


@pytest.mark.settings(job_max_attempts=1)
def test_a_failed_erasure_stays_hidden_and_repeating_the_call_finishes_it(
    http: TestClient, runtime: Runtime, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from examtrail.storage.base import StorageError

    eraser = erase_headers(http, runtime)
    seed_with_files(http, headers)
    doomed = attachment_keys(runtime, 42, 101)
    assert len(doomed) == 1 and doomed <= keys(runtime)

    def unavailable(key: str) -> None:
        raise StorageError("the object store is down")

    with monkeypatch.context() as patched:
        patched.setattr(runtime.store, "delete", unavailable)
        failed = http.delete("/v1/test/42/candidates/101", headers=eraser)
    assert failed.status_code == 200, failed.text
    body = failed.json()
    assert body["status"] == "failed" and body["error"]["code"] == "storage_unavailable"
    # Not deleted, but never visible again.
    assert user_rows(runtime, "uni-a", 101)["attachments"] == 1
    assert http.get("/v1/test/42", headers=headers).json()["candidates"] == 2
    assert http.post("/v1/test/42/candidates/101/events", json=[], headers=headers).status_code in (404, 422)

    again = http.delete("/v1/test/42/candidates/101", headers=eraser)
    assert again.status_code == 200, again.text
    assert again.json()["jobId"] == body["jobId"] and again.json()["status"] == "finished"
    assert again.json()["error"] is None
    assert user_rows(runtime, "uni-a", 101) == {"candidates": 0, "events": 0, "attachments": 0}
    assert not doomed & keys(runtime)


def test_an_export_running_during_the_erasure_cannot_publish_its_file(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    """A running export may have read the candidate before the erasure: it becomes `expired`,
    loses its lease (so its worker stops) and can no longer publish the file it wrote."""
    from examtrail.exports import repository as exports_repository
    from examtrail.exports import service as exports_service

    eraser = erase_headers(http, runtime)
    seed_with_files(http, headers)
    principal = Principal(_tenant_id(runtime), "test", frozenset({"export"}), utcnow() + timedelta(hours=1))
    with transaction(runtime.sessions) as session:
        # Ordered but not enqueued: this test plays the worker that claims it.
        job_id = exports_service.order_export(session, principal, 42, reuse=True, retention_days=0).job.id
    with transaction(runtime.sessions) as session:
        assert exports_repository.claim(session, job_id, "worker-x", utcnow(), timedelta(minutes=5))

    response = http.delete("/v1/test/42/candidates/100", headers=eraser)
    assert response.status_code == 200 and response.json()["exportsExpired"] == 1
    with transaction(runtime.sessions) as session:
        later = utcnow() + timedelta(minutes=5)
        assert not exports_repository.renew(session, job_id, "worker-x", later, total=3, done=1, events=4)
        assert not exports_repository.finish(
            session, job_id, "worker-x", {"storage_key": "exports/x"}, links_until=None
        )
    status = http.get(f"/v1/test/42/events/{job_id}", headers=headers).json()
    assert status["status"] == "expired" and status["downloadUrl"] is None


def test_an_export_filtered_by_a_former_candidate_id_is_expired(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    """A `candidateId` filter names the candidate as it was called when the export ran; a
    rename since must not hide that the file holds it. Only a `userId` filter spares an export."""
    eraser = erase_headers(http, runtime)
    seed_with_files(http, headers)
    by_old_name = export(http, headers, 42, candidateId="cand-0")  # userId 100
    other_name = export(http, headers, 42, candidateId="cand-1")  # userId 101: may be wrong, so expired
    other_user = export(http, headers, 42, userId=101)
    assert "e-100-" in fetch(http, by_old_name["downloadUrl"]).text
    renamed = http.put(
        "/v1/test/42/candidates", json=[{"userId": 100, "candidateId": "renamed"}], headers=headers
    )
    assert renamed.status_code == 200, renamed.text

    response = http.delete("/v1/test/42/candidates/100", headers=eraser)
    assert response.status_code == 200, response.text
    assert response.json()["exportsExpired"] == 2
    for gone in (by_old_name, other_name):
        status = http.get(f"/v1/test/42/events/{gone['jobId']}", headers=headers).json()
        assert status["status"] == "expired" and status["downloadUrl"] is None
        assert not _export_keys(runtime, gone["jobId"])
        assert fetch(http, gone["downloadUrl"]).status_code in (403, 404)
    kept = http.get(f"/v1/test/42/events/{other_user['jobId']}", headers=headers).json()
    assert kept["status"] == "finished" and fetch(http, kept["downloadUrl"]).status_code == 200


def test_a_queued_export_is_not_claimed_while_an_erasure_is_being_accepted(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    """An export claimed after the erasure looked at the test's jobs, but whose snapshot began
    before its commit, would publish the candidate. So the erasure locks the queued jobs: a
    claim waits for its commit (PostgreSQL; SQLite's single writer serialises them anyway)."""
    from sqlalchemy.exc import OperationalError

    from examtrail.exports import service as exports_service
    from examtrail.exports.models import ExportJob

    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: the erasure holds the only writer lock until it commits")
    seed_with_files(http, headers)
    principal = Principal(
        _tenant_id(runtime), "test", frozenset({"export", "erase"}), utcnow() + timedelta(hours=1)
    )
    with transaction(runtime.sessions) as session:
        job_id = exports_service.order_export(
            session, principal, 42, reuse=True, retention_days=0
        ).job.id  # never enqueued

    with transaction(runtime.sessions) as erasing:
        accepted = service.erase_candidate(erasing, principal, 42, 100)
        assert accepted.job.exports_expired == 0  # a queued export reads after the commit
        with runtime.engine.connect() as worker, pytest.raises(OperationalError, match="lock"):
            # What the claim's UPDATE waits for: the job row, locked until the erasure commits.
            worker.execute(select(ExportJob.id).where(ExportJob.id == job_id).with_for_update(nowait=True))

    exports_service.run_job(runtime, job_id)
    status = http.get(f"/v1/test/42/events/{job_id}", headers=headers).json()
    assert status["status"] == "finished" and status["candidatesTotal"] == 2
    assert "e-100-" not in fetch(http, status["downloadUrl"]).text


def test_an_erased_candidates_candidate_id_is_left_in_no_job_and_no_new_audit_entry(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    """Jobs whose `candidateId` filter names the erased candidate are expired (queued ones
    too) and the name is replaced in their options; the log records how many candidateIds a
    filter had, never which."""
    from examtrail.exports.service import order_export
    from examtrail.exports.spec import ExportOptions
    from tests.audit.conftest import Log
    from tests.support.api import create_client, get_token

    eraser = erase_headers(http, runtime)
    auditor_id, auditor_key = create_client(runtime, "uni-a", "audit")
    auditor = bearer(get_token(http, auditor_id, auditor_key))
    seed_with_files(http, headers)
    people = [{"userId": 100, "candidateId": "Jane-Doe-1990"}]
    assert http.put("/v1/test/42/candidates", json=people, headers=headers).status_code == 200
    alone = export(http, headers, 42, candidateId="Jane-Doe-1990", format="csv")
    with_other = export(http, headers, 42, candidateId=["Jane-Doe-1990", "cand-1"])
    spared_by_user = export(http, headers, 42, candidateId="Jane-Doe-1990", userId=101)
    unrelated = export(http, headers, 42, candidateId="cand-2", userId=102)
    with transaction(runtime.sessions) as session:
        tenant_id = session.scalars(select(Tenant.id).where(Tenant.name == "uni-a")).one()
        principal = Principal(tenant_id, "et_test", frozenset({"export"}), utcnow() + timedelta(hours=1))
        options = ExportOptions(candidateId=["Jane-Doe-1990"], format="jsonl")
        queued = order_export(session, principal, 42, options, reuse=False, retention_days=0).job
        queued.not_before = utcnow() + timedelta(hours=1)
        queued_id = queued.id
    ordered = Log(runtime).rows("export.ordered")
    assert ordered and all("Jane" not in (row.details or "") for row in ordered)
    assert '"candidateIdCount":2' in (ordered[1].details or "")

    assert http.delete("/v1/test/42/candidates/100", headers=eraser).status_code == 200

    def status(job_id: str) -> dict[str, object]:
        answer = http.get(f"/v1/test/42/events/{job_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    expected = {
        alone["jobId"]: ["(erased)"],
        with_other["jobId"]: ["(erased)", "cand-1"],
        spared_by_user["jobId"]: ["(erased)"],
        queued_id: ["(erased)"],
    }
    for job_id, candidate_ids in expected.items():
        job = status(job_id)
        assert job["status"] == "expired", job
        assert job["options"]["candidateId"] == candidate_ids  # type: ignore[index]
    kept = status(unrelated["jobId"])
    assert kept["status"] == "finished" and kept["options"]["candidateId"] == ["cand-2"]  # type: ignore[index]
    listed = http.get("/v1/test/42/events/jobs", headers=headers)
    assert listed.status_code == 200 and len(listed.json()["jobs"]) == 5
    assert "Jane" not in listed.text
    log = http.get("/v1/audit", params={"limit": 1000}, headers=auditor)
    assert log.status_code == 200 and "Jane" not in log.text
