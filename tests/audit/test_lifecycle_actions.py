"""Erasure, legal hold and retention write their audit entries in their own transaction:
exactly one per action (one per export file that goes), none when refused. Both deployments."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from examtrail.core.db import transaction, utcnow
from examtrail.exports.models import ExportJob
from examtrail.lifecycle import service
from examtrail.lifecycle.models import ErasureJob, ErasureStatus
from examtrail.runtime import Runtime
from tests.audit.conftest import Log, details, only
from tests.lifecycle.helpers import erase_headers, export, seed_with_files

RID = "audit-lifecycle-1"


def test_hold_set_and_released(
    http: TestClient, runtime: Runtime, headers: dict[str, str], audit_log: Log
) -> None:
    eraser = {**erase_headers(http, runtime), "X-Request-ID": RID}
    seed_with_files(http, headers, candidates=1)
    mark = audit_log.mark()
    assert http.put("/v1/test/42/hold", headers=eraser).status_code == 200
    held = only(audit_log.since(mark))
    assert (held.action, held.object_type, held.object_id, held.test_id) == ("hold.set", "test", "42", 42)
    assert held.request_id == RID and held.client_id and held.client_id.startswith("et_")

    mark = audit_log.mark()
    assert http.put("/v1/test/42/hold", headers=eraser).status_code == 200  # already held: no action
    assert http.delete("/v1/test/42", headers=eraser).status_code == 409  # refused: no entry
    assert audit_log.since(mark) == []

    assert http.delete("/v1/test/42/hold", headers=eraser).status_code == 200
    assert only(audit_log.since(mark)).action == "hold.released"


def test_candidate_and_test_erasure(
    http: TestClient, runtime: Runtime, headers: dict[str, str], audit_log: Log
) -> None:
    eraser = {**erase_headers(http, runtime), "X-Request-ID": RID}
    seed_with_files(http, headers, candidates=2)
    job = export(http, headers, 42)["jobId"]
    mark = audit_log.mark()
    assert http.delete("/v1/test/42/candidates/100", headers=eraser).status_code in (200, 202)
    entries = audit_log.since(mark)
    assert sorted(e.action for e in entries) == ["candidate.erased", "export.expired"]
    erased = next(e for e in entries if e.action == "candidate.erased")
    assert (erased.object_type, erased.object_id, erased.test_id) == ("candidate", "100", 42)
    assert details(erased)["events"] == 4 and details(erased)["exportsExpired"] == 1
    expired = next(e for e in entries if e.action == "export.expired")
    assert (expired.object_id, details(expired)) == (job, {"reason": "erasure"})

    mark = audit_log.mark()
    assert http.delete("/v1/test/42/candidates/100", headers=eraser).status_code in (200, 202)  # repeat
    assert http.delete("/v1/test/7", headers=eraser).status_code == 404
    assert audit_log.since(mark) == []

    assert http.delete("/v1/test/42", headers=eraser).status_code in (200, 202)
    erased = only(audit_log.since(mark))
    assert (erased.action, erased.object_id, details(erased)["events"]) == ("test.erased", "42", 4)


def test_retention_records_each_expired_export(
    http: TestClient, runtime: Runtime, headers: dict[str, str], audit_log: Log
) -> None:
    seed_with_files(http, headers, candidates=1)
    due, recent = export(http, headers, 42)["jobId"], export(http, headers, 42, format="jsonl")["jobId"]
    with transaction(runtime.sessions) as session:
        old = utcnow() - timedelta(days=runtime.settings.export_retention_days + 1)
        session.execute(update(ExportJob).where(ExportJob.id == due).values(finished_at=old))
    mark = audit_log.mark()
    assert service.sweep_retention(runtime) == 1
    entry = only(audit_log.since(mark))
    assert (entry.action, entry.object_id, entry.client_id) == ("export.expired", due, None)
    assert details(entry) == {"reason": "retention"} and entry.request_id is None
    assert recent != due
    assert service.sweep_retention(runtime) == 0
    assert len(audit_log.since(mark)) == 1  # nothing more was due


def test_restarting_a_failed_erasure_is_audited(
    http: TestClient, runtime: Runtime, headers: dict[str, str], audit_log: Log
) -> None:
    eraser = {**erase_headers(http, runtime), "X-Request-ID": RID}
    seed_with_files(http, headers, candidates=2)
    erased = http.delete("/v1/test/42/candidates/100", headers=eraser)
    assert erased.status_code in (200, 202)
    job_id = erased.json()["jobId"]
    with transaction(runtime.sessions) as session:
        session.execute(
            update(ErasureJob)
            .where(ErasureJob.id == job_id)
            .values(status=ErasureStatus.FAILED, error_code="storage_unavailable", error_message="x")
        )
    mark = audit_log.mark()
    assert http.delete("/v1/test/42/candidates/100", headers=eraser).status_code in (200, 202)
    restarted = only(audit_log.since(mark))
    assert (restarted.action, restarted.object_type, restarted.object_id, restarted.test_id) == (
        "erasure.restarted",
        "erasure",
        job_id,
        42,
    )
    assert restarted.request_id == RID
    assert details(restarted) == {"jobId": job_id, "userId": 100, "error": "storage_unavailable"}
    # Not failed (any more): a repeat changes nothing and records nothing.
    _wait_erasure(http, eraser, job_id)
    mark = audit_log.mark()
    assert http.delete("/v1/test/42/candidates/100", headers=eraser).status_code in (200, 202)
    assert audit_log.since(mark) == []


def _wait_erasure(http: TestClient, headers: dict[str, str], job_id: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if http.get(f"/v1/erasures/{job_id}", headers=headers).json()["status"] == "finished":
            return
        time.sleep(0.05)
    raise AssertionError("erasure did not finish")
