"""Extension point: features that react when an export ends (webhooks) register here.

A hook runs inside the transaction that finishes or fails the job, so whatever it
writes (an outbox row) commits atomically with the job's final state. It may return
a callback to run after that commit (waking a worker).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from examtrail.exports.models import ExportJob

AfterCommit = Callable[[], None]
CompletionHook = Callable[[Session, ExportJob], AfterCommit | None]

ON_JOB_COMPLETED: list[CompletionHook] = []


def on_job_completed(hook: CompletionHook) -> CompletionHook:
    if hook not in ON_JOB_COMPLETED:
        ON_JOB_COMPLETED.append(hook)
    return hook


def run_completion_hooks(session: Session, job: ExportJob) -> list[AfterCommit]:
    callbacks = []
    for hook in ON_JOB_COMPLETED:
        callback = hook(session, job)
        if callback is not None:
            callbacks.append(callback)
    return callbacks
