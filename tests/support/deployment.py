"""The environment of an ``examtrail serve`` / ``worker`` child process on the deployment this
pass of the suite tests (``EXAMTRAIL_TEST_DB``, ``EXAMTRAIL_TEST_STORAGE``, ``EXAMTRAIL_TEST_BROKER``)."""

from __future__ import annotations

import os
import uuid
from functools import partial
from pathlib import Path

import pytest

from tests.support import db

PRODUCTION = db.backend() == "postgresql"
BROKER_URLS = {"redis": "redis://127.0.0.1:6379/0", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/%2F"}


def server_env(data_dir: Path, request: pytest.FixtureRequest, **extra: str) -> dict[str, str]:
    """Embedded: SQLite in ``data_dir``, the worker in the API process. Production (PostgreSQL):
    a fresh database and a queue of its own on the pass's broker (Redis unless RabbitMQ), for
    worker processes to start beside the API; the database is dropped when ``request``'s scope
    ends (after its fixture's own teardown has stopped the processes). S3: a fresh bucket on the
    pass's SeaweedFS."""
    env = {"EXAMTRAIL_DATA_DIR": str(data_dir), "EXAMTRAIL_SWEEP_INTERVAL_SECONDS": "0.5", **extra}
    if PRODUCTION:
        name = db.pg_database_name(f"proc_{uuid.uuid4().hex[:8]}")
        env["EXAMTRAIL_DATABASE_URL"] = db.recreate_pg_database(name)
        request.addfinalizer(partial(db.drop_pg_database, name))
        env["EXAMTRAIL_SECRET_KEY"] = "process-tests-0123456789abcdef0123456789abcdef"
        env["EXAMTRAIL_BROKER_URL"] = BROKER_URLS[os.environ.get("EXAMTRAIL_TEST_BROKER") or "redis"]
        env["EXAMTRAIL_QUEUE_NAME"] = f"proc-{uuid.uuid4().hex[:10]}"
    if os.environ.get("EXAMTRAIL_TEST_STORAGE") == "s3":
        seaweed = request.getfixturevalue("seaweed")
        env.update(seaweed.env(seaweed.create_bucket()))
    return env
