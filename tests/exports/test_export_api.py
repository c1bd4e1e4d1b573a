from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from tests.support.api import seed_test, wait_for_job


def test_order_poll_download_roundtrip(http: TestClient, headers: dict[str, str]) -> None:
    sent = seed_test(http, headers, test_id=42, candidates=3, events_per_candidate=4)
    ordered = http.post("/v1/test/42/events", headers=headers)
    assert ordered.status_code == 202
    job = ordered.json()
    assert ordered.headers["location"] == f"/v1/test/42/events?jobId={job['jobId']}"
    status = wait_for_job(http, headers, 42, job["jobId"])
    assert status["status"] == "finished", status
    assert status["progress"] == 100
    url = httpx.URL(status["downloadUrl"])
    body = http.get(url.raw_path.decode()).json()
    assert [c["userId"] for c in body["candidates"]] == sorted(sent)
    assert sum(len(c["events"]) for c in body["candidates"]) == 12
