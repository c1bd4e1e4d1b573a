"""Runs Dramatiq worker threads and the sweeper, in the API process or standalone."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Generic

import dramatiq

from examtrail.queue.broker import declare_actors
from examtrail.queue.registry import C, TaskRegistry, lane_queue

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
        self._last_run: dict[str, float] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def run_once(self) -> None:
        now = time.monotonic()
        for job in list(self.registry.periodics):
            last = self._last_run.get(job.name)
            if last is not None and now - last < job.every:
                continue
            self._last_run[job.name] = now
            try:
                job.fn(self.context)
            except Exception:
                log.exception("periodic job %s failed", job.name)

    def _run(self) -> None:
        # First pass at once: a restarted process picks up what a dead one left.
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)


class _OneWorkerPerLane(logging.Filter):
    """Each lane's Dramatiq worker adds its own consumer middleware to the shared broker,
    which Dramatiq warns about; here that is intended (each consumes only its own queue)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "middleware of the same type twice" not in record.getMessage()


class BackgroundWorker(Generic[C]):
    """Dramatiq worker threads on ``broker`` plus the sweeper; tasks get ``context``.

    Each lane of the registry has its own Dramatiq worker (its own threads) consuming
    only its own queue: ``threads`` for the default lane, ``lane_threads[lane]`` (default
    ``threads``) for the others. A lane whose tasks are slow cannot delay another's."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        queue_name: str,
        registry: TaskRegistry[C],
        context: C,
        *,
        threads: int,
        sweep_interval: float,
        lane_threads: Mapping[str, int] | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.registry = registry
        self.context = context
        self.threads = threads
        self.lane_threads = {
            lane: (lane_threads or {}).get(lane, threads) for lane in registry.lane_names() if lane
        }
        # Set at the start of stop(): tasks under way see it (and wrap up or hand back their work).
        self.stopping = stopping or threading.Event()
        self._workers: list[dramatiq.Worker] = []
        self._sweeper = Sweeper(registry, context, sweep_interval)

    def start(self) -> None:
        self.stopping.clear()
        declare_actors(self.broker, self.queue_name, self.registry, self.context)
        self.broker.declare_queue(self.queue_name)
        lanes = {"": self.threads, **self.lane_threads}
        broker_log = getattr(self.broker, "logger", None)
        if isinstance(broker_log, logging.Logger) and not any(
            isinstance(f, _OneWorkerPerLane) for f in broker_log.filters
        ):
            broker_log.addFilter(_OneWorkerPerLane())
        for lane, threads in lanes.items():
            queue = lane_queue(self.queue_name, lane)
            worker = dramatiq.Worker(self.broker, queues={queue}, worker_threads=threads, worker_timeout=200)
            worker.start()
            self._workers.append(worker)
        self._sweeper.start()
        log.info(
            "worker started on %s: %s",
            type(self.broker).__name__,
            ", ".join(f"{lane_queue(self.queue_name, lane)} ({n} threads)" for lane, n in lanes.items()),
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Take no new tasks; wait up to ``timeout`` seconds for those under way."""
        self.stopping.set()
        self._sweeper.stop()
        # Every lane's threads stop taking messages at once, then each lane is waited for.
        for worker in self._workers:
            for thread in worker.workers:
                thread.stop()
        deadline = time.monotonic() + timeout
        while self._workers:
            remaining = max(0.1, deadline - time.monotonic())
            self._workers.pop().stop(timeout=int(remaining * 1000))
        log.info("worker stopped")
