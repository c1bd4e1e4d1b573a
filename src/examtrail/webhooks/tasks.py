"""Webhook background work: the delivery task, the sweeper's dispatch, the export hook."""

from __future__ import annotations

from sqlalchemy.orm import Session

from examtrail.exports.hooks import AfterCommit, on_job_completed
from examtrail.exports.models import ExportJob
from examtrail.queue.registry import periodic, task
from examtrail.runtime import get_runtime
from examtrail.webhooks import service


@task(service.DELIVER_TASK)
def deliver(delivery_id: str) -> None:
    service.deliver(get_runtime(), delivery_id)


@periodic("webhooks.dispatch_due")
def dispatch_due() -> None:
    service.dispatch_due(get_runtime())


@on_job_completed
def notify_subscribers(session: Session, job: ExportJob) -> AfterCommit | None:
    """Writes the outbox rows inside the transaction that ends the job."""
    return service.record_notifications(get_runtime(), session, job)
