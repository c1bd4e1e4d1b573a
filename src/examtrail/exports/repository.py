"""SQL for export jobs: ordering, leases, completion, and the snapshot read of a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from examtrail.exports.models import ACTIVE_STATUSES, ExportJob, JobStatus


def get_job(session: Session, tenant_id: int, job_id: str) -> ExportJob | None:
    return session.scalars(
        select(ExportJob).where(ExportJob.id == job_id, ExportJob.tenant_id == tenant_id)
    ).one_or_none()


def load_job(session: Session, job_id: str) -> ExportJob | None:
    return session.get(ExportJob, job_id, populate_existing=True)


def active_job_for_test(session: Session, tenant_id: int, test_pk: int) -> ExportJob | None:
    return session.scalars(
        select(ExportJob)
        .where(
            ExportJob.tenant_id == tenant_id,
            ExportJob.test_pk == test_pk,
            ExportJob.status.in_(ACTIVE_STATUSES),
        )
        .order_by(ExportJob.created_at.desc())
        .limit(1)
    ).one_or_none()


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


def claim(session: Session, job_id: str, owner: str, now: datetime, lease: timedelta) -> bool:
    """Take the job if it is waiting, or if its worker's lease ran out."""
    result = session.execute(
        update(ExportJob)
        .where(
            ExportJob.id == job_id,
            or_(
                and_(
                    ExportJob.status == JobStatus.QUEUED,
                    or_(ExportJob.not_before.is_(None), ExportJob.not_before <= now),
                ),
                and_(ExportJob.status == JobStatus.RUNNING, ExportJob.lease_expires_at < now),
            ),
        )
        .values(
            status=JobStatus.RUNNING,
            lease_owner=owner,
            lease_expires_at=now + lease,
            attempts=ExportJob.attempts + 1,
            started_at=func.coalesce(ExportJob.started_at, now),
            candidates_done=0,
            events_written=0,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _owned(job_id: str, owner: str) -> Any:
    return and_(ExportJob.id == job_id, ExportJob.lease_owner == owner, ExportJob.status == JobStatus.RUNNING)


def renew(
    session: Session, job_id: str, owner: str, expires: datetime, *, total: int, done: int, events: int
) -> bool:
    """Extend the lease and record progress; False means the job is no longer ours."""
    result = session.execute(
        update(ExportJob)
        .where(_owned(job_id, owner))
        .values(lease_expires_at=expires, candidates_total=total, candidates_done=done, events_written=events)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish(session: Session, job_id: str, owner: str, values: dict[str, Any]) -> bool:
    result = session.execute(
        update(ExportJob)
        .where(_owned(job_id, owner))
        .values(status=JobStatus.FINISHED, lease_owner=None, lease_expires_at=None, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_for_retry(
    session: Session, job_id: str, owner: str, not_before: datetime, code: str, message: str
) -> bool:
    result = session.execute(
        update(ExportJob)
        .where(_owned(job_id, owner))
        .values(
            status=JobStatus.QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            not_before=not_before,
            enqueued_at=None,
            error_code=code,
            error_message=message,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def fail(session: Session, job_id: str, owner: str | None, now: datetime, code: str, message: str) -> bool:
    condition = (
        _owned(job_id, owner)
        if owner
        else and_(ExportJob.id == job_id, ExportJob.status.in_(ACTIVE_STATUSES))
    )
    result = session.execute(
        update(ExportJob)
        .where(condition)
        .values(
            status=JobStatus.FAILED,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
            error_code=code,
            error_message=message,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def cancel(session: Session, tenant_id: int, job_id: str, now: datetime) -> bool:
    result = session.execute(
        update(ExportJob)
        .where(
            ExportJob.id == job_id, ExportJob.tenant_id == tenant_id, ExportJob.status.in_(ACTIVE_STATUSES)
        )
        .values(status=JobStatus.CANCELLED, lease_owner=None, lease_expires_at=None, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def due_for_dispatch(session: Session, now: datetime, stale_before: datetime, limit: int = 500) -> list[str]:
    """Jobs whose wake-up message may be lost, or whose worker stopped renewing its lease."""
    queued = and_(
        ExportJob.status == JobStatus.QUEUED,
        or_(ExportJob.not_before.is_(None), ExportJob.not_before <= now),
        or_(ExportJob.enqueued_at.is_(None), ExportJob.enqueued_at < stale_before),
    )
    orphaned = and_(ExportJob.status == JobStatus.RUNNING, ExportJob.lease_expires_at < now)
    ids = list(session.scalars(select(ExportJob.id).where(or_(queued, orphaned)).limit(limit)))
    if ids:
        session.execute(
            update(ExportJob)
            .where(ExportJob.id.in_(ids))
            .values(enqueued_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


# --- the snapshot read -------------------------------------------------------------

CANDIDATE_COUNT_SQL = text("SELECT count(*) FROM candidates WHERE test_pk = :test_pk")

# One row per event (or one per candidate without events), in the file's order.
EVENTS_SQL = text(
    """
    SELECT c.user_id, c.candidate_id, e.id, e.doc, e.file_count
    FROM candidates c
    LEFT JOIN events e ON e.candidate_pk = c.id
    WHERE c.test_pk = :test_pk
    ORDER BY c.user_id, e.occurred_at_ms, e.event_id
    """
)

# Attachments in the same order, so the two cursors advance in lockstep.
ATTACHMENTS_SQL = text(
    """
    SELECT a.event_pk, a.id, a.file_name, a.size, a.storage_key, a.content_type
    FROM attachments a
    JOIN events e ON e.id = a.event_pk
    JOIN candidates c ON c.id = e.candidate_pk
    WHERE c.test_pk = :test_pk
    ORDER BY c.user_id, e.occurred_at_ms, e.event_id, a.file_name
    """
)

# --- PostgreSQL: the database builds each candidate's events array --------------------
#
# Every stored doc is already the event's final JSON, so PostgreSQL concatenates them
# (no JSON parsing) and Python only adds the candidate's envelope. An event with files
# carries, in place of its empty ``attachedFiles`` marker, FILES_MARK + a JSON array of
# [contentItemId, fileName, fileSize, storageKey, contentType] + FILES_MARK; the
# pipeline turns that into the attachments with their pre-signed URLs. FILES_MARK is a
# control character, which never occurs raw in JSON text.

FILES_MARK = "\x01"

_EVENT_FRAGMENT = """
    CASE WHEN e.file_count = 0 THEN e.doc
    ELSE replace(e.doc, '"attachedFiles":[]', '"attachedFiles":' || chr(1) || COALESCE(
        (SELECT json_agg(json_build_array(a.id, a.file_name, a.size, a.storage_key, a.content_type)
                         ORDER BY a.file_name)
         FROM attachments a WHERE a.event_pk = e.id)::text, '[]') || chr(1))
    END
"""


def pg_candidate_rows_sql(test_pk: int, part: int, parts: int, max_events: int) -> str:
    """COPY (binary) of part ``part`` of ``parts`` of the candidates, by ``userId``.

    Candidate number i (0-based, in ``userId`` order) belongs to part ``i % parts``, so
    parallel readers of one snapshot interleave back into the file's order. Each row:
    user_id int8, candidate_id text, candidate pk int8, events int8, body text (the
    events joined by commas, NULL without events). A candidate with more than
    ``max_events`` events has ``events = max_events + 1`` and a partial body: the
    caller streams it with :func:`pg_candidate_events_sql` instead (bounded memory).
    """
    # COPY takes no bind parameters; every value interpolated here is an int.
    test_pk, part, parts, limit = int(test_pk), int(part), int(parts), int(max_events) + 1
    return f"""
    COPY (
        SELECT c.user_id, c.candidate_id, c.id, ev.n, ev.body
        FROM (
            SELECT id, user_id, candidate_id, row_number() OVER (ORDER BY user_id) - 1 AS seq
            FROM candidates WHERE test_pk = {test_pk}
        ) c
        CROSS JOIN LATERAL (
            SELECT count(*) AS n, string_agg(x.frag, ',' ORDER BY x.occurred_at_ms, x.event_id) AS body
            FROM (
                SELECT e.occurred_at_ms, e.event_id, {_EVENT_FRAGMENT} AS frag
                FROM events e
                WHERE e.candidate_pk = c.id
                ORDER BY e.occurred_at_ms, e.event_id
                LIMIT {limit}
            ) x
        ) ev
        WHERE c.seq % {parts} = {part}
        ORDER BY c.user_id
    ) TO STDOUT (FORMAT binary)
    """  # noqa: S608


# One candidate's event fragments in the file's order (the long-candidate path).
PG_CANDIDATE_EVENTS_SQL = f"""
    SELECT {_EVENT_FRAGMENT} AS frag
    FROM events e
    WHERE e.candidate_pk = %(candidate_pk)s
    ORDER BY e.occurred_at_ms, e.event_id
"""  # noqa: S608


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection on one consistent snapshot of the database."""
    if engine.dialect.name == "postgresql":
        options: dict[str, Any] = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    else:
        # WAL readers see the database as of their first read, and never block writers.
        options = {"sqlite_begin": "DEFERRED"}
    with engine.connect().execution_options(**options) as connection, connection.begin():
        yield connection


def export_snapshot(connection: Connection) -> str:
    """PostgreSQL: the id of ``connection``'s snapshot, for :func:`snapshot_reader`."""
    return str(connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())


@contextmanager
def snapshot_reader(engine: Engine, snapshot_id: str) -> Iterator[Connection]:
    """PostgreSQL: another read-only connection on the exported snapshot ``snapshot_id``
    (valid while the exporting transaction is open)."""
    options: dict[str, Any] = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with engine.connect().execution_options(**options) as connection, connection.begin():
        connection.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{_snapshot_literal(snapshot_id)}'")
        yield connection


def _snapshot_literal(snapshot_id: str) -> str:
    if not snapshot_id or any(not (ch.isalnum() or ch == "-") for ch in snapshot_id):
        raise ValueError(f"not a snapshot id: {snapshot_id!r}")
    return snapshot_id
