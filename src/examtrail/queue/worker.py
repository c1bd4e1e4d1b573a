"""Runs Dramatiq worker threads and the sweeper, in the API process or standalone."""

from __future__ import annotations

import logging
import threading
from typing import Generic

import dramatiq

from examtrail.queue.broker import declare_actors
from examtrail.queue.registry import C, TaskRegistry

log = logging.getLogger(__name__)


class Sweeper(Generic[C]):
    """Periodically runs every registered periodic job (lost-message recovery,
    due webhook retries). Safe with many sweepers: each job claims rows in the DB."""

    def __init__(self, registry: TaskRegistry[C], context: C, interval: float) -> None:
        self.registry = registry
        self.context = context
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="examtrail-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def run_once(self) -> None:
        for job in list(self.registry.periodics):
            try:
                job.fn(self.context)
            except Exception:
                log.exception("periodic job %s failed", job.name)

    def _run(self) -> None:
        # First pass at once: a restarted process picks up what a dead one left.
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)


class BackgroundWorker(Generic[C]):
    """Dramatiq worker threads on ``broker`` plus the sweeper; tasks get ``context``."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        queue_name: str,
        registry: TaskRegistry[C],
        context: C,
        *,
        threads: int,
        sweep_interval: float,
    ) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.registry = registry
        self.context = context
        self.threads = threads
        self._worker: dramatiq.Worker | None = None
        self._sweeper = Sweeper(registry, context, sweep_interval)

    def start(self) -> None:
        declare_actors(self.broker, self.queue_name, self.registry, self.context)
        self._worker = dramatiq.Worker(self.broker, worker_threads=self.threads, worker_timeout=200)
        self._worker.start()
        self._sweeper.start()
        log.info("worker started with %d threads on %s", self.threads, type(self.broker).__name__)

    def stop(self) -> None:
        self._sweeper.stop()
        if self._worker is not None:
            self._worker.stop(timeout=10_000)
            self._worker = None
