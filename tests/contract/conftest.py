"""A live ``examtrail serve`` (embedded deployment) with a client, for the contract tests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.processes import ExamtrailProcess, run_cli
from tests.support.receiver import Receiver


@dataclass
class LiveApi:
    process: ExamtrailProcess
    env: dict[str, str]
    client_id: str
    api_key: str
    receiver: Receiver

    @property
    def base_url(self) -> str:
        return self.process.base_url

    def token(self) -> str:
        response = httpx.post(
            f"{self.base_url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.api_key,
            },
            timeout=10,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


@pytest.fixture(scope="session")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    if os.environ.get("EXAMTRAIL_TEST_DB", "sqlite") != "sqlite":
        # The document is the same on every deployment: the live contract runs once, embedded.
        pytest.skip("the live contract tests run on the embedded deployment (SQLite) only")
    root = tmp_path_factory.mktemp("contract")
    env = {
        "EXAMTRAIL_DATA_DIR": str(root / "data"),
        # Subscriptions are verified against the local receiver only (see schemathesis_hooks.py).
        "EXAMTRAIL_WEBHOOK_ALLOW_PRIVATE": "true",
        "EXAMTRAIL_WEBHOOK_TIMEOUT_SECONDS": "2",
        "EXAMTRAIL_WEBHOOK_RETRY_SCHEDULE": "0",
        "EXAMTRAIL_SWEEP_INTERVAL_SECONDS": "0.5",
    }
    migrated = run_cli(["db", "upgrade"], env)
    assert migrated.returncode == 0, migrated.stderr
    created = run_cli(
        ["clients", "create", "--tenant", "contract", "--scopes", "ingest,export", "--json"], env
    )
    assert created.returncode == 0, created.stderr
    credentials = json.loads(created.stdout)
    with Receiver(root / "receiver.log") as receiver, ExamtrailProcess.server(env, root / "logs") as process:
        yield LiveApi(process, env, credentials["clientId"], credentials["apiKey"], receiver)
