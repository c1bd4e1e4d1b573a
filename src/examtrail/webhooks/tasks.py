"""Webhook background work (registered by ``examtrail.tasks``): the delivery task, the
sweeper's dispatch, and the export completion hook that writes the outbox."""

from __future__ import annotations

from sqlalchemy.orm import Session

from examtrail.exports.hooks import AfterCommit
from examtrail.exports.models import ExportJob
from examtrail.runtime import Runtime
from examtrail.webhooks import service

DELIVER_TASK = service.DELIVER_TASK


def deliver(runtime: Runtime, delivery_id: str) -> None:
    service.deliver(runtime, delivery_id)


def dispatch_due(runtime: Runtime) -> None:
    service.dispatch_due(runtime)


def notify_subscribers(runtime: Runtime, session: Session, job: ExportJob) -> AfterCommit | None:
    """Completion hook: writes the outbox rows inside the transaction that ends the job."""
    return service.record_notifications(runtime, session, job)
