"""Graceful shutdown with real processes: SIGTERM lets the API finish what it is answering,
and makes a worker (standalone or the API's own) hand a running export back at once."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_production_stack import Stack, wait_until
from tests.support.api import bearer, get_token
from tests.support.processes import ExamtrailProcess, run_cli
from tests.support.seaweedfs import SeaweedS3, run_seaweedfs
from tests.support.throttle import ThrottledProxy

ON_POSTGRESQL = os.environ.get("EXAMTRAIL_TEST_DB") == "postgresql"


def test_sigterm_lets_an_in_flight_request_finish(tmp_path: Path) -> None:
    env = {
        "EXAMTRAIL_DATA_DIR": str(tmp_path / "data"),
        "EXAMTRAIL_SECRET_KEY": "shutdown-secret-0123456789abcdef0123456789",
        "EXAMTRAIL_LOG_FORMAT": "json",
    }
    assert run_cli(["db", "upgrade"], env).returncode == 0
    created = run_cli(["clients", "create", "--tenant", "uni-a", "--json"], env)
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    api = ExamtrailProcess.server(env, tmp_path / "logs").start()
    assert api.proc is not None
    try:
        http = httpx.Client(base_url=api.base_url, timeout=30)
        headers = bearer(get_token(http, client["clientId"], client["apiKey"]))
        assert http.put("/v1/test/5", json={"title": "t"}, headers=headers).status_code == 201
        people = [{"userId": 1, "candidateId": "c1"}]
        assert http.put("/v1/test/5/candidates", json=people, headers=headers).status_code == 200
        batch = orjson.dumps(
            [
                {"eventId": f"e{n}", "event": "network_lost", "timeStamp": f"2026-06-01T09:00:{n:02d}.000Z"}
                for n in range(50)
            ]
        )
        proc = api.proc

        def slow_body() -> Iterator[bytes]:
            # The request is under way (headers and part of the body sent) when SIGTERM comes.
            yield batch[:100]
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(1.5)
            yield batch[100:]

        answer = http.post(
            "/v1/test/5/candidates/1/events",
            content=slow_body(),
            headers={**headers, "Content-Type": "application/json", "X-Request-ID": "in-flight-1"},
        )
        assert answer.status_code == 201, answer.text
        assert proc.wait(timeout=30) == 0
        # The JSON access line of that request is there, with its request id.
        lines = [orjson.loads(line) for line in api.log_path.read_text().splitlines() if line.startswith("{")]
        access = [line for line in lines if line.get("request_id") == "in-flight-1"]
        assert access and access[-1]["status"] == 201
        assert access[-1]["route"] == "/v1/test/{testId}/candidates/{userId}/events"
    finally:
        api.kill()


# --- workers on the production stack -------------------------------------------------

postgresql_only = pytest.mark.skipif(not ON_POSTGRESQL, reason="runs in the PostgreSQL pass of the suite")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with run_seaweedfs(tmp_path_factory.mktemp("shutdown-s3")) as server:
        yield server


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _start_export(stack: Stack, test_id: int) -> tuple[httpx.Client, dict[str, str], str]:
    headers = stack.token()
    stack.seed_large_test(headers, test_id)
    http = stack.client(0)
    ordered = http.post(f"/v1/test/{test_id}/events", headers=headers)
    assert ordered.status_code == 202, ordered.text
    return http, headers, ordered.json()["jobId"]


@postgresql_only
@pytest.mark.slow
def test_worker_sigterm_hands_the_running_export_back(tmp_path: Path, s3: SeaweedS3) -> None:
    # A slow link to S3 keeps the export uploading for several seconds.
    host, port = s3.endpoint_url.removeprefix("http://").split(":")
    proxy = ThrottledProxy(host, int(port), 4 * 1024 * 1024).start()
    stack = Stack(tmp_path, s3, "redis", s3_via=proxy.url)
    try:
        stack.start_apis(1)
        http, headers, job_id = _start_export(stack, 700)
        first = stack.start_worker("w1")
        assert first.proc is not None
        owner = wait_until(lambda: stack.job_row(job_id)["lease_owner"], 60, "the worker to claim the job")
        assert owner.split(":")[1] == str(first.proc.pid)
        wait_until(lambda: stack.job_row(job_id)["status"] == "running", 30, "the job to run")
        time.sleep(0.5)

        first.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # Exits 0 well within the lease time plus the wait for its threads (3 s lease here).
        assert first.proc.wait(timeout=15) == 0, first.log()
        assert time.monotonic() - signalled < 10
        row = stack.job_row(job_id)
        # Handed back, not left to expire: queued, no owner, the attempt not counted.
        assert (row["status"], row["lease_owner"], row["attempts"]) == ("queued", None, 0), row
        assert "released" in first.log()

        # Another worker takes it and finishes it.
        stack.start_worker("w2")
        status = wait_until(
            lambda: (
                (s := http.get("/v1/test/700/events", params={"jobId": job_id}, headers=headers).json())[
                    "status"
                ]
                in ("finished", "failed")
                and s
            ),
            180,
            "the job to end on the second worker",
        )
        assert status["status"] == "finished", status
        assert stack.job_row(job_id)["attempts"] == 1

        # The API's /metrics adds up every process of the host (multiprocess mode): the
        # first worker's hand-back and the second's finished export, counted in workers. The
        # worker counts an export once its publication is committed, so just after the
        # status says "finished": wait for the count rather than race it.
        finished = ("examtrail_export_runs_total", (("outcome", "finished"),))
        samples = wait_until(
            lambda: (found := scrape(stack.apis[0].base_url)).get(finished) == 1 and found,
            30,
            "the second worker's export to be counted",
        )
        assert samples[("examtrail_export_runs_total", (("outcome", "released"),))] == 1
        assert samples[("examtrail_export_runs_total", (("outcome", "finished"),))] == 1
        assert samples[("examtrail_export_duration_seconds_count", ())] == 1
        assert samples[("examtrail_export_bytes_sum", ())] == status["fileSize"]
        assert samples[("examtrail_export_jobs", (("status", "finished"),))] == 1
    finally:
        stack.stop()
        proxy.stop()


@postgresql_only
@pytest.mark.slow
def test_api_sigterm_hands_back_the_export_of_its_own_worker(tmp_path: Path, s3: SeaweedS3) -> None:
    host, port = s3.endpoint_url.removeprefix("http://").split(":")
    # Slower than for a standalone worker: the API's S3 connection, opened at start-up,
    # idles while the test is seeded and so has a head start on the proxy's rate.
    proxy = ThrottledProxy(host, int(port), 1024 * 1024).start()
    stack = Stack(tmp_path, s3, "redis", s3_via=proxy.url)
    # No broker: the API process runs the jobs on its own threads (the embedded worker).
    del stack.env["EXAMTRAIL_BROKER_URL"]
    try:
        stack.start_apis(1)
        api = stack.apis[0]
        assert api.proc is not None
        _, _, job_id = _start_export(stack, 701)
        wait_until(lambda: stack.job_row(job_id)["status"] == "running", 60, "the job to run")
        time.sleep(0.5)
        api.proc.send_signal(signal.SIGTERM)
        assert api.proc.wait(timeout=20) == 0, api.log()
        row = stack.job_row(job_id)
        assert (row["status"], row["lease_owner"], row["attempts"]) == ("queued", None, 0), row
        assert "released" in api.log()
        proxy.rate = 1 << 40  # full speed for the rest

        # The next start picks it up at once (its sweeper's first pass) and finishes it.
        restarted = ExamtrailProcess.server(stack.env, stack.logs, name="api-again").start()
        stack.apis.append(restarted)
        wait_until(lambda: stack.job_row(job_id)["status"] == "finished", 180, "the job to finish")
        assert stack.job_row(job_id)["attempts"] == 1
    finally:
        stack.stop()
        proxy.stop()
