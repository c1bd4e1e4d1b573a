"""Background tasks of the export pipeline (registered by ``examtrail.tasks``)."""

from __future__ import annotations

from collections.abc import Sequence

from examtrail.exports import service
from examtrail.exports.hooks import CompletionHook
from examtrail.runtime import Runtime

RUN_TASK = service.RUN_TASK


def run_export(runtime: Runtime, job_id: str, hooks: Sequence[CompletionHook] = ()) -> None:
    service.run_job(runtime, job_id, hooks)


def dispatch_due(runtime: Runtime) -> None:
    service.dispatch_due(runtime)
