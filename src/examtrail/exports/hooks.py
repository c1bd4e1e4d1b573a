"""Extension point: features that react when an export ends (webhooks) hook in here.

A hook runs inside the transaction that finishes or fails the job, so whatever it
writes (an outbox row) commits atomically with the job's final state. It may return
a callback to run after that commit (waking a worker). Hooks are passed to
``service.run_job`` by the application's top (``examtrail.tasks``), so exports never
imports the features that react to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from examtrail.exports.models import ExportJob
from examtrail.runtime import Runtime

AfterCommit = Callable[[], None]
CompletionHook = Callable[[Runtime, Session, ExportJob], AfterCommit | None]


def run_completion_hooks(
    hooks: Sequence[CompletionHook], runtime: Runtime, session: Session, job: ExportJob
) -> list[AfterCommit]:
    callbacks = []
    for hook in hooks:
        callback = hook(runtime, session, job)
        if callback is not None:
            callbacks.append(callback)
    return callbacks
