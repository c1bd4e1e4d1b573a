"""Erasure of candidates and tests, legal holds, and the retention of export files.

Erasure is never half-visible: the transaction that accepts it moves the data out of
every read (see ``models.ErasureJob``) and expires the export jobs whose files hold it;
the job that follows deletes rows in batches and objects before the rows that name them,
so running it again after a crash (or a lost lease) finishes what is left.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import orjson
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from examtrail.audit import actions
from examtrail.audit.service import Entry, record, record_many
from examtrail.core import leases
from examtrail.core.db import transaction, utcnow
from examtrail.core.errors import Conflict, NotFound
from examtrail.core.security import Principal
from examtrail.core.timeutil import format_dt
from examtrail.exports.models import JobStatus
from examtrail.exports.spec import ExportOptions
from examtrail.ingest import repository as ingest_repository
from examtrail.ingest.models import Test
from examtrail.lifecycle import repository
from examtrail.lifecycle.models import ErasureJob, ErasureKind, ErasureStatus, LegalHold
from examtrail.lifecycle.schemas import ErasureError, ErasureJobOut, HoldOut
from examtrail.runtime import Runtime
from examtrail.storage.base import StorageError

log = logging.getLogger(__name__)

RUN_TASK = "erasure.run"
# Outages worth retrying; anything else is a bug and fails the job at once.
TRANSIENT = (StorageError, OperationalError, InterfaceError, ConnectionError, TimeoutError)
RETRY_SCHEDULE = (0, 2, 4, 8, 16, 32, 60)
# Export jobs expired (and their files deleted) per retention sweep.
RETENTION_BATCH = 500


@dataclass(frozen=True, slots=True)
class Accepted:
    job: ErasureJob
    # True when the job must be run (new, or a failed one requeued).
    created: bool


# --- legal hold -------------------------------------------------------------------------------


def _test(session: Session, tenant_id: int, test_id: int, *, lock: bool = False) -> Test | None:
    return ingest_repository.get_test(session, tenant_id, test_id, lock=lock)


def _require_test(session: Session, tenant_id: int, test_id: int, *, lock: bool = False) -> Test:
    test = _test(session, tenant_id, test_id, lock=lock)
    if test is None:
        raise NotFound(f"Test {test_id} not found.", code="test_not_found")
    return test


def hold_out(test_id: int, hold: LegalHold | None) -> HoldOut:
    return HoldOut(
        testId=test_id,
        held=hold is not None,
        since=format_dt(hold.set_at) if hold else None,
        setBy=hold.set_by if hold else None,
    )


def get_hold(session: Session, principal: Principal, test_id: int) -> HoldOut:
    test = _require_test(session, principal.tenant_id, test_id)
    return hold_out(test_id, repository.get_hold(session, test.id))


def set_hold(session: Session, principal: Principal, test_id: int) -> HoldOut:
    """Puts the test under legal hold (again: unchanged)."""
    test = _require_test(session, principal.tenant_id, test_id, lock=True)
    hold = repository.get_hold(session, test.id)
    if hold is None:
        hold = LegalHold(test_pk=test.id, tenant_id=principal.tenant_id, set_by=principal.client_id)
        repository.add_hold(session, hold)
        _record(session, principal, actions.HOLD_SET, actions.OBJECT_TEST, test_id, test_id)
    return hold_out(test_id, hold)


def release_hold(session: Session, principal: Principal, test_id: int) -> HoldOut:
    test = _require_test(session, principal.tenant_id, test_id, lock=True)
    hold = repository.get_hold(session, test.id)
    if hold is not None:
        repository.remove_hold(session, hold)
        _record(session, principal, actions.HOLD_RELEASED, actions.OBJECT_TEST, test_id, test_id)
    return hold_out(test_id, None)


def _record(
    session: Session,
    principal: Principal,
    action: actions.Action,
    object_type: str,
    object_id: int | str,
    test_id: int,
    details: dict[str, object] | None = None,
) -> None:
    record(
        session,
        tenant_id=principal.tenant_id,
        client_id=principal.client_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        test_id=test_id,
        details=details,
    )


def _record_expired(
    session: Session, client_id: str | None, expired: list[tuple[str, int, int]], reason: str
) -> None:
    """One ``export.expired`` entry per job whose file goes (the sweeper acts as nobody)."""
    record_many(
        session,
        [
            Entry(
                tenant_id,
                client_id,
                actions.EXPORT_EXPIRED,
                actions.OBJECT_EXPORT,
                job_id,
                test_id,
                {"reason": reason},
            )
            for job_id, tenant_id, test_id in expired
        ],
    )


def _refuse_if_held(session: Session, test: Test) -> None:
    if repository.get_hold(session, test.id) is not None:
        raise Conflict(
            f"Test {test.external_id} is under legal hold: nothing of it can be deleted.", code="legal_hold"
        )


# --- accepting an erasure -----------------------------------------------------------------------


def _excludes(options: str, user_id: int) -> bool:
    """Whether an export with these options surely left the candidate out of its file.

    Only a ``userId`` filter tells: a ``candidateId`` filter names what the candidate was
    called when the export read it, and ``PUT /candidates`` may have renamed it since."""
    user_ids = ExportOptions.from_stored(options).userId
    return bool(user_ids) and user_id not in user_ids


# What an erased candidate's ``candidateId`` becomes in the stored options of the export
# jobs that named it (all of them expired, cancelled or failed by then).
ERASED_CANDIDATE_ID = "(erased)"


def _names(options: str, candidate_id: str) -> bool:
    """Whether an export with these options was filtered by this ``candidateId``."""
    return candidate_id in ExportOptions.from_stored(options).candidateId


def _scrub_candidate_id(session: Session, test_pk: int, candidate_id: str) -> None:
    """Replaces the erased candidate's ``candidateId`` in the options of every export job of
    the test that names it: the status and the job list show the options of expired jobs."""
    for job in repository.export_jobs_naming(session, test_pk, orjson.dumps(candidate_id).decode()):
        options = ExportOptions.from_stored(job.options)
        if candidate_id not in options.candidateId:
            continue
        kept = {value for value in options.candidateId if value != candidate_id}
        scrubbed = options.model_copy(update={"candidateId": sorted({*kept, ERASED_CANDIDATE_ID})})
        job.options = scrubbed.canonical()
    session.flush()


def _again(
    session: Session, principal: Principal, test_id: int, user_id: int | None, what: str, code: str
) -> Accepted:
    """A repeated erasure: the latest one of the same target (a failed one is requeued, and
    that restart audited as ``erasure.restarted``)."""
    job = repository.latest_job(session, principal.tenant_id, test_id, user_id)
    if job is None:
        raise NotFound(f"{what} not found.", code=code)
    if job.status == ErasureStatus.FAILED:
        error = job.error_code
        job.status, job.attempts, job.finished_at = ErasureStatus.QUEUED, 0, None
        job.error_code = job.error_message = None
        job.enqueued_at = utcnow()
        session.flush()
        details: dict[str, object] = {"jobId": job.id, "userId": user_id, "error": error}
        restarted = actions.ERASURE_RESTARTED
        _record(session, principal, restarted, actions.OBJECT_ERASURE, job.id, test_id, details)
        return Accepted(job, created=True)
    return Accepted(job, created=False)


def erase_candidate(session: Session, principal: Principal, test_id: int, user_id: int) -> Accepted:
    """Accepts the erasure of one candidate: from the commit on, nothing of it is readable."""
    tenant_id = principal.tenant_id
    what = f"Candidate {user_id} of test {test_id}"
    test = _test(session, tenant_id, test_id, lock=True)
    if test is None:
        return _again(session, principal, test_id, user_id, f"Test {test_id}", "test_not_found")
    _refuse_if_held(session, test)
    candidate = repository.candidate_row(session, test.id, user_id)
    if candidate is None:
        return _again(session, principal, test_id, user_id, what, "candidate_not_found")
    now = utcnow()
    events = repository.count_events(session, candidate_pk=candidate.id)
    # Queued jobs are locked too (and left queued): a worker's claim waits for this commit, so
    # an export either was running before it (and is expired here) or reads after the move.
    # A job whose candidateId filter names the candidate goes whatever its status (a queued
    # one too): its options would keep the name readable.
    statuses = (JobStatus.FINISHED, JobStatus.RUNNING)
    every = (*statuses, JobStatus.QUEUED)
    expiring = [
        job.id
        for job in repository.export_jobs_to_expire(session, test.id, every, lock=True)
        if (job.status in statuses and not _excludes(job.options, user_id))
        or _names(job.options, candidate.candidate_id)
    ]
    expired = repository.expire_exports(session, expiring, now, every)
    _record_expired(session, principal.client_id, expired, "erasure")
    _scrub_candidate_id(session, test.id, candidate.candidate_id)
    holding = repository.new_holding_test(session, tenant_id)
    repository.move_candidate(session, candidate.id, holding.id)
    return _accept(session, principal, test, test_id, holding.id, user_id, events, expired)


def erase_test(session: Session, principal: Principal, test_id: int) -> Accepted:
    """Accepts the erasure of a whole test: from the commit on, its ``testId`` is free."""
    tenant_id = principal.tenant_id
    test = _test(session, tenant_id, test_id, lock=True)
    if test is None:
        return _again(session, principal, test_id, None, f"Test {test_id}", "test_not_found")
    _refuse_if_held(session, test)
    now = utcnow()
    events = repository.count_events(session, test_pk=test.id)
    # Every export of the test, queued ones too (they would read the hidden rows by pk).
    statuses = (JobStatus.FINISHED, JobStatus.RUNNING, JobStatus.QUEUED)
    jobs = [job.id for job in repository.export_jobs_to_expire(session, test.id, statuses)]
    expired = repository.expire_exports(session, jobs, now, statuses)
    _record_expired(session, principal.client_id, expired, "erasure")
    repository.hide_test(session, test)
    return _accept(session, principal, test, test_id, test.id, None, events, expired)


def _accept(
    session: Session,
    principal: Principal,
    test: Test,
    test_id: int,
    holding_test_pk: int,
    user_id: int | None,
    events: int,
    expired: list[tuple[str, int, int]],
) -> Accepted:
    """The queued erasure job of a candidate (``user_id``) or a whole test, and its audit
    entry (the ids and counts only: the entry says what was erased, and by whom)."""
    now = utcnow()
    job = ErasureJob(
        id=str(uuid.uuid4()),
        tenant_id=principal.tenant_id,
        kind=ErasureKind.TEST if user_id is None else ErasureKind.CANDIDATE,
        test_external_id=test_id,
        user_id=user_id,
        test_pk=test.id,
        holding_test_pk=holding_test_pk,
        requested_by=principal.client_id,
        status=ErasureStatus.QUEUED,
        events_total=events,
        exports_expired=len(expired),
        created_at=now,
        enqueued_at=now,
    )
    repository.add_job(session, job)
    action, kind = (
        (actions.TEST_ERASED, actions.OBJECT_TEST)
        if user_id is None
        else (actions.CANDIDATE_ERASED, actions.OBJECT_CANDIDATE)
    )
    details = {"erasureId": job.id, "events": events, "exportsExpired": len(expired)}
    _record(session, principal, action, kind, test_id if user_id is None else user_id, test_id, details)
    return Accepted(job, created=True)


def get_job(session: Session, principal: Principal, job_id: str) -> ErasureJob:
    job = repository.get_job(session, principal.tenant_id, job_id)
    if job is None:
        raise NotFound(f"Erasure job {job_id} not found.", code="erasure_not_found")
    return job


def job_out(job: ErasureJob) -> ErasureJobOut:
    failed = job.status == ErasureStatus.FAILED
    return ErasureJobOut(
        jobId=job.id,
        kind="test" if job.kind == ErasureKind.TEST else "candidate",
        testId=job.test_external_id,
        userId=job.user_id,
        status=ErasureStatus(job.status),
        eventsTotal=job.events_total,
        eventsDeleted=job.events_deleted,
        filesDeleted=job.files_deleted,
        exportsExpired=job.exports_expired,
        created=format_dt(job.created_at) or "",
        started=format_dt(job.started_at),
        finished=format_dt(job.finished_at),
        error=ErasureError(code=job.error_code or "", message=job.error_message or "") if failed else None,
    )


# --- running an erasure -------------------------------------------------------------------------


class LeaseLost(Exception):
    """Another worker took the job over (our lease ran out): stop, it finishes the work."""


class _Lease:
    """Renews the job's lease whenever a third of it has passed (called between steps)."""

    def __init__(self, runtime: Runtime, job_id: str, owner: str) -> None:
        self.runtime = runtime
        self.job_id = job_id
        self.owner = owner
        self.seconds = runtime.settings.job_lease_seconds
        self.renewed = time.monotonic()

    def keep(self, *, force: bool = False, session: Session | None = None, **values: object) -> None:
        if not force and not values and time.monotonic() - self.renewed < self.seconds / 3:
            return
        expires = utcnow() + timedelta(seconds=self.seconds)
        if session is not None:
            ok = repository.renew(session, self.job_id, self.owner, expires, **values)
        else:
            with transaction(self.runtime.sessions) as own:
                ok = repository.renew(own, self.job_id, self.owner, expires, **values)
        if not ok:
            raise LeaseLost
        self.renewed = time.monotonic()


def run_job(runtime: Runtime, job_id: str) -> None:
    """Claim and run one erasure; safe to call any number of times for the same id."""
    settings = runtime.settings
    owner = leases.worker_id()
    with transaction(runtime.sessions) as session:
        if not repository.claim(
            session, job_id, owner, utcnow(), timedelta(seconds=settings.job_lease_seconds)
        ):
            return
        job = repository.load_job(session, job_id)
        assert job is not None
        attempt, holding_pk, test_pk = job.attempts, job.holding_test_pk, job.test_pk
    if attempt > settings.job_max_attempts:
        with transaction(runtime.sessions) as session:
            repository.settle(
                session,
                job_id,
                owner,
                status=ErasureStatus.FAILED,
                finished_at=utcnow(),
                error_code="too_many_attempts",
                error_message=f"gave up after {attempt - 1} attempts; repeat the DELETE to try again",
            )
        return
    lease = _Lease(runtime, job_id, owner)
    try:
        _erase(runtime, lease, holding_pk, test_pk)
        with transaction(runtime.sessions) as session:
            repository.delete_test(session, holding_pk)
            repository.settle(session, job_id, owner, status=ErasureStatus.FINISHED, finished_at=utcnow())
    except LeaseLost:
        log.info("erasure %s was taken over by another worker", job_id)
    except TRANSIENT as exc:
        _retry_or_fail(runtime, job_id, owner, attempt, exc)
    except Exception:
        log.exception("erasure %s failed", job_id)
        _settle_failed(runtime, job_id, owner, "internal_error", "The erasure failed unexpectedly.")


def _erase(runtime: Runtime, lease: _Lease, holding_pk: int, test_pk: int) -> None:
    """Deletes everything under the holding test, batch by batch; objects before rows."""
    batch = runtime.settings.erasure_batch_size
    while True:
        with transaction(runtime.sessions) as session:
            events = repository.event_batch(session, holding_pk, batch)
            files = repository.attachments_of(session, events) if events else []
        if not events:
            break
        for _, key in files:
            runtime.store.delete(key)  # idempotent: a missing object is fine
            lease.keep()
        with transaction(runtime.sessions) as session:
            repository.delete_attachments(session, [pk for pk, _ in files])
            deleted = repository.delete_events_without_files(session, events)
            lease.keep(
                session=session,
                events_deleted=ErasureJob.events_deleted + deleted,
                files_deleted=ErasureJob.files_deleted + len(files),
            )
    with transaction(runtime.sessions) as session:
        repository.delete_candidates(session, holding_pk)
        lease.keep(session=session, force=True)
    purge_expired_files(runtime, test_pk, keep=lease.keep)


def _retry_or_fail(runtime: Runtime, job_id: str, owner: str, attempt: int, exc: BaseException) -> None:
    code = "storage_unavailable" if isinstance(exc, StorageError) else "database_unavailable"
    message = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0][:500]
    if attempt >= runtime.settings.job_max_attempts:
        _settle_failed(runtime, job_id, owner, code, message)
        return
    delay = leases.backoff(RETRY_SCHEDULE, min(attempt, len(RETRY_SCHEDULE) - 1)) or 0.0
    try:
        with transaction(runtime.sessions) as session:
            released = repository.settle(
                session,
                job_id,
                owner,
                status=ErasureStatus.QUEUED,
                not_before=utcnow() + timedelta(seconds=delay),
                enqueued_at=None,
                error_code=code,
                error_message=message,
            )
    except TRANSIENT:
        log.warning("could not release erasure %s for retry; its lease will expire", job_id)
        return
    if released:
        log.warning("erasure %s attempt %d failed (%s); retrying in %.0fs", job_id, attempt, code, delay)
        runtime.queue.send(RUN_TASK, job_id, delay_ms=int(delay * 1000))


def _settle_failed(runtime: Runtime, job_id: str, owner: str, code: str, message: str) -> None:
    try:
        with transaction(runtime.sessions) as session:
            repository.settle(
                session,
                job_id,
                owner,
                status=ErasureStatus.FAILED,
                finished_at=utcnow(),
                error_code=code,
                error_message=message,
            )
    except TRANSIENT:
        log.warning("could not mark erasure %s failed; its lease will expire", job_id)


def dispatch_due(runtime: Runtime) -> int:
    """Re-send wake-ups for erasures whose message was lost or whose worker died."""
    now = utcnow()
    stale_before = now - timedelta(seconds=max(30, runtime.settings.job_lease_seconds))
    with transaction(runtime.sessions) as session:
        ids = repository.due_for_dispatch(session, now, stale_before)
    for job_id in ids:
        runtime.queue.send(RUN_TASK, job_id)
    return len(ids)


# --- export files: retention and deletion ----------------------------------------------------


def purge_expired_files(
    runtime: Runtime, test_pk: int | None = None, keep: Callable[[], None] | None = None
) -> int:
    """Deletes the stored files of expired export jobs (of one test, or all), then forgets them.

    Every file an attempt of the job wrote lives under ``exports/<tenant>/<job>/``."""
    purged = 0
    while True:
        with transaction(runtime.sessions) as session:
            rows = repository.expired_with_files(session, RETENTION_BATCH, test_pk)
        if not rows:
            return purged
        for job_id, tenant_id in rows:
            runtime.store.delete_prefix(f"exports/{tenant_id}/{job_id}/")
            if keep is not None:
                keep()
        with transaction(runtime.sessions) as session:
            repository.forget_files(session, [job_id for job_id, _ in rows])
        purged += len(rows)


def sweep_retention(runtime: Runtime) -> int:
    """Expires the export jobs that finished more than ``export_retention_days`` ago (not
    those of tests under legal hold) and deletes their files; returns how many expired."""
    days = runtime.settings.export_retention_days
    expired: list[tuple[str, int, int]] = []
    if days > 0:
        cutoff = utcnow() - timedelta(days=days)
        with transaction(runtime.sessions) as session:
            due = repository.exports_due(session, cutoff, RETENTION_BATCH)
            expired = repository.expire_exports(session, due, utcnow(), (JobStatus.FINISHED,))
            _record_expired(session, None, expired, "retention")
    purge_expired_files(runtime)
    return len(expired)
