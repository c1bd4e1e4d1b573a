"""Slow and hanging receivers cannot stall the API (finding 1): verifications run on a
bounded pool off the request threads, and a full pool answers 503 at once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from examtrail.runtime import Runtime
from tests.support.receiver import Receiver

FINISHED = "event_by_candidates_export_finished"


@pytest.mark.settings(webhook_timeout_seconds=3.0, webhook_verify_threads=4)
def test_hanging_verifications_leave_the_api_answering(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    assert http.put("/v1/test/5", json={"title": "T"}, headers=headers).status_code == 201
    receiver.configure("/hang", delay=120)
    receiver.configure("/drip", drip=0.5)

    def subscribe(index: int) -> tuple[int, str, float]:
        path = "/hang" if index % 2 else "/drip"
        started = time.monotonic()
        response = http.post(
            "/v1/subscription",
            json={"event": FINISHED, "endpoint": receiver.url(path) + f"?n={index}"},
            headers=headers,
        )
        return response.status_code, response.json()["error"], time.monotonic() - started

    with ThreadPoolExecutor(12) as clients:
        futures = [clients.submit(subscribe, i) for i in range(12)]
        time.sleep(1.0)  # the pool is full of hanging verifications by now
        for _ in range(3):
            started = time.monotonic()
            response = http.get("/v1/test/5", headers=headers)
            assert response.status_code == 200
            assert time.monotonic() - started < 2.0, "an unrelated request waited for the verifications"
        results = [future.result() for future in futures]

    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {400, 503}, results
    busy = [r for r in results if r[0] == 503]
    assert busy and all(error == "verification_busy" for _, error, _ in busy), results
    verified = [r for r in results if r[0] == 400]
    assert verified and all(error == "endpoint_verification_failed" for _, error, _ in verified)
    # Each verification ended at the deadline however the receiver dribbled (plus a margin).
    assert all(took <= 3.0 + 2.0 for _, _, took in verified), results
    # The busy answers came at once, not after waiting for a thread.
    assert all(took < 2.0 for _, _, took in busy), results
    assert http.get("/v1/subscription", headers=headers).json()["subscriptions"] == []


def test_busy_answer_is_documented(http: TestClient) -> None:
    operation = http.get("/openapi.json").json()["paths"]["/v1/subscription"]["post"]
    assert "503" in operation["responses"]
    assert "verification_busy" in operation["responses"]["503"]["description"]
