"""Legal hold blocks erasure and retention; retention deletes only the export files that are due."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from examtrail.core.db import transaction, utcnow
from examtrail.exports.models import ExportJob
from examtrail.lifecycle import service
from examtrail.runtime import Runtime
from examtrail.tasks import registry
from tests.lifecycle.helpers import counts, erase_headers, export, keys, seed_with_files
from tests.support.api import fetch


def _age(runtime: Runtime, job_id: str, days: float) -> None:
    with transaction(runtime.sessions) as session:
        session.execute(
            update(ExportJob)
            .where(ExportJob.id == job_id)
            .values(finished_at=utcnow() - timedelta(days=days))
        )


def _files(runtime: Runtime, job_id: str) -> set[str]:
    return {key for key in keys(runtime) if f"/{job_id}/" in key}


def test_legal_hold_blocks_erasure(http: TestClient, runtime: Runtime, headers: dict[str, str]) -> None:
    eraser = erase_headers(http, runtime)
    seed_with_files(http, headers)
    assert http.get("/v1/test/42/hold", headers=eraser).json()["held"] is False
    held = http.put("/v1/test/42/hold", headers=eraser)
    assert held.status_code == 200
    assert held.json()["held"] is True and held.json()["since"] and held.json()["setBy"]
    assert http.put("/v1/test/42/hold", headers=eraser).json() == held.json()  # idempotent
    before, stored = counts(runtime), keys(runtime)

    for path in ("/v1/test/42/candidates/100", "/v1/test/42"):
        refused = http.delete(path, headers=eraser)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "legal_hold"
    assert counts(runtime) == before and keys(runtime) == stored
    assert http.get("/v1/test/42", headers=headers).json()["events"] == 12

    # Scope and tenant: the hold is the erase scope's, of the test's own tenant.
    assert http.put("/v1/test/42/hold", headers=headers).status_code == 403
    other = erase_headers(http, runtime, "uni-b")
    assert http.delete("/v1/test/42/hold", headers=other).json()["error"] == "test_not_found"
    assert http.put("/v1/test/9/hold", headers=eraser).status_code == 404

    released = http.delete("/v1/test/42/hold", headers=eraser)
    assert released.status_code == 200 and released.json()["held"] is False
    assert http.delete("/v1/test/42/hold", headers=eraser).status_code == 200  # idempotent
    assert http.delete("/v1/test/42/candidates/100", headers=eraser).status_code == 200


def test_retention_deletes_only_what_is_due(
    http: TestClient, runtime: Runtime, headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    eraser = erase_headers(http, runtime)
    seed_with_files(http, headers)
    seed_with_files(http, headers, test_id=43, candidates=1)
    seed_with_files(http, other_headers)
    old = export(http, headers, 42)
    recent = export(http, headers, 42, format="jsonl")
    held_old = export(http, headers, 43)
    other_old = export(http, other_headers, 42)
    _age(runtime, old["jobId"], 31)
    _age(runtime, recent["jobId"], 29)
    _age(runtime, held_old["jobId"], 400)
    _age(runtime, other_old["jobId"], 31)
    assert http.put("/v1/test/43/hold", headers=eraser).status_code == 200
    attachments = {key for key in keys(runtime) if key.startswith("attachments/")}

    assert service.sweep_retention(runtime) == 2
    assert not _files(runtime, old["jobId"]) and not _files(runtime, other_old["jobId"])
    assert _files(runtime, recent["jobId"]) and _files(runtime, held_old["jobId"])
    # Retention is about export files: the test's own data stays.
    assert {key for key in keys(runtime) if key.startswith("attachments/")} == attachments
    assert counts(runtime)["events"] == 12 + 4 + 12

    status = http.get("/v1/test/42/events", params={"jobId": old["jobId"]}, headers=headers)
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "expired" and body["downloadUrl"] is None and body["sha256"] is None
    assert body["progress"] == 100  # it had finished: not back to 99
    other = http.get(f"/v1/test/42/events/{other_old['jobId']}", headers=other_headers).json()
    assert other["status"] == "expired"
    # Ordering the same export again never hands out the expired job: a new file is written.
    again = export(http, headers, 42)
    assert again["jobId"] != old["jobId"]
    assert fetch(http, again["downloadUrl"]).status_code == 200
    assert service.sweep_retention(runtime) == 0  # nothing more is due

    # Released from hold, the held test's old export goes at the next sweep.
    assert http.delete("/v1/test/43/hold", headers=eraser).status_code == 200
    assert service.sweep_retention(runtime) == 1
    assert not _files(runtime, held_old["jobId"])


@pytest.mark.settings(export_retention_days=0)
def test_retention_zero_keeps_files_forever(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    seed_with_files(http, headers, candidates=1)
    job = export(http, headers, 42)
    _age(runtime, job["jobId"], 10_000)
    assert service.sweep_retention(runtime) == 0
    assert _files(runtime, job["jobId"])
    assert http.get(f"/v1/test/42/events/{job['jobId']}", headers=headers).json()["status"] == "finished"


def test_the_worker_runs_retention_and_erasure_recovery() -> None:
    described = registry().describe()
    assert "erasure.run" in described["tasks"]
    assert {"exports.retention", "erasure.dispatch_due"} <= set(described["periodic"])
