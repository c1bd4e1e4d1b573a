"""The lease protocol shared by export jobs and webhook deliveries, on a real table."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from examtrail.core import leases
from examtrail.core.db import transaction, utcnow
from examtrail.exports.models import ExportJob, JobStatus
from examtrail.exports.repository import LEASE
from examtrail.ingest.models import Test
from examtrail.runtime import Runtime
from tests.support.api import seed_test

LEASE_TIME = timedelta(seconds=30)


def _queued_job(runtime: Runtime, http: TestClient, headers: dict[str, str]) -> str:
    seed_test(http, headers, test_id=77, candidates=1, events_per_candidate=1)
    now = utcnow()
    with transaction(runtime.sessions) as session:
        test = session.query(Test).filter_by(external_id=77).one()
        session.add(
            ExportJob(
                id="lease-job",
                tenant_id=test.tenant_id,
                test_pk=test.id,
                test_external_id=77,
                requested_by="x",
                status=JobStatus.QUEUED,
                created_at=now,
                enqueued_at=now,
                links_expire_at=now + timedelta(hours=1),
            )
        )
    return "lease-job"


def _row(runtime: Runtime, job_id: str) -> ExportJob:
    with runtime.sessions() as session:
        job = session.get(ExportJob, job_id)
        assert job is not None
        return job


def test_one_owner_at_a_time_until_the_lease_runs_out(
    runtime: Runtime, http: TestClient, headers: dict[str, str]
) -> None:
    job_id = _queued_job(runtime, http, headers)
    now = utcnow()
    with transaction(runtime.sessions) as session:
        assert leases.claim(session, LEASE, job_id, "a", now, LEASE_TIME)
        assert not leases.claim(session, LEASE, job_id, "b", now, LEASE_TIME)
        assert not leases.renew(session, LEASE, job_id, "b", now + LEASE_TIME)
        assert leases.renew(session, LEASE, job_id, "a", now + LEASE_TIME, candidates_done=1)
    claimed = _row(runtime, job_id)
    assert (claimed.status, claimed.lease_owner, claimed.candidates_done) == (JobStatus.RUNNING, "a", 1)
    assert claimed.enqueued_at is None  # the wake-up message was consumed by the claim

    later = now + LEASE_TIME + timedelta(seconds=1)
    with transaction(runtime.sessions) as session:
        assert leases.claim(session, LEASE, job_id, "b", later, LEASE_TIME)  # a's lease ran out
        assert not leases.settle(session, LEASE, job_id, "a", status=JobStatus.FINISHED)
        assert leases.settle(session, LEASE, job_id, "b", status=JobStatus.FINISHED)
    settled = _row(runtime, job_id)
    assert (settled.status, settled.lease_owner, settled.lease_expires_at) == (JobStatus.FINISHED, None, None)


def test_sweeper_wakes_orphans_and_lost_messages_once_per_staleness_window(
    runtime: Runtime, http: TestClient, headers: dict[str, str]
) -> None:
    job_id = _queued_job(runtime, http, headers)
    now = utcnow()
    with transaction(runtime.sessions) as session:
        # Its message was just sent: not stale yet.
        assert leases.due_for_dispatch(session, LEASE, now, now - timedelta(seconds=30)) == []
        # Stale: woken again, and marked so that the next sweep leaves it alone.
        assert leases.due_for_dispatch(session, LEASE, now, now + timedelta(seconds=1)) == [job_id]
        assert leases.due_for_dispatch(session, LEASE, now, now - timedelta(seconds=30)) == []
        assert leases.claim(session, LEASE, job_id, "dead", now, LEASE_TIME)
    expired = now + LEASE_TIME + timedelta(seconds=1)
    with transaction(runtime.sessions) as session:
        # The owner died: the row is woken as soon as its lease has expired.
        assert leases.due_for_dispatch(session, LEASE, expired, expired - timedelta(seconds=30)) == [job_id]
        assert leases.due_for_dispatch(session, LEASE, expired, expired - timedelta(seconds=30)) == []


def test_backoff_follows_the_schedule_with_jitter_and_retry_after() -> None:
    schedule = [0, 5, 300]
    assert leases.backoff(schedule, 0) == 0
    assert 4.5 <= (leases.backoff(schedule, 1) or 0) <= 5.5
    assert leases.backoff(schedule, 1, retry_after=60) == 60
    assert leases.backoff(schedule, 3) is None
    assert len({leases.backoff(schedule, 2) for _ in range(20)}) > 1
