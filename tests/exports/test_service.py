"""Export job edge cases at the service level."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from examtrail.core.db import transaction, utcnow
from examtrail.exports import pipeline, repository, service
from examtrail.exports.models import ExportJob, JobStatus
from examtrail.ingest.models import Test
from examtrail.runtime import Runtime
from examtrail.storage.base import StorageError, StoredObject
from tests.support.api import seed_test


def _job_held_by_someone_else(runtime: Runtime, test_id: int) -> str:
    with transaction(runtime.sessions) as session:
        test = session.query(Test).filter_by(external_id=test_id).one()
        job = ExportJob(
            id=f"job-held-{test_id}",
            tenant_id=test.tenant_id,
            test_pk=test.id,
            test_external_id=test_id,
            requested_by="x",
            status=JobStatus.RUNNING,
            lease_owner="someone-else",
            lease_expires_at=utcnow() + timedelta(hours=1),
            links_expire_at=utcnow() + timedelta(hours=1),
        )
        session.add(job)
        return job.id


def test_publish_of_a_lost_job_survives_a_storage_error_on_cleanup(
    http: TestClient, headers: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file of a job taken over meanwhile is deleted quietly: a StorageError there
    must not escape ``run_job`` (the worker thread would log it as a crash)."""
    seed_test(http, headers, test_id=31, candidates=1, events_per_candidate=1)
    job_id = _job_held_by_someone_else(runtime, 31)
    deletes: list[str] = []

    def unreachable(key: str) -> None:
        deletes.append(key)
        raise StorageError("bucket unreachable")

    monkeypatch.setattr(runtime.store, "delete", unreachable)
    key = f"exports/x/{job_id}/1-me.json"
    service._publish(
        runtime, (), job_id, "me", key, StoredObject(key, 1, "0" * 64), pipeline.Progress(), None, utcnow()
    )
    assert deletes == [key]
    with runtime.sessions() as session:
        after = repository.load_job(session, job_id)
        assert after is not None and after.status == JobStatus.RUNNING and after.storage_key is None


def test_export_retry_backoff_follows_one_schedule() -> None:
    delays = [service._backoff(attempt).total_seconds() for attempt in range(1, 10)]
    assert delays[0] == pytest.approx(2, rel=0.11)
    assert delays[-1] == pytest.approx(60, rel=0.11)  # the last entry repeats
    assert all(a <= b * 1.25 for a, b in itertools.pairwise(delays))


def test_describe_job_is_the_public_status_of_any_job(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    seed_test(http, headers, test_id=32, candidates=1, events_per_candidate=1)
    job_id = _job_held_by_someone_else(runtime, 32)
    with runtime.sessions() as session:
        status = service.describe_job(session, runtime.store, job_id, None)
        assert status is not None and status.jobId == job_id and status.status == "running"
        assert service.describe_job(session, runtime.store, "no-such-job", None) is None
