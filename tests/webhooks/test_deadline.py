"""One overall deadline per webhook request, however the receiver dribbles (finding 1)."""

from __future__ import annotations

import time
from unittest import mock

import httpx
import pytest

from examtrail.webhooks import sender
from tests.support.receiver import Receiver

# The deadline must hold to within a second; the margin absorbs a loaded test machine.
SLACK = 1.5


def test_a_dripping_receiver_is_cut_off_at_the_deadline(receiver: Receiver) -> None:
    receiver.configure("/drip", drip=0.25)  # each byte well inside any per-read timeout
    started = time.monotonic()
    result = sender.post(receiver.url("/drip"), b"{}", {}, timeout=2.0, allow_private=True)
    took = time.monotonic() - started
    assert result.status_code is None and not result.ok
    assert "deadline" in (result.error or "")
    assert 1.9 <= took <= 2.0 + SLACK, took
    assert result.duration_ms <= (2.0 + SLACK) * 1000


def test_a_hanging_receiver_is_cut_off_at_the_deadline(receiver: Receiver) -> None:
    receiver.configure("/hang", delay=120)
    started = time.monotonic()
    result = sender.post(receiver.url("/hang"), b"{}", {}, timeout=1.5, allow_private=True)
    took = time.monotonic() - started
    assert result.status_code is None
    assert 1.4 <= took <= 1.5 + SLACK, took


def test_a_fast_dripping_answer_within_the_deadline_succeeds(receiver: Receiver) -> None:
    receiver.configure("/drip", drip=0.001)
    result = sender.post(receiver.url("/drip"), b"{}", {}, timeout=10.0, allow_private=True)
    assert result.status_code == 200, result


def test_name_resolution_counts_against_the_deadline() -> None:
    def hanging_resolver(*_args: object, **_kwargs: object) -> list[object]:
        time.sleep(4)
        return []

    with mock.patch("socket.getaddrinfo", hanging_resolver):
        started = time.monotonic()
        result = sender.post("http://hangs.example/x", b"{}", {}, timeout=1.0, allow_private=True)
        took = time.monotonic() - started
        assert result.status_code is None
        assert took <= 1.0 + SLACK, took
        with pytest.raises(sender.EndpointUnresolvableError):
            sender.check_endpoint_within(httpx.URL("http://hangs.example/x"), allow_private=True, timeout=0.5)
