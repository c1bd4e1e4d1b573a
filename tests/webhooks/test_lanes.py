"""A dripping receiver cannot delay another tenant's export, and a send in flight is never
sent twice (finding 1): webhook sends have their own queue lane and threads, and the
delivery lease outlasts the overall deadline. Runs on the in-process broker and on Redis."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from examtrail.core.settings import Settings
from examtrail.runtime import Runtime
from examtrail.tasks import WEBHOOKS_LANE, registry
from examtrail.webhooks import service
from tests.support.api import seed_test, wait_for_job
from tests.support.receiver import Receiver
from tests.webhooks.helpers import FINISHED, subscribe


def test_the_lease_always_outlasts_the_deadline() -> None:
    for timeout in (0.5, 10, 30, 300):
        lease = service.delivery_lease(Settings(_env_file=None, webhook_timeout_seconds=timeout))
        assert lease.total_seconds() >= timeout + 30


def test_webhook_sends_are_routed_to_their_own_lane(runtime: Runtime) -> None:
    assert registry().lane_of(service.DELIVER_TASK) == WEBHOOKS_LANE
    routes = registry().routes(runtime.settings.queue_name)
    assert routes[service.DELIVER_TASK] == f"{runtime.settings.queue_name}-webhooks"
    assert routes["export.run"] == runtime.settings.queue_name


# One attempt each: counts stay exact.
@pytest.mark.settings(webhook_timeout_seconds=5.0, webhook_retry_schedule=[0])
def test_a_dripping_receiver_does_not_delay_another_tenants_export(
    http: TestClient,
    headers: dict[str, str],
    other_headers: dict[str, str],
    receiver: Receiver,
    runtime: Runtime,
) -> None:
    deadline = runtime.settings.webhook_timeout_seconds
    subscribe(http, headers, receiver.url("/drip"))
    receiver.configure("/drip", drip=0.5)  # dribbles past the deadline once subscribed
    for test_id in (1, 2, 3, 4):
        seed_test(http, headers, test_id=test_id, candidates=1, events_per_candidate=1)
    seed_test(http, other_headers, test_id=99, candidates=1, events_per_candidate=1)

    # Tenant A's exports end quickly; their notifications now hold every webhook thread.
    for test_id in (1, 2, 3, 4):
        job = http.post(f"/v1/test/{test_id}/events", headers=headers).json()["jobId"]
        wait_for_job(http, headers, test_id, job, timeout=30)
    receiver.wait_for(lambda found: len(found) >= 2, path="/drip", what="two sends in flight")

    # Tenant B's tiny export is not stuck behind them.
    started = time.monotonic()
    job = http.post("/v1/test/99/events", headers=other_headers).json()["jobId"]
    status = wait_for_job(http, other_headers, 99, job, timeout=30)
    took = time.monotonic() - started
    assert status["status"] == "finished"
    assert took < deadline - 1, f"another tenant's export took {took:.1f}s behind a dripping receiver"

    # Every notification is sent exactly once (cut off at the deadline, never re-sent in flight).
    found = receiver.wait_for(lambda f: len(f) >= 4, path="/drip", timeout=4 * deadline + 20)
    time.sleep(2)
    counts = Counter(r.webhook_id for r in receiver.notifications("/drip"))
    assert len(counts) == 4 and set(counts.values()) == {1}, counts
    assert all(r.event == FINISHED for r in found)
