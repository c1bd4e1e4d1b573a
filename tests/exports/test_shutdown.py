"""A worker that shuts down hands its running export back (both deployments; the real
processes are in ``tests/e2e/test_shutdown.py``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from examtrail.exports import service
from examtrail.exports.models import ExportJob, JobStatus
from examtrail.exports.pipeline import ExportInterrupted, Progress, write_export
from examtrail.runtime import Runtime
from tests.support.api import seed_test, wait_for_job


def _row(runtime: Runtime, job_id: str) -> ExportJob:
    with runtime.sessions() as session:
        job = session.get(ExportJob, job_id)
        assert job is not None
        session.expunge(job)
        return job


def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.settings(job_lease_seconds=3)
def test_a_stopping_worker_hands_its_export_back(
    http: TestClient, headers: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_test(http, headers, test_id=34, candidates=2, events_per_candidate=2)
    real_write = write_export
    slow = threading.Event()
    slow.set()

    def long_export(*args: Any, progress: Progress, **kwargs: Any) -> Any:
        # A long export: works until told to stop (as the pipeline does between candidates).
        while slow.is_set():
            if progress.stop.wait(0.05):
                raise ExportInterrupted
        return real_write(*args, progress=progress, **kwargs)

    monkeypatch.setattr(service, "write_export", long_export)
    job_id = http.post("/v1/test/34/events", headers=headers).json()["jobId"]
    _until(lambda: _row(runtime, job_id).status == JobStatus.RUNNING, 20, "the job to run")

    stopping_at = time.monotonic()
    runtime.stopping.set()  # what BackgroundWorker.stop() does first
    _until(lambda: _row(runtime, job_id).status == JobStatus.QUEUED, 10, "the job to be handed back")
    # Within the grace (half the 3 s lease) plus a beat, long before the lease would expire.
    assert time.monotonic() - stopping_at < 3
    row = _row(runtime, job_id)
    assert (row.lease_owner, row.lease_expires_at, row.attempts, row.not_before) == (None, None, 0, None)

    # The hand-back re-sent the wake-up: a worker that is not stopping takes it at once.
    slow.clear()
    runtime.stopping.clear()
    status = wait_for_job(http, headers, 34, job_id, timeout=30)
    assert status["status"] == "finished"
    assert _row(runtime, job_id).attempts == 1
