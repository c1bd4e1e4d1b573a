"""Background tasks of erasure and retention (registered by ``examtrail.tasks``)."""

from __future__ import annotations

from examtrail.lifecycle import service
from examtrail.runtime import Runtime

RUN_TASK = service.RUN_TASK
# Retention is measured in days: looking once a minute is plenty.
RETENTION_EVERY_SECONDS = 60


def run_erasure(runtime: Runtime, job_id: str) -> None:
    service.run_job(runtime, job_id)


def dispatch_due(runtime: Runtime) -> None:
    service.dispatch_due(runtime)


def sweep_retention(runtime: Runtime) -> None:
    service.sweep_retention(runtime)
