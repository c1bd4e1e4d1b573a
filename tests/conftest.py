"""Shared fixtures: settings on a throw-away database, the runtime, and an HTTP client.

``EXAMTRAIL_TEST_DB=postgresql`` runs the same tests on PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from examtrail.app import create_app
from examtrail.core.settings import Settings
from examtrail.runtime import Runtime, build_runtime, set_runtime
from tests.support import db
from tests.support.api import bearer, create_client, get_token


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database for this xdist worker (SQLite template file or PG database)."""
    if db.backend() == "postgresql":
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        url = db.recreate_pg_database(f"examtrail_test_{worker}")
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
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key="test-secret-key-0123456789abcdef0123456789",
        public_url="http://testserver",
        webhook_allow_private=True,
        sweep_interval_seconds=0.2,
        job_lease_seconds=3,
        webhook_retry_schedule=[0, 1, 1],
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = build_runtime(settings)
    set_runtime(rt)
    yield rt
    set_runtime(None)
    rt.close()


@pytest.fixture
def http(runtime: Runtime) -> Iterator[TestClient]:
    """The app with its in-process worker running, as ``make run`` serves it."""
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        yield client


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
