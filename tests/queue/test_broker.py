"""The queue backends the settings accept are the ones ``queue.broker`` builds."""

from __future__ import annotations

from examtrail.core.settings import BROKER_SCHEMES
from examtrail.queue.broker import BROKERS


def test_the_settings_accept_exactly_the_known_broker_schemes() -> None:
    assert set(BROKERS) == {"", *BROKER_SCHEMES}
