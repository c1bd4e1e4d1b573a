"""Logger levels as the service configures them (core.logging), for tests that check what
is logged: a test's caplog otherwise lets every library log at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


@contextmanager
def configured_levels(loggers: Mapping[str, Mapping[str, Any]]) -> Iterator[None]:
    """Set the levels of ``logging_config(...)["loggers"]`` for a while, then restore them."""
    previous = {name: logging.getLogger(name).level for name in loggers}
    try:
        for name, config in loggers.items():
            logging.getLogger(name).setLevel(config["level"])
        yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)
