"""SQL for erasure jobs, legal holds and the deletion of a test's rows in batches."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from examtrail.core import leases
from examtrail.core.db import update_rows
from examtrail.exports.models import ExportJob, JobStatus
from examtrail.ingest.models import Attachment, Candidate, Event, Test
from examtrail.lifecycle.models import ErasureJob, ErasureStatus, LegalHold

ACTIVE = (ErasureStatus.QUEUED, ErasureStatus.RUNNING)

# --- legal holds ------------------------------------------------------------------------


def get_hold(session: Session, test_pk: int) -> LegalHold | None:
    return session.get(LegalHold, test_pk)


def add_hold(session: Session, hold: LegalHold) -> None:
    session.add(hold)
    session.flush()


def remove_hold(session: Session, hold: LegalHold) -> None:
    session.delete(hold)
    session.flush()


def not_held(test_pk: InstrumentedAttribute[int]) -> ColumnElement[bool]:
    """The condition "test ``test_pk`` is not under legal hold"."""
    return ~exists().where(LegalHold.test_pk == test_pk)


# --- accepting an erasure -----------------------------------------------------------------


def hidden_external_id() -> int:
    """A ``testId`` no API call can address (they are >= 0), unique enough to never collide."""
    return -(uuid.uuid4().int >> 66) - 1


def candidate_row(session: Session, test_pk: int, user_id: int) -> Candidate | None:
    return session.scalars(
        select(Candidate).where(Candidate.test_pk == test_pk, Candidate.user_id == user_id)
    ).one_or_none()


def count_events(session: Session, *, test_pk: int | None = None, candidate_pk: int | None = None) -> int:
    stmt = select(func.count()).select_from(Event)
    stmt = (
        stmt.where(Event.test_pk == test_pk)
        if candidate_pk is None
        else stmt.where(Event.candidate_pk == candidate_pk)
    )
    return int(session.scalar(stmt) or 0)


def new_holding_test(session: Session, tenant_id: int) -> Test:
    test = Test(tenant_id=tenant_id, external_id=hidden_external_id(), title="erasure in progress")
    session.add(test)
    session.flush()
    return test


def move_candidate(session: Session, candidate_pk: int, holding_pk: int) -> None:
    """Moves the candidate and its events into the holding test: out of every read at once."""
    session.execute(update(Candidate).where(Candidate.id == candidate_pk).values(test_pk=holding_pk))
    session.execute(update(Event).where(Event.candidate_pk == candidate_pk).values(test_pk=holding_pk))


def hide_test(session: Session, test: Test) -> None:
    test.external_id = hidden_external_id()
    session.flush()


def export_jobs_naming(session: Session, test_pk: int, text: str) -> list[ExportJob]:
    """The test's jobs (any status) whose stored options contain ``text`` (a JSON string:
    a prefilter, the caller reads the options), locked until the commit."""
    stmt = select(ExportJob).where(
        ExportJob.test_pk == test_pk, ExportJob.options.contains(text, autoescape=True)
    )
    return list(session.scalars(stmt.with_for_update().execution_options(populate_existing=True)))


def export_jobs_to_expire(
    session: Session,
    test_pk: int,
    statuses: tuple[str, ...],
    *,
    lock: bool = False,
) -> list[ExportJob]:
    """Jobs that hold (finished) or may be writing (running) a file of the test. Queued ones
    have not read anything yet: after a candidate's erasure they will not see it. ``lock``:
    the rows stay locked until the commit (PostgreSQL; SQLite's writer lock does the same),
    so no queued one is claimed meanwhile, and each row's status is the latest committed."""
    stmt = select(ExportJob).where(ExportJob.test_pk == test_pk, ExportJob.status.in_(statuses))
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return list(session.scalars(stmt))


def expire_exports(
    session: Session, job_ids: list[str], now: datetime, statuses: tuple[str, ...]
) -> list[tuple[str, int, int]]:
    """Marks the jobs expired (their files are deleted afterwards by ``purge_*``); returns
    ``(jobId, tenant, testId)`` of those it changed. A running one loses its lease with it:
    its worker discards what it wrote."""
    if not job_ids:
        return []
    condition = and_(ExportJob.id.in_(job_ids), ExportJob.status.in_(statuses))
    statement = (
        update(ExportJob)
        .where(condition)
        .values(
            status=JobStatus.EXPIRED,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=func.coalesce(ExportJob.finished_at, now),
            # Non-NULL: ``purge_expired_files`` clears the job's folder (a running attempt's too).
            storage_key=func.coalesce(ExportJob.storage_key, ""),
        )
        .returning(ExportJob.id, ExportJob.tenant_id, ExportJob.test_external_id)
        .execution_options(synchronize_session=False)
    )
    return [(job_id, tenant_id, test_id) for job_id, tenant_id, test_id in session.execute(statement)]


def add_job(session: Session, job: ErasureJob) -> None:
    session.add(job)
    session.flush()


# --- retention ------------------------------------------------------------------------------


def exports_due(session: Session, finished_before: datetime, limit: int) -> list[str]:
    return list(
        session.scalars(
            select(ExportJob.id)
            .where(
                ExportJob.status == JobStatus.FINISHED,
                ExportJob.finished_at < finished_before,
                not_held(ExportJob.test_pk),
            )
            .order_by(ExportJob.finished_at)
            .limit(limit)
        )
    )


def expired_with_files(session: Session, limit: int, test_pk: int | None = None) -> list[tuple[str, int]]:
    """(job id, tenant id) of expired jobs whose files may still be in the store."""
    stmt = select(ExportJob.id, ExportJob.tenant_id).where(
        ExportJob.status == JobStatus.EXPIRED, ExportJob.storage_key.is_not(None)
    )
    if test_pk is not None:
        stmt = stmt.where(ExportJob.test_pk == test_pk)
    return [(job_id, tenant) for job_id, tenant in session.execute(stmt.limit(limit))]


def forget_files(session: Session, job_ids: list[str]) -> None:
    session.execute(
        update(ExportJob)
        .where(ExportJob.id.in_(job_ids), ExportJob.status == JobStatus.EXPIRED)
        .values(storage_key=None, file_size=None, sha256=None)
    )


# --- erasure jobs ---------------------------------------------------------------------------


def load_job(session: Session, job_id: str) -> ErasureJob | None:
    return session.get(ErasureJob, job_id, populate_existing=True)


def get_job(session: Session, tenant_id: int, job_id: str) -> ErasureJob | None:
    return session.scalars(
        select(ErasureJob).where(ErasureJob.id == job_id, ErasureJob.tenant_id == tenant_id)
    ).one_or_none()


def latest_job(session: Session, tenant_id: int, test_id: int, user_id: int | None) -> ErasureJob | None:
    """The newest erasure of this candidate (or, with ``user_id`` None, of this whole test)."""
    user = ErasureJob.user_id.is_(None) if user_id is None else ErasureJob.user_id == user_id
    return session.scalars(
        select(ErasureJob)
        .where(ErasureJob.tenant_id == tenant_id, ErasureJob.test_external_id == test_id, user)
        .order_by(ErasureJob.created_at.desc())
        .limit(1)
    ).one_or_none()


LEASE = leases.LeaseSpec(
    ErasureJob, waiting=ErasureStatus.QUEUED, leased=ErasureStatus.RUNNING, due=ErasureJob.not_before
)


def claim(session: Session, job_id: str, owner: str, now: datetime, lease: timedelta) -> bool:
    return leases.claim(
        session,
        LEASE,
        job_id,
        owner,
        now,
        lease,
        attempts=ErasureJob.attempts + 1,
        started_at=func.coalesce(ErasureJob.started_at, now),
    )


def renew(session: Session, job_id: str, owner: str, expires: datetime, **values: Any) -> bool:
    return leases.renew(session, LEASE, job_id, owner, expires, **values)


def settle(session: Session, job_id: str, owner: str, **values: Any) -> bool:
    return leases.settle(session, LEASE, job_id, owner, **values)


def fail_unclaimed(session: Session, job_id: str, now: datetime, code: str, message: str) -> bool:
    condition = and_(ErasureJob.id == job_id, ErasureJob.status.in_(ACTIVE))
    values = {
        "status": ErasureStatus.FAILED,
        "finished_at": now,
        "error_code": code,
        "error_message": message,
    }
    return update_rows(session, ErasureJob, condition, lease_owner=None, lease_expires_at=None, **values) == 1


def due_for_dispatch(session: Session, now: datetime, stale_before: datetime, limit: int = 500) -> list[str]:
    return leases.due_for_dispatch(session, LEASE, now, stale_before, limit)


# --- deleting what an erasure holds -------------------------------------------------------


def _held_events(holding_pk: int) -> ColumnElement[bool]:
    # Events of the holding test, and any written concurrently onto a moved candidate.
    moved = select(Candidate.id).where(Candidate.test_pk == holding_pk)
    return or_(Event.test_pk == holding_pk, Event.candidate_pk.in_(moved))


def event_batch(session: Session, holding_pk: int, limit: int) -> list[int]:
    return list(
        session.scalars(select(Event.id).where(_held_events(holding_pk)).order_by(Event.id).limit(limit))
    )


def attachments_of(session: Session, event_pks: list[int]) -> list[tuple[int, str]]:
    return [
        (pk, key)
        for pk, key in session.execute(
            select(Attachment.id, Attachment.storage_key).where(Attachment.event_pk.in_(event_pks))
        )
    ]


def delete_attachments(session: Session, attachment_pks: list[int]) -> None:
    if attachment_pks:
        session.execute(delete(Attachment).where(Attachment.id.in_(attachment_pks)))


def delete_events_without_files(session: Session, event_pks: list[int]) -> int:
    """Deletes those of the events that have no attachment row left (a file recorded since
    the objects were deleted keeps its event for the next batch)."""
    result = session.execute(
        delete(Event).where(Event.id.in_(event_pks), ~exists().where(Attachment.event_pk == Event.id))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def delete_candidates(session: Session, holding_pk: int) -> None:
    session.execute(delete(Candidate).where(Candidate.test_pk == holding_pk))


def delete_test(session: Session, test_pk: int) -> None:
    """The test row; what still refers to it (export jobs, holds) goes by cascade."""
    session.execute(delete(ExportJob).where(ExportJob.test_pk == test_pk))
    session.execute(delete(LegalHold).where(LegalHold.test_pk == test_pk))
    session.execute(delete(Test).where(Test.id == test_pk))
