"""SQL for export jobs: ordering, leases (``examtrail.core.leases``) and completion.

The test's data is read through ``examtrail.ingest.read_model``, never from here.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import sql as pgsql
from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import manager_of_class

from examtrail.core import leases
from examtrail.core.db import UTCDateTime, update_rows, utcnow
from examtrail.exports.models import ACTIVE_STATUSES, ExportJob, JobStatus, PseudonymKey

if TYPE_CHECKING:
    from collections.abc import Callable


def get_job(session: Session, tenant_id: int, job_id: str) -> ExportJob | None:
    return session.scalars(
        select(ExportJob).where(ExportJob.id == job_id, ExportJob.tenant_id == tenant_id)
    ).one_or_none()


# The status call's read (PostgreSQL, plain psycopg on the event loop): one SELECT of the job's
# columns, tenant-scoped; the columns are named as the model's attributes.
_JOB_TABLE = cast(Table, ExportJob.__table__)
_JOB_COLUMNS = tuple(column.name for column in _JOB_TABLE.c)
# Stored naive UTC (``UTCDateTime``): made aware again, as the engine's result processing does.
_UTC_COLUMNS = frozenset(column.name for column in _JOB_TABLE.c if isinstance(column.type, UTCDateTime))
_NEW_JOB = cast("Callable[[], ExportJob]", manager_of_class(ExportJob).new_instance)
_PG_JOB_ROW = (
    pgsql.SQL("SELECT {} FROM export_jobs WHERE id = %s AND tenant_id = %s")
    .format(pgsql.SQL(", ").join(map(pgsql.Identifier, _JOB_COLUMNS)))
    .as_string()
)


async def read_job_pg(
    connection: psycopg.AsyncConnection[Any], tenant_id: int, job_id: str
) -> ExportJob | None:
    """The tenant's job ``job_id``, if any, as a transient :class:`ExportJob` (in no session)."""
    cursor = await connection.execute(_PG_JOB_ROW, (job_id, tenant_id))
    row = await cursor.fetchone()
    if row is None:
        return None
    values = dict(zip(_JOB_COLUMNS, row, strict=True))
    for name in _UTC_COLUMNS:
        value = values[name]
        if value is not None:
            values[name] = value.replace(tzinfo=UTC)
    # Made as the ORM's loader makes a loaded instance (its state, then its attribute dict), not
    # through the constructor: ``ExportJob(**values)`` sets each column through its instrumented
    # attribute, ~15x the cost of the whole conversion. Still transient: in no session.
    job = _NEW_JOB()
    job.__dict__.update(values)
    return job


def load_job(session: Session, job_id: str) -> ExportJob | None:
    return session.get(ExportJob, job_id, populate_existing=True)


def active_job_for_test(
    session: Session, tenant_id: int, test_pk: int, options: str | None = None
) -> ExportJob | None:
    """The newest queued or running job of the test (with exactly these ``options``)."""
    stmt = select(ExportJob).where(
        ExportJob.tenant_id == tenant_id,
        ExportJob.test_pk == test_pk,
        ExportJob.status.in_(ACTIVE_STATUSES),
    )
    if options is not None:
        stmt = stmt.where(ExportJob.options == options)
    return session.scalars(stmt.order_by(ExportJob.created_at.desc()).limit(1)).one_or_none()


def latest_finished_job(session: Session, tenant_id: int, test_pk: int, options: str) -> ExportJob | None:
    return session.scalars(
        select(ExportJob)
        .where(
            ExportJob.tenant_id == tenant_id,
            ExportJob.test_pk == test_pk,
            ExportJob.status == JobStatus.FINISHED,
            ExportJob.options == options,
        )
        .order_by(ExportJob.finished_at.desc())
        .limit(1)
    ).one_or_none()


def list_jobs(
    session: Session,
    tenant_id: int,
    test_pk: int,
    status: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[ExportJob]:
    """Newest first, by ``(created_at, id)``; ``after`` is the last row of the previous page."""
    stmt = select(ExportJob).where(ExportJob.tenant_id == tenant_id, ExportJob.test_pk == test_pk)
    if status is not None:
        stmt = stmt.where(ExportJob.status == status)
    if after is not None:
        created, job_id = after
        stmt = stmt.where(
            or_(ExportJob.created_at < created, and_(ExportJob.created_at == created, ExportJob.id < job_id))
        )
    return list(session.scalars(stmt.order_by(ExportJob.created_at.desc(), ExportJob.id.desc()).limit(limit)))


def encode_list_cursor(job: ExportJob) -> str:
    raw = f"{job.created_at.astimezone(UTC).isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_list_cursor(cursor: str) -> tuple[datetime, str] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        when = datetime.fromisoformat(created)
        # Converted here, not by the column type: year 1 at +01:00 is out of range in UTC.
        utc = when.astimezone(UTC) if when.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None
    # A job id never holds a NUL, and PostgreSQL refuses one in a text parameter (a 500).
    if utc is None or not job_id or "\x00" in job_id:
        return None
    return utc, job_id


def jobs_for_test(session: Session, tenant_id: int, test_pk: int) -> list[ExportJob]:
    return list(
        session.scalars(
            select(ExportJob)
            .where(ExportJob.tenant_id == tenant_id, ExportJob.test_pk == test_pk)
            .order_by(ExportJob.created_at.desc())
        )
    )


def add_job(session: Session, job: ExportJob) -> None:
    session.add(job)
    session.flush()


LEASE = leases.LeaseSpec(
    ExportJob, waiting=JobStatus.QUEUED, leased=JobStatus.RUNNING, due=ExportJob.not_before
)


def claim(session: Session, job_id: str, owner: str, now: datetime, lease: timedelta) -> bool:
    """Take the job if it is waiting, or if its worker's lease ran out."""
    return leases.claim(
        session,
        LEASE,
        job_id,
        owner,
        now,
        lease,
        attempts=ExportJob.attempts + 1,
        started_at=func.coalesce(ExportJob.started_at, now),
        candidates_done=0,
        events_written=0,
    )


def renew(
    session: Session, job_id: str, owner: str, expires: datetime, *, total: int, done: int, events: int
) -> bool:
    """Extend the lease and record progress; False means the job is no longer ours."""
    return leases.renew(
        session,
        LEASE,
        job_id,
        owner,
        expires,
        candidates_total=total,
        candidates_done=done,
        events_written=events,
    )


def release(session: Session, job_id: str, owner: str, *, links_after: datetime | None = None) -> bool:
    """Hand the job back: queued and due at once, the attempt not counted (the worker stopped
    it at shutdown, or, with ``links_after``, the links it wrote expire at ``links_after`` and
    a joining caller needs them to last longer; nothing failed)."""
    return leases.settle(
        session,
        LEASE,
        job_id,
        owner,
        only_if=None if links_after is None else ExportJob.links_expire_at > links_after,
        status=JobStatus.QUEUED,
        not_before=None,
        enqueued_at=None,
        attempts=ExportJob.attempts - 1,
        candidates_done=0,
        events_written=0,
    )


def status_counts(session: Session) -> dict[str, int]:
    """Jobs per status (for the metrics scrape; the status index answers it)."""
    rows = session.execute(select(ExportJob.status, func.count()).group_by(ExportJob.status)).all()
    return {str(status): int(count) for status, count in rows}


def oldest_due_since(session: Session, now: datetime) -> datetime | None:
    """Since when the longest-waiting due queued job has been waiting (None: none waits)."""
    since = func.coalesce(ExportJob.not_before, ExportJob.created_at)
    return session.scalar(
        select(func.min(since)).where(
            ExportJob.status == JobStatus.QUEUED,
            or_(ExportJob.not_before.is_(None), ExportJob.not_before <= now),
        )
    )


def extend_links(session: Session, job_id: str, expires_at: datetime) -> bool:
    """Raise a queued job's ``links_expire_at`` (the expiry of the links its worker will write)
    to ``expires_at``; False when the job is no longer queued (a worker claimed it)."""
    queued = and_(ExportJob.id == job_id, ExportJob.status == JobStatus.QUEUED)
    return update_rows(session, ExportJob, queued, links_expire_at=expires_at) == 1


def raise_links(session: Session, job_id: str, expires_at: datetime) -> None:
    """Raise a queued or running job's ``links_expire_at`` to ``expires_at`` (never lower it):
    a caller joins a running export of a test without files. Should its worker write links
    after all (a file uploaded before its snapshot), :func:`finish` refuses the file."""
    active = and_(
        ExportJob.id == job_id,
        ExportJob.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
        ExportJob.links_expire_at < expires_at,
    )
    update_rows(session, ExportJob, active, links_expire_at=expires_at)


def finish(
    session: Session, job_id: str, owner: str, values: dict[str, Any], *, links_until: datetime | None
) -> bool:
    """Record the job as finished; False when the lease was lost, or when the file holds links
    that expire at ``links_until`` (None: it holds none) and a caller raised the job's
    ``links_expire_at`` above that meanwhile (:func:`raise_links`)."""
    covered = None if links_until is None else ExportJob.links_expire_at <= links_until
    return leases.settle(session, LEASE, job_id, owner, only_if=covered, status=JobStatus.FINISHED, **values)


def release_for_retry(
    session: Session, job_id: str, owner: str, not_before: datetime, code: str, message: str
) -> bool:
    return leases.settle(
        session,
        LEASE,
        job_id,
        owner,
        status=JobStatus.QUEUED,
        not_before=not_before,
        enqueued_at=None,  # due at not_before: the sweeper wakes it then if the message is lost
        error_code=code,
        error_message=message,
    )


def fail(session: Session, job_id: str, owner: str | None, now: datetime, code: str, message: str) -> bool:
    values: dict[str, Any] = {
        "status": JobStatus.FAILED,
        "finished_at": now,
        "error_code": code,
        "error_message": message,
    }
    if owner:
        return leases.settle(session, LEASE, job_id, owner, **values)
    # Not claimed (e.g. too many attempts): fail it if nobody ended it meanwhile.
    unfinished = and_(ExportJob.id == job_id, ExportJob.status.in_(ACTIVE_STATUSES))
    return update_rows(session, ExportJob, unfinished, lease_owner=None, lease_expires_at=None, **values) == 1


def cancel(session: Session, tenant_id: int, job_id: str, now: datetime) -> bool:
    cancellable = and_(
        ExportJob.id == job_id, ExportJob.tenant_id == tenant_id, ExportJob.status.in_(ACTIVE_STATUSES)
    )
    values = {
        "status": JobStatus.CANCELLED,
        "lease_owner": None,
        "lease_expires_at": None,
        "finished_at": now,
    }
    return update_rows(session, ExportJob, cancellable, **values) == 1


def due_for_dispatch(session: Session, now: datetime, stale_before: datetime, limit: int = 500) -> list[str]:
    """Jobs whose wake-up message may be lost, or whose worker stopped renewing its lease."""
    return leases.due_for_dispatch(session, LEASE, now, stale_before, limit)


# --- pseudonym keys ---------------------------------------------------------------------


def get_pseudonym_key(session: Session, tenant_id: int) -> str | None:
    return session.scalar(select(PseudonymKey.sealed_key).where(PseudonymKey.tenant_id == tenant_id))


def add_pseudonym_key(session: Session, tenant_id: int, sealed_key: str) -> None:
    """Store the tenant's key unless one exists (a concurrent first use may have won)."""
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(PseudonymKey)
    session.execute(
        insert.values(tenant_id=tenant_id, sealed_key=sealed_key, created_at=utcnow()).on_conflict_do_nothing(
            index_elements=["tenant_id"]
        )
    )


def all_pseudonym_keys(session: Session) -> list[tuple[int, str]]:
    return [
        (row.tenant_id, row.sealed_key)
        for row in session.execute(select(PseudonymKey.tenant_id, PseudonymKey.sealed_key))
    ]


def set_pseudonym_key(session: Session, tenant_id: int, sealed_key: str) -> None:
    session.execute(
        update(PseudonymKey).where(PseudonymKey.tenant_id == tenant_id).values(sealed_key=sealed_key)
    )
