"""Background tasks of the export pipeline."""

from __future__ import annotations

from examtrail.exports import service
from examtrail.queue.registry import periodic, task
from examtrail.runtime import get_runtime


@task(service.RUN_TASK)
def run_export(job_id: str) -> None:
    service.run_job(get_runtime(), job_id)


@periodic("export.dispatch_due")
def dispatch_due() -> None:
    service.dispatch_due(get_runtime())
