"""A live ``examtrail serve`` with a client, for the contract tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.deployment import PRODUCTION, server_env
from tests.support.ports import free_port
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
def live_api(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[LiveApi]:
    """``examtrail serve`` on the pass's deployment: embedded, or (PostgreSQL) with the pass's
    object store and broker and a worker process beside it, so the fast paths and the store's
    links that only the production deployment has are fuzzed too."""
    root = tmp_path_factory.mktemp("contract")
    port = free_port()
    env = server_env(
        root / "data",
        request,
        # The worker's links (export files, webhook payloads) name the API too.
        EXAMTRAIL_PUBLIC_URL=f"http://127.0.0.1:{port}",
        # Subscriptions are verified against the local receiver only (see schemathesis_hooks.py).
        EXAMTRAIL_WEBHOOK_ALLOW_PRIVATE="true",
        EXAMTRAIL_WEBHOOK_TIMEOUT_SECONDS="2",
        EXAMTRAIL_WEBHOOK_RETRY_SCHEDULE="0",
    )
    migrated = run_cli(["db", "upgrade"], env)
    assert migrated.returncode == 0, migrated.stderr
    # Every scope: the erasure, legal hold and audit calls are fuzzed too, not only refused (403).
    created = run_cli(
        ["clients", "create", "--tenant", "contract", "--scopes", "ingest,export,erase,audit", "--json"], env
    )
    assert created.returncode == 0, created.stderr
    credentials = json.loads(created.stdout)
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(Receiver(root / "receiver.log"))
        if PRODUCTION:
            stack.enter_context(ExamtrailProcess.worker(env, root / "logs", threads=1))
        process = stack.enter_context(ExamtrailProcess.server(env, root / "logs", port=port))
        yield LiveApi(process, env, credentials["clientId"], credentials["apiKey"], receiver)
