"""A client generated from the served document (openapi-python-client) does the whole flow typed."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.contract.conftest import LiveApi

pytestmark = pytest.mark.slow

PACKAGE = "examtrail_generated_client"


@pytest.fixture(scope="module")
def generated(live_api: LiveApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Generates the client into a temporary folder and imports it (as ``g.<module path>``)."""
    out = tmp_path_factory.mktemp("generated")
    venv_bin = str(Path(sys.executable).parent)
    result = subprocess.run(
        [
            str(Path(venv_bin) / "openapi-python-client"),
            "generate",
            "--url",
            f"{live_api.base_url}/openapi.json",
            "--meta",
            "none",
            "--output-path",
            str(out / PACKAGE),
        ],
        cwd=out,
        env={**os.environ, "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")])},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The generator warns about every schema it could not turn into code: there must be none.
    assert "Unable to" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(out))
    try:

        class Modules:
            def __getattr__(self, name: str) -> ModuleType:
                return importlib.import_module(f"{PACKAGE}.{name}")

            def module(self, path: str) -> ModuleType:
                return importlib.import_module(f"{PACKAGE}.{path}")

        yield Modules()
    finally:
        sys.path.remove(str(out))
        for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
            del sys.modules[name]


def test_order_poll_download_with_typed_models(live_api: LiveApi, generated: Any) -> None:
    client_mod = generated.module("client")
    models = generated.module("models")
    token_api = generated.module("api.auth.get_o_auth_token")
    put_test = generated.module("api.ingest.put_test")
    put_candidates = generated.module("api.ingest.put_candidates")
    post_events = generated.module("api.ingest.post_events")
    order = generated.module("api.export.order_test_events_export")
    status_api = generated.module("api.export.get_test_events_export")

    anonymous = client_mod.Client(base_url=live_api.base_url)
    token = token_api.sync(
        client=anonymous,
        body=models.GetOAuthTokenBody(
            grant_type=models.GetOAuthTokenBodyGrantType.CLIENT_CREDENTIALS,
            client_id=live_api.client_id,
            client_secret=live_api.api_key,
        ),
    )
    assert isinstance(token, models.TokenResponse)
    client = client_mod.AuthenticatedClient(base_url=live_api.base_url, token=token.access_token)

    test = put_test.sync(test_id=901, client=client, body=models.TestIn(title="Generated client"))
    assert isinstance(test, models.TestOut)
    assert isinstance(test.created, datetime)
    people = [models.CandidateIn(user_id=u, candidate_id=f"c-{u}") for u in (1, 2)]
    counted = put_candidates.sync(test_id=901, client=client, body=people)
    assert isinstance(counted, models.CandidatesResult) and counted.created == 2
    event = models.EventIn(
        event="new_seb_login", time_stamp=datetime.fromisoformat("2026-06-01T09:00:00+00:00")
    )
    recorded = post_events.sync(test_id=901, user_id=1, client=client, body=[event])
    assert isinstance(recorded, models.EventsResult) and recorded.created == 1

    ordered = order.sync(test_id=901, client=client)
    assert isinstance(ordered, models.ExportJobOut)
    assert isinstance(ordered.status, models.JobStatus)
    deadline = time.monotonic() + 60
    status = ordered
    while status.status not in (models.JobStatus.FINISHED, models.JobStatus.FAILED):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
        status = status_api.sync(test_id=901, job_id=ordered.job_id, client=client)
        assert isinstance(status, models.ExportJobOut)
    assert status.status == models.JobStatus.FINISHED
    assert status.progress == 100
    assert isinstance(status.finished, datetime)
    assert isinstance(status.download_url_expires, datetime)

    download = httpx.get(status.download_url, timeout=30)  # a plain GET, no auth header
    assert download.status_code == 200
    body = download.json()
    assert [c["userId"] for c in body["candidates"]] == [1, 2]
    assert len(download.content) == status.file_size


def test_errors_are_typed(live_api: LiveApi, generated: Any) -> None:
    client_mod = generated.module("client")
    models = generated.module("models")
    status_api = generated.module("api.export.get_test_events_export")
    get_test = generated.module("api.ingest.get_test")
    client = client_mod.AuthenticatedClient(base_url=live_api.base_url, token=live_api.token())

    missing = status_api.sync_detailed(test_id=902, job_id="no-such-job", client=client)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.ErrorBody)
    assert missing.parsed.error == "job_not_found"
    assert missing.parsed.message

    unknown = get_test.sync(test_id=902, client=client)
    assert isinstance(unknown, models.ErrorBody) and unknown.error == "test_not_found"

    bad_token = client_mod.AuthenticatedClient(base_url=live_api.base_url, token="nope")
    denied = status_api.sync_detailed(test_id=902, job_id="x", client=bad_token)
    assert denied.status_code == 401
    assert isinstance(denied.parsed, models.ErrorBody) and denied.parsed.error == "invalid_token"
