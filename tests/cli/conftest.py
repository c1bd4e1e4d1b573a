"""Pointing the command line at the test's deployment."""

from __future__ import annotations

import os

import pytest

from examtrail.core.settings import Settings, get_settings


def point_cli_at(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the test's database and data folder in the environment (nothing from the shell);
    the caller clears ``get_settings``' cache again when done."""
    for name in list(os.environ):
        if name.startswith("EXAMTRAIL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EXAMTRAIL_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("EXAMTRAIL_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
