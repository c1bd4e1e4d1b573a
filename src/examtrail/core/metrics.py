"""Prometheus metrics: definitions any layer can count into, and the scrape.

Several API and worker processes of one host share one directory of metric files
(prometheus-client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``); a scrape of any
API process adds them all up. ``prometheus_client`` chooses that mode when it is first
imported, so it is imported lazily here and ``examtrail serve``/``worker`` call
:func:`use_metrics_dir` before anything counts. Without the directory (tests, a plain
``create_app``) the same metrics live in the process's default registry.

Values that are really database state (jobs by status, the oldest waiting job) are not
counted by processes: a collector reads them at scrape time (see ``examtrail.app``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram
    from prometheus_client.metrics_core import Metric

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "examtrail"
# Route label of requests no route matched (404 scans must not create a label each).
UNMATCHED_ROUTE = "unmatched"
# Webhook attempts beyond this share one label value, so the label stays bounded.
MAX_ATTEMPT_LABEL = 10

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_EXPORT_SECONDS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_EXPORT_BYTES = tuple(float(10**n) for n in range(3, 12))  # 1 kB .. 100 GB
_EXPORT_EVENTS = tuple(float(10**n) for n in range(0, 9))  # 1 .. 100 million


def use_metrics_dir(path: Path, *, wipe: bool) -> None:
    """Count into files under ``path``, shared with this host's other processes.

    ``wipe``: the supervisor (``examtrail serve``) empties it at start, so files of
    processes of an earlier run do not add to this run's counts."""
    path.mkdir(parents=True, exist_ok=True)
    if wipe:
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


@dataclass(frozen=True)
class Metrics:
    http_requests: Counter
    http_duration: Histogram
    exports: Counter
    export_duration: Histogram
    export_bytes: Histogram
    export_events: Histogram
    webhook_deliveries: Counter
    lease_recoveries: Counter
    wakeups_resent: Counter


EXPORT_OUTCOMES = ("finished", "failed", "retried", "released", "interrupted")
# The leased tables (their names label lease recoveries and re-sent wake-ups).
LEASED_KINDS = ("export_jobs", "webhook_deliveries")


_made: Metrics | None = None
# A worker's threads (exports, webhooks) may count their first value at once: the metrics are
# registered by one of them only (functools.cache let each make them, and the second
# registration raised DuplicateTimeseries out of a finished export).
_making = threading.Lock()


def metrics() -> Metrics:
    """The process's metrics (created on first use, after :func:`use_metrics_dir`)."""
    global _made
    made = _made
    if made is not None:
        return made
    with _making:
        if _made is None:
            m = _create()
            # Every series of a closed label set exists from the start, at zero: rate() and
            # increase() then see the first event too.
            for outcome in EXPORT_OUTCOMES:
                m.exports.labels(outcome)
            for kind in LEASED_KINDS:
                m.lease_recoveries.labels(kind)
                m.wakeups_resent.labels(kind)
            _made = m
        return _made


def _create() -> Metrics:
    from prometheus_client import Counter, Histogram

    return Metrics(
        http_requests=Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
        ),
        http_duration=Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of the body), by method and route template",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
        ),
        exports=Counter(
            f"{PREFIX}_export_runs",
            "Export attempts by outcome: finished, failed, retried (a transient failure), released "
            "(handed back at shutdown), interrupted (cancelled or taken over)",
            ["outcome"],
        ),
        export_duration=Histogram(
            f"{PREFIX}_export_duration_seconds", "Time to write a finished export", buckets=_EXPORT_SECONDS
        ),
        export_bytes=Histogram(
            f"{PREFIX}_export_bytes", "Size of a finished export file", buckets=_EXPORT_BYTES
        ),
        export_events=Histogram(
            f"{PREFIX}_export_events", "Events in a finished export", buckets=_EXPORT_EVENTS
        ),
        webhook_deliveries=Counter(
            f"{PREFIX}_webhook_deliveries",
            "Webhook delivery attempts by outcome (succeeded, failed, gone) and attempt number",
            ["outcome", "attempt"],
        ),
        lease_recoveries=Counter(
            f"{PREFIX}_lease_recoveries",
            "Rows the sweeper handed to another worker because their owner's lease ran out",
            ["kind"],
        ),
        wakeups_resent=Counter(
            f"{PREFIX}_wakeups_resent",
            "Wake-up messages the sweeper sent again because the first one was lost",
            ["kind"],
        ),
    )


def attempt_label(number: int) -> str:
    return str(number) if number < MAX_ATTEMPT_LABEL else f"{MAX_ATTEMPT_LABEL}+"


class CallbackCollector:
    """Metrics computed at scrape time by ``collect`` (e.g. from the database)."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


class _DefaultRegistry:
    """The process's own registry, as one collector of the scrape's registry."""

    def collect(self) -> Iterable[Metric]:
        from prometheus_client import REGISTRY

        return REGISTRY.collect()


def render(extra: Sequence[Any] = ()) -> tuple[bytes, str]:
    """The scrape: every process's counts (or this process's), plus ``extra`` collectors.

    Returns the body and its content type (Prometheus text format)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    metrics()  # every metric appears from the first scrape on, at zero
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_DefaultRegistry())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
