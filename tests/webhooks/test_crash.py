"""Crash safety with real processes: kill -9 the process that sends notifications (``examtrail
serve`` with its embedded worker, or ``examtrail worker`` on a broker) after the job committed
but before its notification got through; after a restart the notification still arrives,
with the same ``webhook-id``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from examtrail.core.settings import Settings
from examtrail.runtime import Runtime
from examtrail.webhooks.models import WebhookDelivery
from tests.support.api import bearer, create_client, get_token
from tests.support.processes import ExamtrailProcess
from tests.support.receiver import Receiver
from tests.webhooks.helpers import accepted, export, subscribe, verify

pytestmark = pytest.mark.slow


# The fixtures' settings that the child processes must not inherit as they are.
_NOT_INHERITED = {"public_url", "webhook_retry_schedule", "sweep_interval_seconds", "webhook_timeout_seconds"}


def _env(settings: Settings) -> dict[str, str]:
    """EXAMTRAIL_* for child processes on the fixtures' database, object store and broker."""
    env: dict[str, str] = {}
    for name in sorted(settings.model_fields_set - _NOT_INHERITED):
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        env[f"EXAMTRAIL_{name.upper()}"] = str(value)
    env.update(
        {
            # SQLite in the data dir (a migrated copy is there), or the fixtures' PostgreSQL.
            "EXAMTRAIL_DATABASE_URL": settings.resolved_database_url,
            "EXAMTRAIL_WEBHOOK_ALLOW_PRIVATE": "true",
            # JSON list form: core/settings.py does not parse the comma form "0,1,1,1" from the
            # environment yet (pydantic-settings JSON-decodes list fields before the validator).
            "EXAMTRAIL_WEBHOOK_RETRY_SCHEDULE": "[0,1,1,1]",
            "EXAMTRAIL_WEBHOOK_TIMEOUT_SECONDS": "1",
            "EXAMTRAIL_SWEEP_INTERVAL_SECONDS": "0.5",
            "EXAMTRAIL_LOG_LEVEL": "INFO",
        }
    )
    return env


class Deployment:
    """``examtrail serve`` alone (embedded worker), or with an ``examtrail worker`` on the broker.

    ``sender`` is the process that sends notifications: the one the test kills.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, embedded: bool) -> None:
        self.env = env
        self.log_dir = log_dir
        self.embedded = embedded
        self.server = ExamtrailProcess.server(env, log_dir)
        worker_env = {**env, "EXAMTRAIL_PUBLIC_URL": self.server.base_url}
        self.worker = None if embedded else ExamtrailProcess.worker(worker_env, log_dir)
        self.restarts = 0

    @property
    def sender(self) -> ExamtrailProcess:
        return self.server if self.worker is None else self.worker

    def start(self) -> None:
        self.server.start()
        if self.worker is not None:
            self.worker.start()

    def kill_sender(self) -> None:
        self.sender.kill()

    def restart_sender(self) -> None:
        self.restarts += 1
        name = f"restart-{self.restarts}"
        if self.worker is None:
            self.server = ExamtrailProcess.server(self.env, self.log_dir, port=self.server.port, name=name)
            self.server.start()
        else:
            self.worker = ExamtrailProcess.worker(self.worker.env, self.log_dir, name=name)
            self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.server.stop()


@pytest.fixture
def deployed(settings: Settings, runtime: Runtime, tmp_path: Path) -> Iterator[Deployment]:
    # ``runtime`` (no worker of its own) is only used to create the client and read the tables.
    deployment = Deployment(_env(settings), tmp_path / "logs", runtime.embedded_worker)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def _deliveries(runtime: Runtime) -> list[WebhookDelivery]:
    with runtime.sessions() as session:
        return list(session.scalars(select(WebhookDelivery)))


@pytest.mark.parametrize("moment", ["between_attempts", "during_attempt"])
def test_notification_survives_kill_9(
    deployed: Deployment, runtime: Runtime, receiver: Receiver, moment: str
) -> None:
    client_id, key = create_client(runtime, "uni-a")
    with httpx.Client(base_url=deployed.server.base_url, timeout=10) as api:
        headers = bearer(get_token(api, client_id, key))
        sub = subscribe(api, headers, receiver.url())
        if moment == "between_attempts":
            # The first attempt fails; the sender dies while the retry is scheduled.
            receiver.configure("/hook", status=503)
        else:
            # The first attempt hangs; the sender dies while it is in flight.
            receiver.configure("/hook", delay=30)
        job = export(api, headers)
        assert job["status"] == "finished", (job, deployed.sender.log())

    first = receiver.wait_for(lambda found: len(found) >= 1, what="the first attempt")
    deployed.kill_sender()
    [delivery] = _deliveries(runtime)
    assert delivery.status in ("pending", "sending"), delivery.status
    assert first[0].webhook_id == delivery.webhook_id

    receiver.configure("/hook", status=200)
    deployed.restart_sender()
    notes = receiver.wait_for(
        lambda found: len(accepted(found)) >= 1, timeout=40, what="the notification after the restart"
    )
    deadline = time.monotonic() + 10
    while _deliveries(runtime)[0].status != "succeeded":
        assert time.monotonic() < deadline, _deliveries(runtime)[0].status
        time.sleep(0.05)
    assert len(accepted(notes)) == 1
    assert {n.webhook_id for n in notes} == {delivery.webhook_id}
    payload = verify(accepted(notes)[0], sub["secret"])
    assert payload["jobId"] == job["jobId"]
    assert payload["sha256"] == job["sha256"]
