"""Export jobs: order, status, cancel, and running one job under a renewed lease."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from examtrail.audit import actions
from examtrail.audit.service import Entry, become_writer, record, record_by, record_committed, record_many
from examtrail.core import leases
from examtrail.core.context import job_context
from examtrail.core.crypto import SecretUnavailableError
from examtrail.core.db import PgPool, snapshot, transaction, utcnow
from examtrail.core.errors import Conflict, NotFound, Unprocessable
from examtrail.core.metrics import metrics
from examtrail.core.schemas import is_ascii_digits
from examtrail.core.security import Principal
from examtrail.core.timeutil import format_dt
from examtrail.exports import repository
from examtrail.exports.formats import GzipWriter
from examtrail.exports.hooks import AfterCommit, CompletionHook, run_completion_hooks
from examtrail.exports.models import ExportJob, JobStatus
from examtrail.exports.pipeline import ExportInterrupted, Progress, write_export
from examtrail.exports.pseudonyms import Pseudonyms, secret_box, tenant_pseudonyms
from examtrail.exports.schemas import ExportError, ExportJobList, ExportJobOut
from examtrail.exports.spec import (
    Compression,
    ExportOptions,
    check_since_dialect,
    content_type,
    decode_cursor,
    encode_cursor,
    file_suffix,
    since_mark,
)
from examtrail.ingest import read_model
from examtrail.ingest.service import require_test
from examtrail.runtime import Runtime
from examtrail.signing import service as signing
from examtrail.signing.service import ExportClaims
from examtrail.storage.base import ObjectStore, ObjectWriter, StorageError, StoredObject

log = logging.getLogger(__name__)

RUN_TASK = "export.run"
# Export files: ``exports/<tenant id>/<job id>/<attempt>-<worker><suffix>``.
EXPORTS_PREFIX = "exports"


@dataclass(frozen=True, slots=True)
class Ordered:
    job: ExportJob
    created: bool


DEFAULT_OPTIONS = ExportOptions()


def order_export(
    session: Session,
    principal: Principal,
    test_id: int,
    options: ExportOptions = DEFAULT_OPTIONS,
    *,
    reuse: bool,
    retention_days: int,
) -> Ordered:
    """Schedule an export with ``options``. An export of the same test with the same options
    already queued or running is returned instead (one running only when the links it writes
    last as long as the caller's token); so is a finished one when nothing was ingested on the
    test since its snapshot, its attachment links last as long as the caller's token, and
    retention (``retention_days``; 0: files are kept for good) keeps its file at least that long too."""
    # Locking the test row makes "is one under way? else create" atomic across API processes.
    test = require_test(session, principal.tenant_id, test_id, lock=True)
    if options.since is not None:
        check_since_dialect(since_mark(options.since, test_id), session.get_bind().dialect.name)
    key = options.canonical()
    active = repository.active_job_for_test(session, principal.tenant_id, test.id, key)
    if active is not None and _joined(session, active, principal):
        _audit_order(session, principal, active, options, created=False)
        return Ordered(active, created=False)
    now = utcnow()
    done = repository.latest_finished_job(session, principal.tenant_id, test.id, key) if reuse else None
    if done is not None and _reusable(session, done, principal, retention_days):
        _audit_order(session, principal, done, options, created=False)
        return Ordered(done, created=False)
    job = ExportJob(
        id=str(uuid.uuid4()),
        tenant_id=principal.tenant_id,
        test_pk=test.id,
        test_external_id=test.external_id,
        requested_by=principal.client_id,
        status=JobStatus.QUEUED,
        created_at=now,
        enqueued_at=now,
        links_expire_at=principal.expires_at,
        options=key,
        format=options.format.value,
        compression=options.compression.value,
    )
    repository.add_job(session, job)
    _audit_order(session, principal, job, options, created=True)
    return Ordered(job, created=True)


def _audit_order(
    session: Session, principal: Principal, job: ExportJob, options: ExportOptions, *, created: bool
) -> None:
    # The options that differ from the defaults; an incremental cursor is long and says nothing.
    public = options.public()
    defaults = DEFAULT_OPTIONS.public()
    chosen = {k: v for k, v in public.items() if v != defaults[k] and k != "since"}
    if options.since is not None:
        chosen["incremental"] = True
    # The log outlives erasure (it is never changed): a candidateId names a person, so the
    # entry says how many the filter had, never which (userIds are opaque numbers: kept).
    if chosen.pop("candidateId", None):
        chosen["candidateIdCount"] = len(options.candidateId)
    record(
        session,
        tenant_id=principal.tenant_id,
        client_id=principal.client_id,
        action=actions.EXPORT_ORDERED,
        object_type=actions.OBJECT_EXPORT,
        object_id=job.id,
        test_id=job.test_external_id,
        details={"jobId": job.id, "created": created, "status": job.status, "options": chosen},
    )


def links(job: ExportJob, url_expires_at: datetime | None) -> bool:
    """Whether :func:`job_status` hands out a download link for ``job``."""
    return job.status == JobStatus.FINISHED and bool(job.storage_key) and url_expires_at is not None


def issued_status(session: Session, principal: Principal, job: ExportJob, store: ObjectStore) -> ExportJobOut:
    """``job``'s status for ``principal``; a download link in it is audited (its entry in the
    session's transaction, which the caller commits before answering)."""
    if links(job, principal.expires_at):
        become_writer(session)
        record_links(session, principal, [job])
    return job_status(job, store, principal.expires_at)


def record_links(session: Session, principal: Principal, jobs: Sequence[ExportJob]) -> None:
    """The audit entries of the download links of ``jobs`` handed to ``principal`` (uncommitted)."""
    record_many(session, [_link_issued(principal, job) for job in jobs])


def _link_issued(principal: Principal, job: ExportJob) -> Entry:
    expires = principal.expires_at
    return Entry(
        principal.tenant_id,
        principal.client_id,
        actions.EXPORT_LINK_ISSUED,
        actions.OBJECT_EXPORT,
        job.id,
        job.test_external_id,
        {"jobId": job.id, "expires": format_dt(expires)},
    )


async def issued_status_async(
    pool: PgPool, principal: Principal, test_id: int, job_id: str, store: ObjectStore
) -> ExportJobOut:
    """The status call on plain psycopg (PostgreSQL): the job read with one SELECT; when the
    answer carries a download link, its audit entry is committed before the link is signed."""
    job = await pool.run(partial(repository.read_job_pg, tenant_id=principal.tenant_id, job_id=job_id))
    job = _found(job, test_id, job_id)
    if links(job, principal.expires_at):
        await record_committed(pool, _link_issued(principal, job))
    return job_status(job, store, principal.expires_at)


def _joined(session: Session, job: ExportJob, principal: Principal) -> bool:
    """Whether the caller may share the queued or running ``job``: the attachment links its
    file holds must stay valid as long as the caller's token (and so its download link)."""
    if job.links_expire_at >= principal.expires_at:
        return True
    # A file without evidence-file links has nothing that expires before the caller's token
    # (files are immutable; only an erasure removes them, and it expires this job too).
    if job.status == JobStatus.RUNNING:
        if read_model.has_files(session.connection(), job.test_pk):
            return False
        # A file uploaded before the worker opens its snapshot would be linked with the old
        # expiry: the raised one makes the worker write the file again then (``_publish``).
        repository.raise_links(session, job.id, principal.expires_at)
        session.refresh(job)
        return True
    # A queued job's links are not written yet: the worker reads ``links_expire_at`` when it
    # claims the job, so raise it, unless a worker claimed it meanwhile (then it is too late).
    if job.status == JobStatus.QUEUED and repository.extend_links(session, job.id, principal.expires_at):
        session.refresh(job)
        return True
    return False


def _reusable(session: Session, job: ExportJob, principal: Principal, retention_days: int) -> bool:
    """Whether the finished ``job`` may be handed out again to ``principal``: its file and
    every link in it must outlive the download link, which lasts as long as the token."""
    if not job.next_since or not job.storage_key or not job.signature or job.finished_at is None:
        # (Unsigned: finished before exports were signed; a new one is signed.)
        return False
    if job.files_written and job.links_expire_at < principal.expires_at:
        return False
    if retention_days > 0 and job.finished_at + timedelta(days=retention_days) <= principal.expires_at:
        # The retention sweep would delete the file while the new link is still good.
        return False
    try:
        _, mark = decode_cursor(job.next_since)
    except ValueError:
        return False
    return not read_model.changed_since(session.connection(), job.test_pk, mark)


@dataclass(frozen=True, slots=True)
class JobPage:
    """A page of the job list, read; its links are audited by the caller before they leave."""

    jobs: list[ExportJob]
    next_cursor: str | None

    def out(self, principal: Principal, store: ObjectStore) -> ExportJobList:
        return ExportJobList(
            jobs=[job_status(job, store, principal.expires_at) for job in self.jobs],
            nextCursor=self.next_cursor,
        )

    def linked(self, principal: Principal) -> list[ExportJob]:
        """The jobs whose status carries a download link (each gets an audit entry)."""
        return [job for job in self.jobs if links(job, principal.expires_at)]


def read_job_page(
    session: Session,
    principal: Principal,
    test_id: int,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> JobPage:
    """The test's jobs of the caller's tenant, newest first, ``limit`` at a time (read only)."""
    test = require_test(session, principal.tenant_id, test_id)
    after = None
    if cursor is not None:
        after = repository.decode_list_cursor(cursor)
        if after is None:
            raise Unprocessable(
                "The request is not valid.",
                details=[
                    {"field": "cursor", "message": "not a cursor from nextCursor", "type": "value_error"}
                ],
            )
    jobs = repository.list_jobs(session, principal.tenant_id, test.id, status, after, limit + 1)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return JobPage(jobs, repository.encode_list_cursor(jobs[-1]) if more and jobs else None)


def get_job(session: Session, principal: Principal, test_id: int, job_id: str) -> ExportJob:
    return _found(repository.get_job(session, principal.tenant_id, job_id), test_id, job_id)


def _found(job: ExportJob | None, test_id: int, job_id: str) -> ExportJob:
    if job is None or job.test_external_id != test_id:
        raise NotFound(f"Export job {job_id} not found for test {test_id}.", code="job_not_found")
    return job


def cancel_export(session: Session, principal: Principal, test_id: int, job_id: str) -> ExportJob:
    job = get_job(session, principal, test_id, job_id)
    if not repository.cancel(session, principal.tenant_id, job_id, utcnow()):
        raise Conflict(f"Export job {job_id} is already {job.status}.", code="job_not_cancellable")
    details = {"jobId": job.id, "was": job.status}
    record_by(
        session,
        principal,
        actions.EXPORT_CANCELLED,
        actions.OBJECT_EXPORT,
        job.id,
        job.test_external_id,
        details,
    )
    session.refresh(job)
    return job


def job_of_key(session: Session, key: str) -> ExportJob | None:
    """The export job whose published file is stored at ``key``, if any."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != EXPORTS_PREFIX or not is_ascii_digits(parts[1]):
        return None
    job = repository.get_job(session, int(parts[1]), parts[2])
    return job if job is not None and job.storage_key == key else None


def download_name(job: ExportJob) -> str:
    return f"test-{job.test_external_id}-events-{job.id}{file_suffix(job.format, job.compression)}"


@lru_cache(maxsize=256)
def _public_options(stored: str | None) -> dict[str, Any]:
    """A stored options text as the status shows it: parsed and validated once per distinct text
    (a polled status repeats it; each answer gets its own copy of the top-level dict)."""
    return ExportOptions.from_stored(stored or "").public()


def job_status(job: ExportJob, store: ObjectStore, url_expires_at: datetime | None) -> ExportJobOut:
    """The status body; the download URL expires at ``url_expires_at`` (the caller's token)."""
    url = None
    ctype = content_type(job.format, job.compression)
    if job.status == JobStatus.FINISHED and job.storage_key and url_expires_at is not None:
        url = store.presigned_get_url(
            job.storage_key,
            expires_at=url_expires_at,
            filename=download_name(job),
            content_type=ctype,
        )
    failed = job.status == JobStatus.FAILED and job.error_code
    finished = job.status == JobStatus.FINISHED
    return ExportJobOut(
        jobId=job.id,
        testId=job.test_external_id,
        status=JobStatus(job.status),
        progress=job.progress,
        candidatesTotal=job.candidates_total,
        candidatesDone=job.candidates_done,
        eventsWritten=job.events_written,
        created=format_dt(job.created_at) or "",
        started=format_dt(job.started_at),
        finished=format_dt(job.finished_at),
        downloadUrl=url,
        downloadUrlExpires=format_dt(url_expires_at) if url else None,
        attachmentLinksExpire=format_dt(job.links_expire_at) if finished and job.files_written else None,
        fileSize=job.file_size if job.status == JobStatus.FINISHED else None,
        sha256=job.sha256 if job.status == JobStatus.FINISHED else None,
        error=ExportError(code=job.error_code or "", message=job.error_message or "") if failed else None,
        options=dict(_public_options(job.options)),
        format=job.format,
        compression=job.compression,
        contentType=ctype,
        nextSince=job.next_since if finished else None,
        signature=job.signature if finished else None,
    )


def export_claims(job: ExportJob) -> ExportClaims:
    """What a finished job's signature covers, exactly as its status shows it."""
    assert job.file_size is not None and job.sha256 is not None
    return ExportClaims(
        jobId=job.id,
        testId=job.test_external_id,
        tenant=job.tenant_id,
        created=format_dt(job.created_at) or "",
        options=dict(_public_options(job.options)),
        fileSize=job.file_size,
        sha256=job.sha256,
    )


def describe_job(
    session: Session, store: ObjectStore, job_id: str, url_expires_at: datetime | None
) -> ExportJobOut | None:
    """The status of job ``job_id`` (any tenant: for internal callers such as webhooks),
    with a download URL valid until ``url_expires_at``; None when the job is gone."""
    job = repository.load_job(session, job_id)
    return None if job is None else job_status(job, store, url_expires_at)


# --- running a job --------------------------------------------------------------------

# Outages worth retrying; a ProgrammingError or DataError is a bug and fails at once.
TRANSIENT = (StorageError, OperationalError, InterfaceError, ConnectionError, TimeoutError)


class _Heartbeat:
    """Renews the lease and publishes progress; stops the export if the job is lost."""

    def __init__(self, runtime: Runtime, job_id: str, owner: str, progress: Progress) -> None:
        self.runtime = runtime
        self.job_id = job_id
        self.owner = owner
        self.progress = progress
        self.lost = False
        # The process is shutting down and the job did not end within the grace period.
        self.released = False
        lease = runtime.settings.job_lease_seconds
        self.interval = min(1.0, lease / 3)
        # After a shutdown starts, time left to finish before handing the job back: well
        # within the lease, so another worker may take it at once and nobody waits for expiry.
        self.grace = min(SHUTDOWN_GRACE_SECONDS, lease / 2)
        self._stopping_since: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    def beat(self) -> bool:
        lease = timedelta(seconds=self.runtime.settings.job_lease_seconds)
        p = self.progress
        with transaction(self.runtime.sessions) as session:
            return repository.renew(
                session,
                self.job_id,
                self.owner,
                utcnow() + lease,
                total=p.total,
                done=p.done,
                events=p.events,
            )

    def _shutdown_due(self) -> bool:
        if not self.runtime.stopping.is_set():
            return False
        now = time.monotonic()
        if self._stopping_since is None:
            self._stopping_since = now
            log.info("shutting down: export %s gets %gs to finish", self.job_id, self.grace)
        return now - self._stopping_since >= self.grace

    def _run(self) -> None:
        while not self._done.wait(
            min(self.interval, 0.2) if self.runtime.stopping.is_set() else self.interval
        ):
            if self._shutdown_due():
                self.released = True
                self.progress.stop.set()
                return
            try:
                if not self.beat():
                    self.lost = True
                    self.progress.stop.set()
                    return
            except Exception:
                # A missed beat is fine; the lease is several beats long.
                log.warning("lease renewal for %s failed", self.job_id, exc_info=True)


# A wake-up reaching a stopping worker goes back to the queue this much later.
STOPPING_RESEND_MS = 500
# At most this long (and half the lease) a shutting-down worker lets a running export finish.
SHUTDOWN_GRACE_SECONDS = 10.0

# Seconds before retrying after the n-th failed attempt (index n); the last entry repeats.
RETRY_SCHEDULE = (0, 2, 4, 8, 16, 32, 60)


def _backoff(attempt: int) -> timedelta:
    delay = leases.backoff(RETRY_SCHEDULE, min(attempt, len(RETRY_SCHEDULE) - 1))
    return timedelta(seconds=delay or 0)


def run_job(runtime: Runtime, job_id: str, hooks: Sequence[CompletionHook] = ()) -> None:
    """Claim and run one export job; safe to call any number of times for the same id.

    ``hooks`` run in the transaction that ends the job (see ``exports.hooks``).
    """
    if runtime.stopping.is_set():
        # This worker is shutting down: pass the wake-up on to another one (a little
        # later, so that it does not bounce within this process while its threads stop).
        runtime.queue.send(RUN_TASK, job_id, delay_ms=STOPPING_RESEND_MS)
        return
    with job_context(job_id=job_id):
        _run_job(runtime, job_id, hooks)


def _run_job(runtime: Runtime, job_id: str, hooks: Sequence[CompletionHook]) -> None:
    settings = runtime.settings
    owner = leases.worker_id()
    now = utcnow()
    with transaction(runtime.sessions) as session:
        if not repository.claim(session, job_id, owner, now, timedelta(seconds=settings.job_lease_seconds)):
            return
        job = repository.load_job(session, job_id)
        assert job is not None
        attempt, test_pk, tenant_id = job.attempts, job.test_pk, job.tenant_id
        if job.links_expire_at < now + timedelta(seconds=60):
            # A retry after the ordering token expired: links in the file must still work.
            # Stored, so that joining and reuse judge the links this attempt writes.
            job.links_expire_at = now + timedelta(seconds=settings.token_ttl_seconds)
        links_expire_at = job.links_expire_at
        test_id, fmt, compression = job.test_external_id, job.format, job.compression
        stored_options = job.options
    if attempt > settings.job_max_attempts:
        _complete_failed(
            runtime, hooks, job_id, owner, "too_many_attempts", f"gave up after {attempt - 1} attempts"
        )
        return

    with job_context(job_id=job_id, test_id=test_id, tenant=tenant_id):
        _attempt(
            runtime,
            hooks,
            _Claimed(
                job_id,
                owner,
                attempt,
                tenant_id,
                test_pk,
                test_id,
                fmt,
                compression,
                links_expire_at,
                stored_options,
            ),
        )


@dataclass(frozen=True, slots=True)
class _Claimed:
    job_id: str
    owner: str
    attempt: int
    tenant_id: int
    test_pk: int
    test_id: int
    fmt: str
    compression: str
    links_expire_at: datetime
    stored_options: str


def _attempt(runtime: Runtime, hooks: Sequence[CompletionHook], claimed: _Claimed) -> None:
    """One attempt at writing the export of a claimed job (inside its log context)."""
    job_id, owner, attempt, tenant_id = claimed.job_id, claimed.owner, claimed.attempt, claimed.tenant_id
    test_pk, test_id, fmt, compression = claimed.test_pk, claimed.test_id, claimed.fmt, claimed.compression
    links_expire_at, stored_options = claimed.links_expire_at, claimed.stored_options
    suffix = file_suffix(fmt, compression)
    key = f"{EXPORTS_PREFIX}/{tenant_id}/{job_id}/{attempt}-{owner.rsplit(':', 1)[-1]}{suffix}"
    progress = Progress()
    writer: ObjectWriter | None = None
    committed = False
    next_since = ""

    def discard() -> None:
        # Before commit: abort the upload. After it (e.g. the read transaction failed
        # to close): the object exists but is not ours to publish, so delete it.
        if writer is not None and not committed:
            _quietly(writer.abort)
        else:
            _quietly(lambda: runtime.store.delete(key))

    heartbeat = _Heartbeat(runtime, job_id, owner, progress)
    started = time.monotonic()
    log.info(
        "export %s started (attempt %d, %s)",
        job_id,
        attempt,
        fmt,
        extra={"attempt": attempt, "format": fmt, "compression": compression},
    )
    try:
        options = ExportOptions.from_stored(stored_options)
        flt = options.event_filter(test_id)
        pseudonyms = _pseudonyms(runtime, tenant_id) if options.pseudonymize else None
        with heartbeat:
            writer = runtime.store.open_writer(key, content_type=content_type(fmt, compression))
            if compression == Compression.GZIP:
                writer = GzipWriter(writer)
            with snapshot(runtime.engine) as connection:
                # First, so that it is the mark of the very snapshot the file is read from.
                next_since = encode_cursor(test_id, read_model.change_mark(connection, test_pk))
                stored = write_export(
                    connection,
                    test_pk,
                    writer,
                    runtime.store,
                    created=utcnow(),
                    links_expire_at=links_expire_at,
                    progress=progress,
                    flt=flt,
                    fmt=fmt,
                    pseudonyms=pseudonyms,
                )
                committed = True
            if heartbeat.lost:
                raise ExportInterrupted
    except ExportInterrupted:
        discard()
        if heartbeat.released:
            _release(runtime, job_id, owner, time.monotonic() - started, progress)
            return
        _ended(job_id, "interrupted", time.monotonic() - started, progress)
        log.info("export %s was cancelled or taken over; discarding attempt %d", job_id, attempt)
        return
    except SecretUnavailableError:
        # The service's secret key changed: pseudonyms would change with a new key, never guess.
        log.error("export %s: the tenant's pseudonym key cannot be opened", job_id)
        discard()
        _ended(job_id, "failed", time.monotonic() - started, progress, error="pseudonym_key_unavailable")
        _complete_failed(
            runtime,
            hooks,
            job_id,
            owner,
            "pseudonym_key_unavailable",
            "The tenant's pseudonym key cannot be decrypted with the service's secret key.",
        )
        return
    except TRANSIENT as exc:
        discard()
        code = "storage_unavailable" if isinstance(exc, StorageError) else "database_unavailable"
        _ended(job_id, "retried", time.monotonic() - started, progress, error=code)
        _retry_or_fail(runtime, hooks, job_id, owner, attempt, code, _describe(exc))
        return
    except Exception:
        log.exception("export %s failed", job_id)
        discard()
        _ended(job_id, "failed", time.monotonic() - started, progress, error="internal_error")
        _complete_failed(runtime, hooks, job_id, owner, "internal_error", "The export failed unexpectedly.")
        return

    if _publish(runtime, hooks, job_id, owner, key, stored, progress, next_since, links_expire_at):
        seconds = time.monotonic() - started
        m = metrics()
        m.export_duration.observe(seconds)
        m.export_bytes.observe(stored.size)
        m.export_events.observe(progress.events)
        _ended(job_id, "finished", seconds, progress, size=stored.size)


def _ended(
    job_id: str, outcome: str, seconds: float, progress: Progress, *, size: int | None = None, error: str = ""
) -> None:
    """The export's closing log line (its duration, events and bytes) and outcome count."""
    metrics().exports.labels(outcome).inc()
    extra: dict[str, object] = {
        "outcome": outcome,
        "duration_ms": round(seconds * 1000, 1),
        "events": progress.events,
        "candidates": progress.done,
    }
    if size is not None:
        extra["bytes"] = size
    if error:
        extra["error"] = error
    log.info(
        "export %s %s in %.2fs (%d events%s)",
        job_id,
        outcome,
        seconds,
        progress.events,
        f", {size} bytes" if size is not None else "",
        extra=extra,
    )


def _release(runtime: Runtime, job_id: str, owner: str, seconds: float, progress: Progress) -> None:
    """Shutting down: hand the job back so another worker starts it at once."""
    try:
        with transaction(runtime.sessions) as session:
            released = repository.release(session, job_id, owner)
    except TRANSIENT:
        log.warning("could not hand export %s back; its lease will expire", job_id)
        return
    if released:
        _ended(job_id, "released", seconds, progress)
        runtime.queue.send(RUN_TASK, job_id)


def _pseudonyms(runtime: Runtime, tenant_id: int) -> Pseudonyms:
    with transaction(runtime.sessions) as session:
        return tenant_pseudonyms(session, secret_box(runtime.settings.secret_keyring()), tenant_id)


def _publish(
    runtime: Runtime,
    hooks: Sequence[CompletionHook],
    job_id: str,
    owner: str,
    key: str,
    stored: StoredObject,
    progress: Progress,
    next_since: str | None,
    links_expire_at: datetime,
) -> bool:
    """Record the job as finished; False when it was not (cancelled, taken over, unknown, or
    handed back to be written again because its links end before a joining caller's token)."""
    values = {
        "next_since": next_since or None,
        "files_written": progress.files,
        "storage_key": key,
        "file_size": stored.size,
        "sha256": stored.sha256,
        "finished_at": utcnow(),
        "candidates_total": progress.total,
        "candidates_done": progress.done,
        "events_written": progress.events,
        "error_code": None,
        "error_message": None,
    }
    try:
        # Before the transaction: on a fresh database this creates the key (its own commit).
        signer = signing.signer(runtime.sessions, runtime.settings)
    except SecretUnavailableError:
        # No configured secret key opens the signing key (a secret dropped before
        # `examtrail keys reencrypt`): an unsigned file is never published.
        log.error("export %s: the signing key cannot be decrypted with the configured secret keys", job_id)
        _quietly(lambda: runtime.store.delete(key))
        _complete_failed(
            runtime,
            hooks,
            job_id,
            owner,
            "signing_unavailable",
            "The export signing key cannot be decrypted with the service's secret keys.",
        )
        return False
    except TRANSIENT:
        log.warning(
            "could not load the signing key for export %s; its lease will expire", job_id, exc_info=True
        )
        _quietly(lambda: runtime.store.delete(key))
        return False
    links_until = links_expire_at if progress.files else None
    rewrite = False
    callbacks: list[AfterCommit] = []
    try:
        with transaction(runtime.sessions) as session:
            if repository.finish(session, job_id, owner, values, links_until=links_until):
                job = repository.load_job(session, job_id)
                assert job is not None
                # One Ed25519 signature per job over the hash the writer already computed.
                job.signature = signer.sign(export_claims(job))
                session.flush()
                callbacks = run_completion_hooks(hooks, runtime, session, job)
            elif links_until is None or not repository.release(
                session, job_id, owner, links_after=links_until
            ):
                raise ExportInterrupted
            else:
                rewrite = True
    except ExportInterrupted:
        # Cancelled or taken over between the last byte and now: the file is not ours to publish.
        _quietly(lambda: runtime.store.delete(key))
        return False
    except TRANSIENT:
        # Whether the commit landed is unknown. Keep the file: if it did not, the lease
        # expires, a later attempt writes a new file and removes this one.
        log.warning("could not record export %s as finished; its lease will expire", job_id, exc_info=True)
        return False
    if rewrite:
        # A caller joined while the test had no files; one was uploaded before the snapshot.
        log.info(
            "export %s: its attachment links end before a joining caller's token; writing it again", job_id
        )
        _quietly(lambda: runtime.store.delete(key))
        runtime.queue.send(RUN_TASK, job_id)
        return False
    _after_commit(callbacks)
    # Files of earlier attempts that died after uploading are never referenced; drop them.
    _quietly(lambda: runtime.store.delete_prefix(key.rsplit("/", 1)[0] + "/", keep=key))
    return True


def _retry_or_fail(
    runtime: Runtime,
    hooks: Sequence[CompletionHook],
    job_id: str,
    owner: str,
    attempt: int,
    code: str,
    message: str,
) -> None:
    if attempt and attempt < runtime.settings.job_max_attempts:
        delay = _backoff(attempt)
        try:
            with transaction(runtime.sessions) as session:
                released = repository.release_for_retry(
                    session, job_id, owner, utcnow() + delay, code, message
                )
        except TRANSIENT:
            # The database is down too: the lease will expire and the sweeper retries the job.
            log.warning("could not release export %s for retry; its lease will expire", job_id)
            return
        if released:
            log.warning("export %s attempt %d failed (%s); retrying in %s", job_id, attempt, code, delay)
            runtime.queue.send(RUN_TASK, job_id, delay_ms=int(delay.total_seconds() * 1000))
        return
    _complete_failed(runtime, hooks, job_id, owner, code, message)


def _complete_failed(
    runtime: Runtime,
    hooks: Sequence[CompletionHook],
    job_id: str,
    owner: str | None,
    code: str,
    message: str,
) -> None:
    try:
        with transaction(runtime.sessions) as session:
            if not repository.fail(session, job_id, owner, utcnow(), code, message):
                return
            job = repository.load_job(session, job_id)
            assert job is not None
            callbacks = run_completion_hooks(hooks, runtime, session, job)
    except TRANSIENT:
        log.warning("could not mark export %s failed; its lease will expire", job_id)
        return
    _after_commit(callbacks)


def _after_commit(callbacks: list[AfterCommit]) -> None:
    for callback in callbacks:
        _quietly(callback)


def _quietly(action: object) -> None:
    try:
        action()  # type: ignore[operator]
    except Exception:
        log.warning("cleanup step failed", exc_info=True)


def _describe(exc: BaseException) -> str:
    # Driver messages can be long and may echo SQL; keep the first line only.
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def status_counts(session: Session) -> dict[str, int]:
    """Export jobs per status, every status present (zero when none)."""
    counts = {str(status): 0 for status in JobStatus}
    counts.update(repository.status_counts(session))
    return counts


def oldest_due_since(session: Session, now: datetime) -> datetime | None:
    return repository.oldest_due_since(session, now)


def dispatch_due(runtime: Runtime) -> int:
    """Re-send wake-ups for jobs whose message was lost or whose worker died."""
    now = utcnow()
    stale_before = now - timedelta(seconds=max(30, runtime.settings.job_lease_seconds))
    with transaction(runtime.sessions) as session:
        ids = repository.due_for_dispatch(session, now, stale_before)
    for job_id in ids:
        runtime.queue.send(RUN_TASK, job_id)
    return len(ids)
