"""Fault tests on the production stack with real processes: two API servers and two
workers on PostgreSQL, SeaweedFS S3 and Redis (and RabbitMQ), killed and cut off."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support import db
from tests.support.api import bearer, get_token
from tests.support.bulk import load_events
from tests.support.deployment import BROKER_URLS
from tests.support.processes import ExamtrailProcess, run_cli
from tests.support.seaweedfs import SeaweedS3, run_seaweedfs
from tests.support.throttle import ThrottledProxy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("EXAMTRAIL_TEST_DB") != "postgresql", reason="runs in the PostgreSQL pass of the suite"
    ),
]

CANDIDATES = 400
EVENTS_PER_CANDIDATE = 750  # 300,000 events, ~45 MB of JSON: several multipart parts


class Stack:
    def __init__(self, tmp_path: Path, s3: SeaweedS3, broker: str, s3_via: str | None = None) -> None:
        name = f"examtrail_stack_{uuid.uuid4().hex[:10]}"
        self.database = name
        self.database_url = db.recreate_pg_database(name)
        self.s3 = s3
        self.bucket = s3.create_bucket()
        self.logs = tmp_path / "logs"
        self.env = {
            "EXAMTRAIL_DATA_DIR": str(tmp_path / "data"),
            "EXAMTRAIL_DATABASE_URL": self.database_url,
            "EXAMTRAIL_SECRET_KEY": "stack-secret-0123456789abcdef0123456789abcdef",
            "EXAMTRAIL_BROKER_URL": BROKER_URLS[broker],
            "EXAMTRAIL_QUEUE_NAME": f"stack-{uuid.uuid4().hex[:10]}",
            "EXAMTRAIL_JOB_LEASE_SECONDS": "3",
            "EXAMTRAIL_SWEEP_INTERVAL_SECONDS": "0.5",
            "EXAMTRAIL_S3_PART_SIZE": str(5 * 1024 * 1024),
            **s3.env(self.bucket),
        }
        if s3_via is not None:
            # Workers and APIs reach S3 through ``s3_via``; links still point at S3 itself.
            self.env["EXAMTRAIL_S3_ENDPOINT_URL"] = s3_via
            self.env["EXAMTRAIL_S3_PUBLIC_ENDPOINT_URL"] = s3.endpoint_url
        self.apis: list[ExamtrailProcess] = []
        self.workers: list[ExamtrailProcess] = []
        migrated = run_cli(["db", "upgrade"], self.env)
        assert migrated.returncode == 0, migrated.stderr

    def start_apis(self, count: int = 2) -> None:
        for n in range(count):
            # Every process hands out links based on the same public URL: the first API's.
            api = ExamtrailProcess.server(self.env, self.logs, name=f"api{n}")
            if self.apis:
                api.env["EXAMTRAIL_PUBLIC_URL"] = self.apis[0].env["EXAMTRAIL_PUBLIC_URL"]
            self.apis.append(api.start())

    def start_worker(self, name: str) -> ExamtrailProcess:
        worker = ExamtrailProcess.worker(self.env, self.logs, name=name).start()
        self.workers.append(worker)
        return worker

    def client(self, n: int) -> httpx.Client:
        return httpx.Client(base_url=self.apis[n % len(self.apis)].base_url, timeout=30)

    def token(self, tenant: str = "uni-a") -> dict[str, str]:
        created = run_cli(["clients", "create", "--tenant", tenant, "--json"], self.env)
        assert created.returncode == 0, created.stderr
        body = json.loads(created.stdout)
        return bearer(get_token(self.client(0), body["clientId"], body["apiKey"]))

    def seed_large_test(self, headers: dict[str, str], test_id: int) -> int:
        http = self.client(0)
        assert http.put(f"/v1/test/{test_id}", json={"title": "large"}, headers=headers).status_code == 201
        people = [{"userId": n, "candidateId": f"c{n}"} for n in range(CANDIDATES)]
        assert http.put(f"/v1/test/{test_id}/candidates", json=people, headers=headers).status_code == 200
        return load_events(self.database_url, test_id, EVENTS_PER_CANDIDATE)

    def job_row(self, job_id: str) -> dict[str, Any]:
        import psycopg

        with psycopg.connect(self.database_url.replace("+psycopg", "")) as conn:
            row = conn.execute(
                "SELECT status, lease_owner, attempts, storage_key FROM export_jobs WHERE id = %s", (job_id,)
            ).fetchone()
        assert row is not None
        return dict(zip(("status", "lease_owner", "attempts", "storage_key"), row, strict=True))

    def stop(self) -> None:
        for process in [*self.workers, *self.apis]:
            process.kill()
        self.s3.delete_bucket(self.bucket)
        import psycopg

        with psycopg.connect(db.PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with run_seaweedfs(tmp_path_factory.mktemp("stack-s3")) as server:
        yield server


def poll(
    http_clients: list[httpx.Client], headers: dict[str, str], test_id: int, job_id: str
) -> dict[str, Any]:
    """Status through the API processes in turn (any of them can answer)."""
    poll.calls = getattr(poll, "calls", 0) + 1  # type: ignore[attr-defined]
    http = http_clients[poll.calls % len(http_clients)]  # type: ignore[attr-defined]
    response = http.get(f"/v1/test/{test_id}/events", params={"jobId": job_id}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def check_file(status: dict[str, Any], events: int) -> None:
    raw = httpx.get(status["downloadUrl"], timeout=120).content
    assert len(raw) == status["fileSize"]
    assert hashlib.sha256(raw).hexdigest() == status["sha256"]
    body = orjson.loads(raw)
    assert [c["userId"] for c in body["candidates"]] == list(range(CANDIDATES))
    assert sum(len(c["events"]) for c in body["candidates"]) == events
    first = body["candidates"][0]["events"]
    assert [e["timeStamp"] for e in first] == sorted(e["timeStamp"] for e in first)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_worker_killed_mid_export_job_finishes_once(tmp_path: Path, s3: SeaweedS3, broker: str) -> None:
    # A slow link to S3 (~6 MB/s) keeps the ~45 MB upload going for several seconds.
    host, port = s3.endpoint_url.removeprefix("http://").split(":")
    proxy = ThrottledProxy(host, int(port), 6 * 1024 * 1024).start()
    stack = Stack(tmp_path, s3, broker, s3_via=proxy.url)
    try:
        stack.start_apis(2)
        headers = stack.token()
        events = stack.seed_large_test(headers, 900)
        clients = [stack.client(0), stack.client(1)]

        ordered = clients[1].post("/v1/test/900/events", headers=headers)
        assert ordered.status_code == 202
        job_id = ordered.json()["jobId"]
        # API processes only enqueue: with no worker, the job waits.
        time.sleep(1)
        assert poll(clients, headers, 900, job_id)["status"] == "queued"

        workers = {w.proc.pid: w for w in (stack.start_worker("w1"), stack.start_worker("w2")) if w.proc}
        owner = wait_until(lambda: stack.job_row(job_id)["lease_owner"], 30, "a worker to claim the job")
        victim = workers[int(owner.split(":")[1])]
        wait_until(lambda: poll(clients, headers, 900, job_id)["candidatesDone"] > 0, 30, "progress")
        victim.kill()
        assert poll(clients, headers, 900, job_id)["status"] == "running"

        status = wait_until(
            lambda: (s := poll(clients, headers, 900, job_id))["status"] in ("finished", "failed") and s,
            120,
            "the job to end after the kill",
        )
        assert status["status"] == "finished", status
        row = stack.job_row(job_id)
        assert row["attempts"] == 2
        assert row["lease_owner"] != owner
        check_file(status, events)
        keys = list(s3.client().list_objects_v2(Bucket=stack.bucket, Prefix="exports/").get("Contents", []))
        # Exactly one published file; the dead worker's upload was never completed.
        assert [k["Key"] for k in keys] == [row["storage_key"]]
        uploads = s3.client().list_multipart_uploads(Bucket=stack.bucket).get("Uploads", [])
        assert len(uploads) <= 1  # the killed worker's unfinished upload, never visible as an object
    finally:
        stack.stop()
        proxy.stop()


def test_s3_outage_during_export_retries_or_fails_cleanly(tmp_path: Path) -> None:
    with run_seaweedfs(tmp_path / "s3") as own_s3:
        host, port = own_s3.endpoint_url.removeprefix("http://").split(":")
        proxy = ThrottledProxy(host, int(port), 6 * 1024 * 1024).start()
        stack = Stack(tmp_path, own_s3, "redis", s3_via=proxy.url)
        try:
            stack.start_apis(2)
            headers = stack.token()
            events = stack.seed_large_test(headers, 901)
            clients = [stack.client(0), stack.client(1)]
            stack.start_worker("w1")
            stack.start_worker("w2")
            assert clients[0].get("/readyz").status_code == 200

            job_id = clients[0].post("/v1/test/901/events", headers=headers).json()["jobId"]
            wait_until(
                lambda: poll(clients, headers, 901, job_id)["status"] == "running", 30, "the job to run"
            )
            own_s3.stop()
            ready = clients[1].get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["objectStore"] == "unavailable"
            time.sleep(2)
            own_s3.start()

            status = wait_until(
                lambda: (s := poll(clients, headers, 901, job_id))["status"] in ("finished", "failed") and s,
                180,
                "the job to end after the outage",
            )
            keys = [
                k["Key"]
                for k in own_s3.client()
                .list_objects_v2(Bucket=stack.bucket, Prefix="exports/")
                .get("Contents", [])
            ]
            if status["status"] == "finished":
                check_file(status, events)
                assert keys == [stack.job_row(job_id)["storage_key"]]
            else:
                assert status["error"]["code"] == "storage_unavailable"
                assert keys == []
        finally:
            stack.stop()
            proxy.stop()
