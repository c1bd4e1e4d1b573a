"""Client-side helpers shared by the webhook tests."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import httpx
from standardwebhooks import Webhook

from tests.support.api import seed_test, wait_for_job
from tests.support.receiver import Received

FINISHED = "event_by_candidates_export_finished"
FAILED = "event_by_candidates_export_failed"


def subscribe(
    http: httpx.Client | Any,
    headers: dict[str, str],
    endpoint: str,
    event: str = FINISHED,
    secret: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"event": event, "endpoint": endpoint}
    if secret is not None:
        body["secret"] = secret
    response = http.post("/v1/subscription", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def export(
    http: httpx.Client | Any, headers: dict[str, str], test_id: int = 42, seed: bool = True
) -> dict[str, Any]:
    """Seed a test (optionally), order its export and wait until the job ends."""
    if seed:
        seed_test(http, headers, test_id=test_id, candidates=2, events_per_candidate=3)
    ordered = http.post(f"/v1/test/{test_id}/events", headers=headers)
    assert ordered.status_code == 202, ordered.text
    return wait_for_job(http, headers, test_id, ordered.json()["jobId"], timeout=30)


def deliveries(
    http: httpx.Client | Any, headers: dict[str, str], subscription_id: str
) -> list[dict[str, Any]]:
    response = http.get(f"/v1/subscription/{subscription_id}/deliveries", headers=headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def wait_for_delivery(
    http: httpx.Client | Any,
    headers: dict[str, str],
    subscription_id: str,
    status: str | tuple[str, ...],
    timeout: float = 20.0,
    attempts: int | None = None,
) -> dict[str, Any]:
    """Poll the delivery log until the newest delivery has ``status`` (and ``attempts`` logged)."""
    wanted = (status,) if isinstance(status, str) else status
    deadline = time.monotonic() + timeout
    latest: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        latest = deliveries(http, headers, subscription_id)
        newest = latest[0] if latest else None
        if (
            newest
            and newest["status"] in wanted
            and (attempts is None or len(newest["attempts"]) >= attempts)
        ):
            return newest
        time.sleep(0.05)
    raise AssertionError(f"no delivery reached {wanted} in {timeout}s: {latest}")


def verify(request: Received, secret: str) -> dict[str, Any]:
    """Verify both signatures over the raw body, as a receiver would; returns the payload."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    expected = hmac.new(secret.encode(), request.body, hashlib.sha1).hexdigest()
    assert hmac.compare_digest(request.headers["x-inspera-signature"], expected)
    return payload


def accepted(requests: list[Received]) -> list[Received]:
    return [r for r in requests if r.status is not None and 200 <= r.status < 300]
