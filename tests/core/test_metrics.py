"""``/metrics``: scraped after real requests and jobs, parsed with prometheus_client's parser."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from examtrail.core.db import transaction, utcnow
from examtrail.exports.models import ExportJob
from examtrail.exports.service import dispatch_due
from examtrail.runtime import Runtime
from tests.support.api import seed_test, wait_for_job

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(http: TestClient, headers: dict[str, str] | None = None) -> Samples:
    answer = http.get("/metrics", headers=headers or {})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_template_and_status(http: TestClient, headers: dict[str, str]) -> None:
    route = "/v1/test/{testId}/events/{jobId}"
    before = scrape(http)
    for n in range(3):
        assert http.get(f"/v1/test/{n}/events/nope", headers=headers).status_code == 404
    http.get("/no/such/path/1")
    http.get("/no/such/path/2")
    after = scrape(http)
    requests = "examtrail_http_requests_total"
    assert (
        value(after, requests, method="GET", route=route, status="404")
        - value(before, requests, method="GET", route=route, status="404")
        == 3
    )
    assert (
        value(after, requests, method="GET", route="unmatched", status="404")
        - value(before, requests, method="GET", route="unmatched", status="404")
        == 2
    )
    # Raw paths never become labels.
    assert not any("/no/such" in dict(labels).get("route", "") for _, labels in after)
    latency = "examtrail_http_request_duration_seconds_count"
    assert (
        value(after, latency, method="GET", route=route) - value(before, latency, method="GET", route=route)
        == 3
    )


def test_exports_and_job_gauges(http: TestClient, headers: dict[str, str], runtime: Runtime) -> None:
    seed_test(http, headers, test_id=51, candidates=3, events_per_candidate=4)
    before = scrape(http)
    job_id = http.post("/v1/test/51/events", headers=headers).json()["jobId"]
    status = wait_for_job(http, headers, 51, job_id)
    assert status["status"] == "finished"
    # The worker counts right after the commit that the poll sees.
    runs = "examtrail_export_runs_total"
    deadline = time.monotonic() + 10
    while True:
        after = scrape(http)
        counted = value(after, runs, outcome="finished") > value(before, runs, outcome="finished")
        if counted or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    assert (
        value(after, "examtrail_export_runs_total", outcome="finished")
        - value(before, "examtrail_export_runs_total", outcome="finished")
        == 1
    )
    assert (
        value(after, "examtrail_export_duration_seconds_count")
        - value(before, "examtrail_export_duration_seconds_count")
        == 1
    )
    assert value(after, "examtrail_export_events_sum") - value(before, "examtrail_export_events_sum") == 12
    assert (
        value(after, "examtrail_export_bytes_sum") - value(before, "examtrail_export_bytes_sum")
        == status["fileSize"]
    )
    # Database gauges: this test's database only.
    assert value(after, "examtrail_export_jobs", status="finished") == 1
    assert value(after, "examtrail_export_jobs", status="queued") == 0
    assert value(after, "examtrail_export_queue_oldest_age_seconds") == 0


@pytest.mark.settings(sweep_interval_seconds=3600)
def test_oldest_queued_job_age(http: TestClient, headers: dict[str, str], runtime: Runtime) -> None:
    seed_test(http, headers, test_id=52, candidates=1, events_per_candidate=1)
    job_id = http.post("/v1/test/52/events", headers=headers).json()["jobId"]
    wait_for_job(http, headers, 52, job_id)
    # As if it had been waiting for ten minutes with no worker to take it.
    with transaction(runtime.sessions) as session:
        session.execute(
            update(ExportJob)
            .where(ExportJob.id == job_id)
            .values(status="queued", created_at=utcnow() - timedelta(minutes=10), not_before=None)
        )
    samples = scrape(http)
    assert value(samples, "examtrail_export_jobs", status="queued") == 1
    assert 590 <= value(samples, "examtrail_export_queue_oldest_age_seconds") <= 700


@pytest.mark.settings(sweep_interval_seconds=3600)
def test_lease_recoveries_by_the_sweeper(http: TestClient, headers: dict[str, str], runtime: Runtime) -> None:
    seed_test(http, headers, test_id=53, candidates=1, events_per_candidate=1)
    job_id = http.post("/v1/test/53/events", headers=headers).json()["jobId"]
    wait_for_job(http, headers, 53, job_id)
    # A worker that died mid-job: running, its lease ran out.
    with transaction(runtime.sessions) as session:
        session.execute(
            update(ExportJob)
            .where(ExportJob.id == job_id)
            .values(
                status="running",
                lease_owner="dead:1:x",
                lease_expires_at=utcnow() - timedelta(seconds=5),
                enqueued_at=None,
            )
        )
    before = scrape(http)
    assert dispatch_due(runtime) == 1
    after = scrape(http)
    name = "examtrail_lease_recoveries_total"
    assert value(after, name, kind="export_jobs") - value(before, name, kind="export_jobs") == 1
    resent = "examtrail_wakeups_resent_total"
    assert value(after, resent, kind="export_jobs") == value(before, resent, kind="export_jobs")


@pytest.mark.settings(metrics_token="s3cret-scrape-token")
def test_metrics_token_when_set(http: TestClient) -> None:
    for sent in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-scrape-token"}):
        answer = http.get("/metrics", headers=sent)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
    samples = scrape(http, {"Authorization": "Bearer s3cret-scrape-token"})
    assert ("examtrail_export_queue_oldest_age_seconds", frozenset()) in samples


def test_metrics_are_open_by_default_and_not_in_the_api_document(http: TestClient) -> None:
    assert http.get("/metrics").status_code == 200
    assert "/metrics" not in http.get("/openapi.json").json()["paths"]


def test_dramatiq_keeps_no_metrics_of_its_own(runtime: Runtime) -> None:
    # Dramatiq's Prometheus middleware would start its own HTTP server and count apart.
    assert not any(type(m).__name__ == "Prometheus" for m in runtime.broker.middleware)


def test_a_client_that_leaves_mid_body_is_a_499_not_a_server_error(
    http: TestClient, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The body of POST …/events stops with the client's disconnect: nobody is answered, and the
    access line and the request count say 499 (the client closed the request), never 500."""
    seed_test(http, headers, test_id=42, candidates=1, events_per_candidate=0)
    route, requests = "/v1/test/{testId}/candidates/{userId}/events", "examtrail_http_requests_total"
    before = scrape(http)
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"event": "x", ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = "/v1/test/42/candidates/100/events"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", b"200"),
            (b"authorization", headers["Authorization"].encode()),
        ],
        "client": ("192.0.2.1", 50000),
        "server": ("testserver", 80),
    }
    portal: Any = getattr(http, "portal")  # noqa: B009 (set while the client runs)
    with caplog.at_level(logging.INFO, logger="examtrail.access"):
        portal.call(getattr(http, "app"), scope, receive, send)  # noqa: B009 (untyped)
    assert sent == []
    after = scrape(http)
    for status, count in (("499", 1), ("500", 0)):
        labels = {"method": "POST", "route": route, "status": status}
        assert value(after, requests, **labels) - value(before, requests, **labels) == count, status
    (line,) = [r for r in caplog.records if r.name == "examtrail.access" and getattr(r, "path", "") == path]
    assert getattr(line, "status") == 499  # noqa: B009 (an extra of the record)


_FIRST_USE_AT_ONCE = """
import threading, time
from examtrail.core import metrics as module

real = module._create


def slow():
    time.sleep(0.2)  # every thread's first call is inside it at once
    return real()


module._create = slow
barrier = threading.Barrier(4)
errors, made = [], []


def first():
    barrier.wait()
    try:
        made.append(module.metrics())
    except Exception as exc:
        errors.append(repr(exc))


threads = [threading.Thread(target=first) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert not errors, errors
assert len({id(m) for m in made}) == 1, made
"""


def test_threads_counting_their_first_value_at_once_register_the_metrics_once() -> None:
    # A standalone worker's export and webhook threads: the second registration raised
    # DuplicateTimeseries out of an export that had finished. A fresh interpreter, whose
    # metrics do not exist yet (this one's do), on the default registry.
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", _FIRST_USE_AT_ONCE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
