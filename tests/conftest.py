"""Shared fixtures: settings on a throw-away database, the runtime, and an HTTP client.

The same suite runs on either deployment:
- ``EXAMTRAIL_TEST_DB``: ``sqlite`` (default) or ``postgresql``;
- ``EXAMTRAIL_TEST_STORAGE``: ``local`` (default) or ``s3`` (a real SeaweedFS, started here);
- ``EXAMTRAIL_TEST_BROKER``: empty (in-process, default), ``redis`` or ``rabbitmq``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from examtrail.app import create_app
from examtrail.core.settings import Settings
from examtrail.runtime import Runtime
from examtrail.tasks import background_worker, build_runtime
from tests.support import db
from tests.support.api import bearer, create_client, get_token
from tests.support.deployment import BROKER_URLS
from tests.support.seaweedfs import SeaweedS3, run_seaweedfs

TEST_STORAGE = os.environ.get("EXAMTRAIL_TEST_STORAGE", "local")
TEST_BROKER = os.environ.get("EXAMTRAIL_TEST_BROKER", "")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real SeaweedFS with an S3 gateway, shared by the tests of this xdist worker."""
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database for this xdist worker (SQLite template file or PG database)."""
    if db.backend() == "postgresql":
        # EXAMTRAIL_TEST_PG_PREFIX lets several checkouts share one PostgreSQL server.
        url = db.recreate_pg_database(db.pg_database_name("suite"))
        from examtrail.core.migrate import upgrade

        upgrade(Settings(database_url=url))
        return url
    path = tmp_path_factory.mktemp("template") / "examtrail.db"
    db.migrate_template(path)
    return str(path)


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> str:
    if db.backend() == "postgresql":
        db.truncate_all(database_template)
        return database_template
    return db.copy_sqlite(Path(database_template), tmp_path / "data")


@pytest.fixture
def deployment(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Settings for the object store and broker this run tests (see module docstring)."""
    extra: dict[str, Any] = {}
    bucket = None
    if TEST_STORAGE == "s3":
        server: SeaweedS3 = request.getfixturevalue("seaweed")
        bucket = f"test-{uuid.uuid4().hex[:20]}"
        extra.update(server.settings_overrides(bucket))
    if TEST_BROKER:
        extra["broker_url"] = BROKER_URLS[TEST_BROKER]
        # A queue per test: no test's worker picks up another test's messages.
        extra["queue_name"] = f"test-{uuid.uuid4().hex[:12]}"
    yield extra
    if bucket is not None:
        server.delete_bucket(bucket)


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path, deployment: dict[str, Any]
) -> Settings:
    """Test settings; ``@pytest.mark.settings(name=value)`` overrides them before anything runs.

    Tests never assign to ``runtime.settings``: worker threads may already be reading it.
    """
    overrides: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("settings"))):
        overrides.update(marker.kwargs)
    base: dict[str, Any] = dict(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key="test-secret-key-0123456789abcdef0123456789",
        public_url="http://testserver",
        webhook_allow_private=True,
        sweep_interval_seconds=0.2,
        job_lease_seconds=3,
        webhook_retry_schedule=[0, 1, 1],
        **deployment,
    )
    return Settings(**(base | overrides))


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = build_runtime(settings)
    rt.store.ensure_ready()
    yield rt
    if not rt.embedded_worker:
        rt.broker.flush_all()
    rt.close()


@pytest.fixture
def http(runtime: Runtime) -> Iterator[TestClient]:
    """The app with a worker running: in-process (as ``make run``) or on the test's broker."""
    worker = None if runtime.embedded_worker else background_worker(runtime)
    if worker is not None:
        worker.start()
    try:
        with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
            yield client
    finally:
        if worker is not None:
            worker.stop()


@pytest.fixture
def headers(http: TestClient, runtime: Runtime) -> dict[str, str]:
    """Bearer headers of a client of tenant 'uni-a' with both scopes."""
    client_id, key = create_client(runtime, "uni-a")
    return bearer(get_token(http, client_id, key))


@pytest.fixture
def other_headers(http: TestClient, runtime: Runtime) -> dict[str, str]:
    """Bearer headers of a client of another tenant, 'uni-b'."""
    client_id, key = create_client(runtime, "uni-b")
    return bearer(get_token(http, client_id, key))
