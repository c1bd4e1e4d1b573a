"""Runs Dramatiq worker threads and the sweeper, in the API process or standalone."""

from __future__ import annotations

import logging
import threading

import dramatiq

from examtrail.queue import registry
from examtrail.queue.broker import declare_actors
from examtrail.runtime import Runtime

log = logging.getLogger(__name__)


class Sweeper:
    """Periodically runs every registered periodic job (lost-message recovery,
    due webhook retries). Safe with many sweepers: each job claims rows in the DB."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="examtrail-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def run_once(self) -> None:
        for job in list(registry.PERIODICS):
            try:
                job.fn()
            except Exception:
                log.exception("periodic job %s failed", job.name)

    def _run(self) -> None:
        # First pass at once: a restarted process picks up what a dead one left.
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)


class BackgroundWorker:
    def __init__(self, runtime: Runtime, threads: int | None = None) -> None:
        self.runtime = runtime
        self.threads = threads or runtime.settings.worker_threads
        self._worker: dramatiq.Worker | None = None
        self._sweeper = Sweeper(runtime.settings.sweep_interval_seconds)

    def start(self) -> None:
        declare_actors(self.runtime.broker, self.runtime.settings.queue_name)
        self._worker = dramatiq.Worker(self.runtime.broker, worker_threads=self.threads, worker_timeout=200)
        self._worker.start()
        self._sweeper.start()
        log.info("worker started with %d threads on %s", self.threads, type(self.runtime.broker).__name__)

    def stop(self) -> None:
        self._sweeper.stop()
        if self._worker is not None:
            self._worker.stop(timeout=10_000)
            self._worker = None
