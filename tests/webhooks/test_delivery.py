"""Notifications end to end, through the in-process worker to a real receiver process."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from examtrail.core import crypto
from examtrail.core.db import transaction, utcnow
from examtrail.runtime import Runtime
from examtrail.webhooks import repository, sender, service
from examtrail.webhooks.models import WebhookDelivery
from examtrail.webhooks.service import DELIVER_TASK
from tests.support.api import fetch
from tests.support.receiver import Receiver
from tests.webhooks.helpers import (
    FAILED,
    FINISHED,
    accepted,
    deliveries,
    export,
    subscribe,
    verify,
    wait_for_delivery,
)


def unsent_deliveries(runtime: Runtime) -> int:
    """Deliveries a worker could still send (pending or in flight)."""
    with runtime.sessions() as session:
        query = select(func.count()).where(WebhookDelivery.status.in_(("pending", "sending")))
        return int(session.scalar(query) or 0)


def all_deliveries(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_finished_export_notifies_with_signed_payload_and_working_url(
    http: TestClient, headers: dict[str, str], receiver: Receiver
) -> None:
    sub = subscribe(http, headers, receiver.url())
    job = export(http, headers, test_id=42)
    assert job["status"] == "finished"

    [note] = receiver.wait_for(lambda found: len(found) >= 1, what="the notification")
    assert note.method == "POST"
    assert note.headers["content-type"] == "application/json"
    payload = verify(note, sub["secret"])
    assert note.webhook_id and note.webhook_id.startswith("msg_")
    assert abs(int(note.headers["webhook-timestamp"]) - time.time()) < 60

    assert payload["event"] == FINISHED
    assert payload["contextObjectId"] == 42
    assert payload["jobId"] == job["jobId"]
    assert payload["status"] == "finished"
    assert payload["fileSize"] == job["fileSize"]
    assert payload["sha256"] == job["sha256"]
    assert payload["signature"] == job["signature"]  # the export's JWS (examtrail.signing)
    assert payload["attachmentLinksExpire"] == job["attachmentLinksExpire"]
    assert payload["timestamp"] == job["finished"]
    assert "error" not in payload
    assert payload["downloadUrlExpires"].endswith(".000Z")  # whole seconds, like the link
    expires = _parse(payload["downloadUrlExpires"])
    ttl = expires - datetime.now(UTC)
    assert timedelta(seconds=3500) < ttl <= timedelta(seconds=3600)

    # The URL downloads the exported file (local store: served by the app; else from S3).
    download = fetch(http, payload["downloadUrl"])
    assert download.status_code == 200
    assert len(download.content) == payload["fileSize"]
    assert hashlib.sha256(download.content).hexdigest() == payload["sha256"]
    assert len(download.json()["candidates"]) == 2

    delivery = wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded")
    assert delivery["webhookId"] == note.webhook_id
    assert delivery["jobId"] == job["jobId"]
    assert delivery["contextObjectId"] == 42
    assert delivery["nextAttempt"] is None
    [attempt] = delivery["attempts"]
    assert attempt["attempt"] == 1
    assert attempt["trigger"] == "initial"
    assert attempt["statusCode"] == 200
    assert attempt["succeeded"] is True
    assert attempt["error"] is None
    assert attempt["durationMs"] >= 0
    assert attempt["nextRetry"] is None


def test_failed_export_notifies_the_failed_event(
    http: TestClient, headers: dict[str, str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished_sub = subscribe(http, headers, receiver.url("/finished"), event=FINISHED)
    failed_sub = subscribe(http, headers, receiver.url("/failed"), event=FAILED)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("examtrail.exports.service.write_export", broken)
    job = export(http, headers, test_id=7)
    assert job["status"] == "failed"

    [note] = receiver.wait_for(lambda found: len(found) >= 1, path="/failed", what="the failure notification")
    payload = verify(note, failed_sub["secret"])
    assert payload["event"] == FAILED
    assert payload["contextObjectId"] == 7
    assert payload["jobId"] == job["jobId"]
    assert payload["status"] == "failed"
    assert payload["error"] == {"code": "internal_error", "message": "The export failed unexpectedly."}
    assert "downloadUrl" not in payload
    assert "sha256" not in payload
    assert "signature" not in payload
    wait_for_delivery(http, headers, failed_sub["subscriptionId"], "succeeded")
    # The "finished" subscriber hears nothing about a failed export.
    assert receiver.notifications("/finished") == []
    assert deliveries(http, headers, finished_sub["subscriptionId"]) == []


def test_endpoint_down_then_up_gets_one_notification_with_one_id(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    sub = subscribe(http, headers, receiver.url())
    receiver.configure("/hook", fail_first=2, fail_status=503)
    export(http, headers)

    notes = receiver.wait_for(lambda found: len(accepted(found)) >= 1, what="an accepted notification")
    assert [n.status for n in notes] == [503, 503, 200]
    assert len({n.webhook_id for n in notes}) == 1
    for note in notes:
        verify(note, sub["secret"])
    assert len({n.json()["jobId"] for n in notes}) == 1

    delivery = wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded", attempts=3)
    assert delivery["attemptCount"] == 3
    assert [a["statusCode"] for a in delivery["attempts"]] == [503, 503, 200]
    assert [a["trigger"] for a in delivery["attempts"]] == ["initial", "retry", "retry"]
    assert delivery["attempts"][0]["nextRetry"] is not None
    assert delivery["attempts"][1]["nextRetry"] is not None
    assert delivery["attempts"][2]["nextRetry"] is None
    # Nothing more can arrive: no delivery is left to send.
    assert unsent_deliveries(runtime) == 0
    assert len(receiver.notifications("/hook")) == 3


@pytest.mark.settings(webhook_retry_schedule=[0, 1, 1, 1, 1, 1])
def test_receiver_process_down_then_restarted(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    sub = subscribe(http, headers, receiver.url())
    receiver.stop()
    export(http, headers)
    failed_once = wait_for_delivery(http, headers, sub["subscriptionId"], ("pending", "sending"), attempts=1)
    assert "connection failed" in (failed_once["attempts"][0]["error"] or "")
    assert failed_once["attempts"][0]["statusCode"] is None
    receiver.start()
    [note] = receiver.wait_for(lambda found: len(accepted(found)) >= 1, what="the notification after restart")
    assert note.webhook_id == failed_once["webhookId"]
    verify(note, sub["secret"])
    wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded")


def test_retry_schedule_exhausted_then_manual_redelivery(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    sub = subscribe(http, headers, receiver.url())
    receiver.configure("/hook", status=500)
    export(http, headers)

    failed = wait_for_delivery(http, headers, sub["subscriptionId"], "failed", timeout=20, attempts=3)
    assert [a["statusCode"] for a in failed["attempts"]] == [500, 500, 500]
    assert failed["attempts"][-1]["nextRetry"] is None
    assert failed["lastStatusCode"] == 500
    assert failed["nextAttempt"] is None
    assert unsent_deliveries(runtime) == 0
    notes = receiver.notifications("/hook")
    assert len(notes) == 3  # len(schedule) attempts, then it stops
    assert {n.webhook_id for n in notes} == {failed["webhookId"]}

    receiver.configure("/hook", status=200)
    response = http.post(
        f"/v1/subscription/{sub['subscriptionId']}/deliveries/{failed['deliveryId']}/redeliver",
        headers=headers,
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    redelivered = wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded", attempts=4)
    assert redelivered["attempts"][3]["trigger"] == "redelivery"
    assert redelivered["attempts"][3]["statusCode"] == 200
    notes = receiver.notifications("/hook")
    assert len(notes) == 4
    assert notes[-1].webhook_id == failed["webhookId"]  # same id: the same notification again
    verify(notes[-1], sub["secret"])

    # Redelivering a succeeded delivery sends it once more.
    again = http.post(
        f"/v1/subscription/{sub['subscriptionId']}/deliveries/{failed['deliveryId']}/redeliver",
        headers=headers,
    )
    assert again.status_code == 202
    receiver.wait_for(lambda found: len(found) == 5, what="the second redelivery")
    assert (
        wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded", attempts=5)["attemptCount"] == 5
    )


def test_redeliver_unknown_delivery_is_404(
    http: TestClient, headers: dict[str, str], receiver: Receiver
) -> None:
    sub = subscribe(http, headers, receiver.url())
    response = http.post(
        f"/v1/subscription/{sub['subscriptionId']}/deliveries/00000000-0000-0000-0000-000000000000/redeliver",
        headers=headers,
    )
    assert response.status_code == 404
    assert response.json()["error"] == "delivery_not_found"


def test_retry_after_is_honoured(http: TestClient, headers: dict[str, str], receiver: Receiver) -> None:
    subscribe(http, headers, receiver.url())
    receiver.configure("/hook", fail_first=1, fail_status=503, retry_after="2")
    export(http, headers)
    notes = receiver.wait_for(lambda found: len(accepted(found)) >= 1, what="the accepted retry")
    assert [n.status for n in notes] == [503, 200]
    # The schedule says ~1 s; the endpoint asked for 2 s.
    assert notes[1].time - notes[0].time >= 1.9


@pytest.mark.settings(webhook_retry_schedule=[0, 60])
def test_gone_disables_the_subscription_and_cancels_its_pending_deliveries(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    sub = subscribe(http, headers, receiver.url())
    sid = sub["subscriptionId"]
    receiver.configure("/hook", sequence=[503], status=410)
    export(http, headers, test_id=1)
    waiting = wait_for_delivery(http, headers, sid, "pending", attempts=1)  # next try in ~60 s
    export(http, headers, test_id=2)

    receiver.wait_for(lambda found: any(n.status == 410 for n in found), what="the 410")
    deadline = time.monotonic() + 10
    while http.get(f"/v1/subscription/{sid}", headers=headers).json()["status"] != "disabled":
        assert time.monotonic() < deadline, "subscription not disabled"
        time.sleep(0.05)
    described = http.get(f"/v1/subscription/{sid}", headers=headers).json()
    assert "410" in described["disabledReason"]
    assert described in http.get("/v1/subscription", headers=headers).json()["subscriptions"]

    by_id = {d["deliveryId"]: d for d in deliveries(http, headers, sid)}
    assert by_id[waiting["deliveryId"]]["status"] == "cancelled"
    gone = next(d for d in by_id.values() if d["deliveryId"] != waiting["deliveryId"])
    assert gone["status"] == "failed"
    assert gone["lastStatusCode"] == 410

    # No more notifications, and a disabled subscription cannot be redelivered. Deliveries
    # are written in the transaction that finishes the job: none exists, none will.
    export(http, headers, test_id=3)
    assert len(deliveries(http, headers, sid)) == 2
    assert unsent_deliveries(runtime) == 0
    assert len(receiver.notifications("/hook")) == 2
    response = http.post(f"/v1/subscription/{sid}/deliveries/{gone['deliveryId']}/redeliver", headers=headers)
    assert response.status_code == 409
    assert response.json()["error"] == "subscription_disabled"


@pytest.mark.settings(webhook_disable_after_days=0.4 / 86_400)  # 0.4 s
def test_subscription_failing_for_too_long_is_disabled(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    sub = subscribe(http, headers, receiver.url())
    receiver.configure("/hook", status=500)
    export(http, headers)
    delivery = wait_for_delivery(http, headers, sub["subscriptionId"], "cancelled", attempts=2)
    assert len(delivery["attempts"]) == 2  # the second failure came more than 0.4 s after the first
    described = http.get(f"/v1/subscription/{sub['subscriptionId']}", headers=headers).json()
    assert described["status"] == "disabled"
    assert "failed since" in described["disabledReason"]


@pytest.mark.settings(webhook_disable_after_days=1.5 / 86_400)  # 1.5 s
def test_success_resets_the_failing_clock(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    sub = subscribe(http, headers, receiver.url())
    receiver.configure("/hook", sequence=[500, 200, 500], status=200)
    first_failure = time.monotonic()
    export(http, headers, test_id=1)
    wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded", attempts=2)
    # The next failure comes later than the window after the first: without the reset
    # the subscription would be disabled by it.
    time.sleep(max(0.0, first_failure + 2.0 - time.monotonic()))
    export(http, headers, test_id=2)
    wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded", attempts=2)
    assert http.get(f"/v1/subscription/{sub['subscriptionId']}", headers=headers).json()["status"] == "active"


def test_deleted_subscription_gets_nothing(
    http: TestClient, headers: dict[str, str], receiver: Receiver, runtime: Runtime
) -> None:
    sub = subscribe(http, headers, receiver.url())
    assert http.delete(f"/v1/subscription/{sub['subscriptionId']}", headers=headers).status_code == 204
    export(http, headers)
    # The job's end wrote no delivery: nothing can be sent later.
    assert all_deliveries(runtime) == 0
    assert receiver.notifications("/hook") == []


def test_only_the_tenants_own_subscriptions_are_notified(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str], receiver: Receiver
) -> None:
    mine = subscribe(http, headers, receiver.url("/a"))
    theirs = subscribe(http, other_headers, receiver.url("/b"))
    export(http, headers)
    receiver.wait_for(lambda found: len(found) == 1, path="/a", what="tenant a's notification")
    wait_for_delivery(http, headers, mine["subscriptionId"], "succeeded")
    assert receiver.notifications("/b") == []
    assert deliveries(http, other_headers, theirs["subscriptionId"]) == []


def test_another_tenant_cannot_redeliver_or_read_deliveries(
    http: TestClient,
    headers: dict[str, str],
    other_headers: dict[str, str],
    receiver: Receiver,
    runtime: Runtime,
) -> None:
    sub = subscribe(http, headers, receiver.url())
    export(http, headers)
    delivery = wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded")
    base = f"/v1/subscription/{sub['subscriptionId']}/deliveries"
    assert http.get(base, headers=other_headers).status_code == 404
    response = http.post(f"{base}/{delivery['deliveryId']}/redeliver", headers=other_headers)
    assert response.status_code == 404
    assert response.json()["error"] == "subscription_not_found"
    # Their own subscription with my delivery id: still not found.
    own = subscribe(http, other_headers, receiver.url("/b"))
    response = http.post(
        f"/v1/subscription/{own['subscriptionId']}/deliveries/{delivery['deliveryId']}/redeliver",
        headers=other_headers,
    )
    assert response.status_code == 404
    assert response.json()["error"] == "delivery_not_found"
    assert unsent_deliveries(runtime) == 0  # the refused redeliveries queued nothing
    assert len(receiver.notifications("/hook")) == 1


@pytest.mark.settings(webhook_allow_private=False)
def test_send_time_check_refuses_an_endpoint_that_became_private(
    http: TestClient, headers: dict[str, str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DNS-rebinding defence: the address is checked again before every attempt."""
    with monkeypatch.context() as rebinding:
        # While subscribing, the name resolves to an address that passes the check...
        rebinding.setattr(sender, "address_problem", lambda _address: None)
        sub = subscribe(http, headers, receiver.url())
    # ...and by the time of the send it points at loopback.
    export(http, headers)
    failed = wait_for_delivery(http, headers, sub["subscriptionId"], "failed", attempts=3)
    for attempt in failed["attempts"]:
        assert attempt["statusCode"] is None
        assert "loopback" in attempt["error"]
    assert receiver.notifications("/hook") == []


class _DroppingQueue:
    """Loses every webhook wake-up message, as a crash between commit and enqueue would."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dropped = 0

    def send(self, task_name: str, *args: Any, delay_ms: int | None = None) -> None:
        if task_name == DELIVER_TASK:
            self.dropped += 1
            return
        self.inner.send(task_name, *args, delay_ms=delay_ms)

    def check(self) -> None:
        self.inner.check()


def test_lost_wake_up_messages_are_recovered_by_the_sweeper(
    http: TestClient,
    headers: dict[str, str],
    receiver: Receiver,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sub = subscribe(http, headers, receiver.url())
    dropping = _DroppingQueue(runtime.queue)
    monkeypatch.setattr(runtime, "queue", dropping)
    export(http, headers)
    assert dropping.dropped >= 1
    monkeypatch.setattr(runtime, "queue", dropping.inner)
    [note] = receiver.wait_for(lambda found: len(found) >= 1, timeout=10, what="the recovered notification")
    verify(note, sub["secret"])
    delivery = wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded")
    assert delivery["attemptCount"] == 1


def test_an_attempt_whose_sender_died_is_taken_over_after_its_lease(
    http: TestClient,
    headers: dict[str, str],
    receiver: Receiver,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sub = subscribe(http, headers, receiver.url())
    dropping = _DroppingQueue(runtime.queue)
    monkeypatch.setattr(runtime, "queue", dropping)
    # The sweeper stays out of it until the dead worker's claim is in place.
    sweeping = threading.Event()
    dispatch_due = service.dispatch_due
    monkeypatch.setattr(service, "dispatch_due", lambda rt: dispatch_due(rt) if sweeping.is_set() else 0)
    export(http, headers)
    with transaction(runtime.sessions) as session:
        delivery_id = session.scalars(select(WebhookDelivery.id)).one()
        # A worker claims it and dies mid-attempt: the row stays "sending" under its lease.
        assert repository.claim(session, delivery_id, "dead-worker", utcnow(), timedelta(seconds=1))
    monkeypatch.setattr(runtime, "queue", dropping.inner)
    sweeping.set()
    [note] = receiver.wait_for(lambda found: len(found) >= 1, timeout=10, what="the taken-over notification")
    verify(note, sub["secret"])
    delivery = wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded")
    assert delivery["attemptCount"] == 2  # the lost attempt counts
    assert [a["attempt"] for a in delivery["attempts"]] == [2]


def test_the_delivery_log_is_newest_first_and_limited(
    http: TestClient, headers: dict[str, str], receiver: Receiver
) -> None:
    sub = subscribe(http, headers, receiver.url())
    export(http, headers, test_id=1)
    wait_for_delivery(http, headers, sub["subscriptionId"], "succeeded")
    export(http, headers, test_id=2)
    receiver.wait_for(lambda found: len(found) == 2, what="two notifications")
    deadline = time.monotonic() + 10
    while [d["status"] for d in deliveries(http, headers, sub["subscriptionId"])] != ["succeeded"] * 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    log = deliveries(http, headers, sub["subscriptionId"])
    assert [d["contextObjectId"] for d in log] == [2, 1]
    limited = http.get(f"/v1/subscription/{sub['subscriptionId']}/deliveries?limit=1", headers=headers)
    assert [d["contextObjectId"] for d in limited.json()["deliveries"]] == [2]
    bad = http.get(f"/v1/subscription/{sub['subscriptionId']}/deliveries?limit=0", headers=headers)
    assert bad.status_code == 422
    assert bad.json()["error"] == "validation_error"


def test_deleting_a_subscription_during_an_attempt_is_clean(
    http: TestClient,
    headers: dict[str, str],
    receiver: Receiver,
    runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded = threading.Event()
    record = service._record

    def record_and_signal(*args: Any) -> float | None:
        try:
            return record(*args)
        finally:
            recorded.set()

    monkeypatch.setattr(service, "_record", record_and_signal)
    sub = subscribe(http, headers, receiver.url())
    receiver.configure("/hook", delay=1.0)
    export(http, headers)
    receiver.wait_for(lambda found: len(found) == 1, what="the attempt in flight")
    assert http.delete(f"/v1/subscription/{sub['subscriptionId']}", headers=headers).status_code == 204
    assert recorded.wait(20), "the sender never recorded the attempt's outcome"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert all_deliveries(runtime) == 0


@pytest.mark.parametrize("fault", ["undecryptable_secret", "payload_error"])
def test_an_attempt_that_cannot_be_prepared_is_logged_and_retried(
    http: TestClient, headers: dict[str, str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    sub = subscribe(http, headers, receiver.url())
    if fault == "undecryptable_secret":
        # As if the service's secret key had changed since the subscription was made.
        monkeypatch.setattr(service, "secret_box", lambda _settings: crypto.SecretBox(b"another key"))
        expected = "cannot be decrypted"
    else:

        def broken(*_args: Any) -> dict[str, Any]:
            raise RuntimeError("store unavailable")

        monkeypatch.setattr(service, "build_payload", broken)
        expected = "internal error"
    export(http, headers)
    failed = wait_for_delivery(http, headers, sub["subscriptionId"], "failed", attempts=3)
    assert all(expected in (a["error"] or "") for a in failed["attempts"])
    assert receiver.notifications("/hook") == []
