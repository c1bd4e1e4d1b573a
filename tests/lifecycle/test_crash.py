"""Crash safety with real processes: ``kill -9`` the process running an erasure of a large test
(``examtrail serve`` with its embedded worker, or ``examtrail worker`` on a broker) half-way;
the test stays out of sight meanwhile, and after a restart the erasure finishes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from examtrail.auth.models import Tenant
from examtrail.core.settings import Settings
from examtrail.runtime import Runtime
from tests.lifecycle.helpers import counts, erasure_row, keys
from tests.support.api import bearer, create_client, get_token
from tests.webhooks.test_crash import Deployment, _env

pytestmark = pytest.mark.slow

CANDIDATES = 4
EVENTS_PER_CANDIDATE = 500
FILES = 6


@pytest.fixture
def deployed(settings: Settings, runtime: Runtime, tmp_path: Path) -> Iterator[Deployment]:
    # ``runtime`` (no worker of its own) only creates the clients and reads the tables.
    deployment = Deployment(_env(settings), tmp_path / "logs", runtime.embedded_worker)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def _seed(api: httpx.Client, headers: dict[str, str], test_id: int, candidates: int, events: int) -> None:
    assert api.put(f"/v1/test/{test_id}", json={"title": "large"}, headers=headers).status_code == 201
    people = [{"userId": n, "candidateId": f"c{n}"} for n in range(candidates)]
    assert api.put(f"/v1/test/{test_id}/candidates", json=people, headers=headers).status_code == 200
    for user_id in range(candidates):
        batch = [
            {
                "eventId": f"e-{user_id}-{n}",
                "event": "idle",
                "timeStamp": f"2026-06-01T09:00:{n % 60:02d}.{n:03d}Z",
            }
            for n in range(events)
        ]
        response = api.post(f"/v1/test/{test_id}/candidates/{user_id}/events", json=batch, headers=headers)
        assert response.status_code == 201, response.text
    for n in range(min(FILES, candidates * events)):
        user_id = n % candidates
        url = f"/v1/test/{test_id}/candidates/{user_id}/events/e-{user_id}-{n}/files/f{n}.bin"
        assert api.put(url, content=b"x" * 1000, headers=headers).status_code in (200, 201)


@pytest.mark.settings(erasure_sync_max_events=0, erasure_batch_size=1)
def test_erasure_of_a_large_test_survives_kill_9(deployed: Deployment, runtime: Runtime) -> None:
    client_id, key = create_client(runtime, "uni-a", scopes="ingest,export,erase")
    other_id, other_key = create_client(runtime, "uni-b")
    with httpx.Client(base_url=deployed.server.base_url, timeout=30) as api:
        headers = bearer(get_token(api, client_id, key))
        other = bearer(get_token(api, other_id, other_key))
        _seed(api, headers, 42, CANDIDATES, EVENTS_PER_CANDIDATE)
        _seed(api, other, 42, 1, 10)
        ordered = api.post("/v1/test/42/events", headers=headers)
        assert ordered.status_code == 202
        total = CANDIDATES * EVENTS_PER_CANDIDATE
        ours = (f"attachments/{_tenant_id(runtime)}/", f"exports/{_tenant_id(runtime)}/")
        theirs = {k for k in keys(runtime) if not k.startswith(ours)}

        response = api.delete("/v1/test/42", headers=headers)
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        deadline = time.monotonic() + 60
        while erasure_row(runtime, job_id).events_deleted < 50:
            assert time.monotonic() < deadline, deployed.sender.log()
            time.sleep(0.01)
        deployed.kill_sender()

        # Half done, never half visible: the test is gone for every reader.
        job = erasure_row(runtime, job_id)
        assert job.status == "running" and 0 < job.events_deleted < total, (job.status, job.events_deleted)
        assert counts(runtime)["events"] > 10
        if deployed.worker is not None:  # the API is still up (embedded: it was the one killed)
            assert api.get("/v1/test/42", headers=headers).status_code == 404
            assert [t["testId"] for t in api.get("/v1/tests", headers=headers).json()["tests"]] == []

        deployed.restart_sender()
        deadline = time.monotonic() + 90
        while (status := api.get(f"/v1/erasures/{job_id}", headers=headers).json())["status"] != "finished":
            assert status["status"] in ("queued", "running"), status
            assert time.monotonic() < deadline, (status, deployed.sender.log())
            time.sleep(0.1)
        assert status["eventsDeleted"] >= total - job.events_deleted
        assert status["filesDeleted"] >= 1
        assert erasure_row(runtime, job_id).attempts >= 2
        assert api.get("/v1/test/42", headers=other).json()["events"] == 10

    # Nothing of the erased test is left: no row, no object; the other tenant's all there.
    assert counts(runtime) == {"tests": 1, "candidates": 1, "events": 10, "attachments": FILES}
    assert keys(runtime) == theirs


def _tenant_id(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        found = session.scalar(select(Tenant.id).where(Tenant.name == "uni-a"))
        assert found is not None
        return found
