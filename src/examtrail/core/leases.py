"""Rows that workers claim under a lease: export jobs and webhook deliveries.

The database row is the truth; a queue message only wakes a worker. A worker *claims*
a waiting row (or one whose previous owner's lease ran out) with one conditional
UPDATE, so exactly one worker holds it; it *renews* the lease while it works and
*settles* the row with an update that only applies while it still owns it. The
sweeper re-sends wake-ups for rows whose message is overdue (lost) or whose owner
stopped renewing (died).

Each leased table describes itself with a :class:`LeaseSpec`; the table needs the
columns ``id``, ``status``, ``lease_owner``, ``lease_expires_at`` and ``enqueued_at``.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from examtrail.core.db import update_rows
from examtrail.core.metrics import metrics


def worker_id() -> str:
    """A lease owner's name: host, process and a random part (one per claim)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseSpec:
    """How one table is leased.

    ``waiting``: the status of a row that waits for a worker; ``leased``: the status
    while a worker holds it; ``due``: the column that says when a waiting row may be
    taken (NULL means now).
    """

    model: Any
    waiting: str
    leased: str
    due: InstrumentedAttribute[Any]

    def _column(self, name: str) -> InstrumentedAttribute[Any]:
        column: InstrumentedAttribute[Any] = getattr(self.model, name)
        return column

    @property
    def id(self) -> InstrumentedAttribute[Any]:
        return self._column("id")

    @property
    def status(self) -> InstrumentedAttribute[Any]:
        return self._column("status")

    @property
    def owner(self) -> InstrumentedAttribute[Any]:
        return self._column("lease_owner")

    @property
    def expires(self) -> InstrumentedAttribute[Any]:
        return self._column("lease_expires_at")

    @property
    def enqueued(self) -> InstrumentedAttribute[Any]:
        return self._column("enqueued_at")

    def is_due(self, now: datetime) -> ColumnElement[bool]:
        return and_(self.status == self.waiting, or_(self.due.is_(None), self.due <= now))

    def is_orphaned(self, now: datetime) -> ColumnElement[bool]:
        return and_(self.status == self.leased, self.expires < now)

    def is_owned(self, row_id: str, owner: str) -> ColumnElement[bool]:
        return and_(self.id == row_id, self.owner == owner, self.status == self.leased)


def _update(session: Session, spec: LeaseSpec, condition: ColumnElement[bool], values: dict[str, Any]) -> int:
    return update_rows(session, spec.model, condition, **values)


def claim(
    session: Session,
    spec: LeaseSpec,
    row_id: str,
    owner: str,
    now: datetime,
    lease: timedelta,
    **values: Any,
) -> bool:
    """Take the row if it is due, or if its owner's lease ran out; ``values`` are set too.

    The wake-up message is consumed by the claim, so ``enqueued_at`` is cleared: should
    this owner die, the sweeper re-sends at once when the lease expires.
    """
    condition = and_(spec.id == row_id, or_(spec.is_due(now), spec.is_orphaned(now)))
    values.update(
        {
            spec.status.key: spec.leased,
            spec.owner.key: owner,
            spec.expires.key: now + lease,
            spec.enqueued.key: None,
        }
    )
    return _update(session, spec, condition, values) == 1


def renew(
    session: Session, spec: LeaseSpec, row_id: str, owner: str, expires: datetime, **values: Any
) -> bool:
    """Extend the lease (and record ``values``); False means the row is no longer ours."""
    return _update(session, spec, spec.is_owned(row_id, owner), {spec.expires.key: expires, **values}) == 1


def settle(
    session: Session,
    spec: LeaseSpec,
    row_id: str,
    owner: str,
    *,
    only_if: ColumnElement[bool] | None = None,
    **values: Any,
) -> bool:
    """Release the lease and record the outcome; False when the lease was lost meanwhile
    (or the row does not meet ``only_if``)."""
    values.update({spec.owner.key: None, spec.expires.key: None})
    condition = spec.is_owned(row_id, owner)
    return _update(session, spec, condition if only_if is None else and_(condition, only_if), values) == 1


def due_for_dispatch(
    session: Session, spec: LeaseSpec, now: datetime, stale_before: datetime, limit: int = 500
) -> list[str]:
    """Rows whose wake-up is overdue (the message was lost) or whose owner stopped renewing
    its lease; marks them woken now. A row woken after ``stale_before`` is left alone."""
    not_recently_woken = or_(spec.enqueued.is_(None), spec.enqueued < stale_before)
    rows = session.execute(
        select(spec.id, spec.status)
        .where(or_(spec.is_due(now), spec.is_orphaned(now)), not_recently_woken)
        .order_by(spec.due)
        .limit(limit)
    ).all()
    ids = [row_id for row_id, _ in rows]
    if ids:
        _update(session, spec, spec.id.in_(ids), {spec.enqueued.key: now})
        # Counted before the commit: a sweep that fails to commit is counted anyway, and
        # the next sweep counts the rows again (a rare over-count beats a silent miss).
        recovered = sum(1 for _, status in rows if status == spec.leased)
        kind = spec.model.__tablename__
        m = metrics()
        if recovered:
            m.lease_recoveries.labels(kind).inc(recovered)
        if len(ids) > recovered:
            m.wakeups_resent.labels(kind).inc(len(ids) - recovered)
    return ids


def backoff(schedule: Sequence[float], failures: int, *, retry_after: float | None = None) -> float | None:
    """Seconds to wait after the ``failures``-th failure in a row: ``schedule[failures]``
    with ±10% jitter (so retries of many rows spread out), at least ``retry_after`` when
    the other side asked for it; None once the schedule is exhausted."""
    if failures >= len(schedule):
        return None
    seconds = float(schedule[failures])
    delay = seconds * random.uniform(0.9, 1.1) if seconds > 0 else 0.0
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
