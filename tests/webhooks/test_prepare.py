"""A delivery whose export is gone is cancelled with the right reason (not "disabled")."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from examtrail.exports import service as exports_service
from tests.support.receiver import Receiver
from tests.webhooks.helpers import export, subscribe, wait_for_delivery


def test_delivery_of_a_vanished_export_is_cancelled_as_such(
    http: TestClient,
    headers: dict[str, str],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sub = subscribe(http, headers, receiver.url())

    def vanished(*_args: Any, **_kwargs: Any) -> None:
        return None  # as if the job row were deleted between the outbox write and the send

    monkeypatch.setattr(exports_service, "describe_job", vanished)
    caplog.set_level(logging.INFO, logger="examtrail.webhooks.service")
    export(http, headers)
    delivery = wait_for_delivery(http, headers, sub["subscriptionId"], "cancelled")
    assert delivery["lastError"] == "the export no longer exists"
    assert delivery["attemptCount"] == 0  # nothing was sent
    messages = [record.getMessage() for record in caplog.records]
    assert any("the export no longer exists" in message for message in messages)
    assert not any("subscription is disabled" in message for message in messages)
    assert receiver.notifications("/hook") == []
