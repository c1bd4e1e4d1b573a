"""Webhook deliveries in ``/metrics``: by outcome and attempt number, and the job context
on the delivery's log lines."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi.testclient import TestClient

from examtrail.core.logging import record_context
from tests.core.test_metrics import Samples, scrape, value
from tests.support.receiver import Receiver
from tests.webhooks.helpers import export, subscribe, wait_for_delivery

NAME = "examtrail_webhook_deliveries_total"


def _delta(after: Samples, before: Samples, outcome: str, attempt: str) -> float:
    return value(after, NAME, outcome=outcome, attempt=attempt) - value(
        before, NAME, outcome=outcome, attempt=attempt
    )


def test_deliveries_are_counted_by_outcome_and_attempt(
    http: TestClient, headers: dict[str, str], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    sub = subscribe(http, headers, receiver.url())
    receiver.configure("/hook", fail_first=1, fail_status=500)
    before = scrape(http)
    with caplog.at_level(logging.INFO, logger="examtrail.webhooks"):
        job = export(http, headers, test_id=61)
        wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded", attempts=2)
        # Counted right after the attempt is recorded, which the delivery log shows first.
        deadline = time.monotonic() + 10
        while _delta(after := scrape(http), before, "succeeded", "2") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert _delta(after, before, "failed", "1") == 1
    assert _delta(after, before, "succeeded", "2") == 1
    assert _delta(after, before, "succeeded", "1") == 0
    # The failed attempt's log line names the delivery, its job, test and tenant.
    failed = [
        r for r in caplog.records if r.name == "examtrail.webhooks.service" and "failed" in r.getMessage()
    ]
    assert failed
    context = record_context(failed[0])
    assert context["job_id"] == job["jobId"]
    assert context["test_id"] == 61
    assert isinstance(context["tenant"], int)
    assert context["delivery_id"]
