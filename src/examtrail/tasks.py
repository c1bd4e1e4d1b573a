"""Every background task of the application, registered in one place.

This module sits at the top with ``app`` and the CLI: it knows the features and
wires them to the generic queue (``examtrail.queue``), which knows none of them. The
API (embedded worker), the standalone worker and the CLI all start work from here.
"""

from __future__ import annotations

from functools import cache

from examtrail.core.memory import release_free_memory
from examtrail.core.settings import Settings
from examtrail.exports import tasks as exports
from examtrail.exports.hooks import CompletionHook
from examtrail.lifecycle import tasks as lifecycle
from examtrail.queue.registry import TaskRegistry
from examtrail.queue.worker import BackgroundWorker
from examtrail.runtime import Runtime
from examtrail.runtime import build_runtime as _build_runtime
from examtrail.webhooks import tasks as webhooks

# Webhook sends wait on receivers (up to the webhook deadline each): their own queue lane
# (``<queue>-webhooks``) and threads (EXAMTRAIL_WEBHOOK_THREADS), so a slow receiver never
# occupies the threads that run exports.
WEBHOOKS_LANE = "webhooks"

# Temporary files untouched this long were left by a killed process (a live write keeps its
# file fresh): removed at start-up and by the sweeper.
STALE_TEMPORARY_SECONDS = 3600
# Listing temporaries (on S3: the pending multipart uploads) is not needed at every sweep.
TEMPORARY_SWEEP_EVERY_SECONDS = 600

# What reacts when an export ends (inside the transaction that ends it).
EXPORT_COMPLETION_HOOKS: tuple[CompletionHook, ...] = (webhooks.notify_subscribers,)


def run_export(runtime: Runtime, job_id: str) -> None:
    """Run one export job with every completion hook (the task, and ``examtrail exports run``)."""
    try:
        exports.run_export(runtime, job_id, EXPORT_COMPLETION_HOOKS)
    finally:
        # An export's buffers and temporaries are freed by now: hand the pages they left in
        # the heap back, so a long-running worker's RSS stays near its idle size between
        # jobs. No full collection: it would pause every thread (and the embedded API).
        release_free_memory(collect=False)


def sweep_temporaries(runtime: Runtime) -> int:
    """Remove the object store's stale temporaries (periodic, and at every start)."""
    return runtime.store.sweep_temporaries(STALE_TEMPORARY_SECONDS)


@cache
def registry() -> TaskRegistry[Runtime]:
    tasks: TaskRegistry[Runtime] = TaskRegistry()
    tasks.task(exports.RUN_TASK, run_export)
    tasks.task(webhooks.DELIVER_TASK, webhooks.deliver, lane=WEBHOOKS_LANE)
    tasks.task(lifecycle.RUN_TASK, lifecycle.run_erasure)
    tasks.periodic("export.dispatch_due", exports.dispatch_due)
    tasks.periodic("webhooks.dispatch_due", webhooks.dispatch_due)
    tasks.periodic("erasure.dispatch_due", lifecycle.dispatch_due)
    tasks.periodic("exports.retention", lifecycle.sweep_retention, every=lifecycle.RETENTION_EVERY_SECONDS)
    tasks.periodic("storage.sweep_temporaries", sweep_temporaries, every=TEMPORARY_SWEEP_EVERY_SECONDS)
    return tasks


def build_runtime(settings: Settings) -> Runtime:
    """The process's runtime, its queue routing each task to its lane."""
    return _build_runtime(settings, routes=registry().routes(settings.queue_name))


def background_worker(
    runtime: Runtime, threads: int | None = None, webhook_threads: int | None = None
) -> BackgroundWorker[Runtime]:
    """Worker threads per lane and the sweeper on the runtime's broker (not started yet)."""
    settings = runtime.settings
    return BackgroundWorker(
        runtime.broker,
        settings.queue_name,
        registry(),
        runtime,
        threads=threads or settings.worker_threads,
        sweep_interval=settings.sweep_interval_seconds,
        lane_threads={WEBHOOKS_LANE: webhook_threads or settings.webhook_threads},
        stopping=runtime.stopping,
    )
