"""``examtrail worker`` imports only what its deployment needs (issue #15: worker RSS).

A real worker start-up (``examtrail.cli.main.start_worker``, what ``python -m examtrail
worker`` runs, on a real broker and object store) in a fresh interpreter, then one pass of
every periodic job; the test reads the child's ``sys.modules``. Module presence, not megabytes:
each module named here costs the idle worker several MB (bench/worker_rss.py measures them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from examtrail.core.settings import Settings
from tests.support.deployment import BROKER_URLS
from tests.support.processes import examtrail_env
from tests.support.seaweedfs import SeaweedS3

CHILD = """
import json, sys
from examtrail.cli.main import start_worker
from examtrail.core.settings import get_settings
from examtrail.tasks import registry

runtime, background = start_worker(get_settings(), 1, 1)
try:
    for job in registry().periodics:  # what the sweeper runs, imported lazily or not
        job.fn(runtime)
finally:
    background.stop(timeout=10)
    runtime.close()
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
"""

# Never in a worker: the web framework and server, templates, the app and its routes.
NEVER = ("fastapi", "uvicorn", "jinja2", "starlette.applications", "starlette.routing")
NEVER_PREFIXES = ("examtrail.app", "examtrail.ui", "examtrail.openapi", "examtrail.exports.options")


def _worker_modules(settings: Settings, tmp_path: Path, env: dict[str, str], prelude: str = "") -> set[str]:
    out = tmp_path / "modules.json"
    base = {
        "EXAMTRAIL_DATABASE_URL": settings.resolved_database_url,
        "EXAMTRAIL_DATA_DIR": str(settings.data_dir),
        "EXAMTRAIL_SECRET_KEY": settings.secret_key.get_secret_value(),
        "EXAMTRAIL_QUEUE_NAME": f"test-{uuid.uuid4().hex[:12]}",
        "EXAMTRAIL_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-c", prelude + CHILD, str(out)],
        env=examtrail_env({**base, **env}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(out.read_text()))


def _assert_lean(modules: set[str]) -> None:
    present = [name for name in NEVER if name in modules]
    present += sorted(m for m in modules if m.startswith(NEVER_PREFIXES))
    present += sorted(m for m in modules if m.startswith("examtrail.") and m.endswith(".api"))
    assert not present, f"the worker imported {present}"


@pytest.mark.parametrize(
    ("storage", "broker", "client", "needed", "unneeded"),
    [
        ("local", "redis", None, {"redis"}, {"boto3", "botocore", "pika"}),
        # Static credentials: the light S3 client, no boto3/botocore (~20 MB).
        (
            "s3",
            "redis",
            None,
            {"redis", "urllib3", "examtrail.storage.s3http"},
            {"boto3", "botocore", "pika"},
        ),
        ("s3", "redis", "boto3", {"redis", "boto3"}, {"pika"}),
        ("local", "rabbitmq", None, {"pika"}, {"redis", "boto3", "botocore"}),
    ],
)
def test_the_worker_imports_only_what_its_deployment_needs(
    request: pytest.FixtureRequest,
    settings: Settings,
    tmp_path: Path,
    storage: str,
    broker: str,
    client: str | None,
    needed: set[str],
    unneeded: set[str],
) -> None:
    env = {"EXAMTRAIL_BROKER_URL": BROKER_URLS[broker], "EXAMTRAIL_STORAGE": storage}
    bucket = None
    if storage == "s3":
        seaweed: SeaweedS3 = request.getfixturevalue("seaweed")
        bucket = seaweed.create_bucket()
        env.update(seaweed.env(bucket))
        if client is not None:
            env["EXAMTRAIL_S3_CLIENT"] = client
    try:
        modules = _worker_modules(settings, tmp_path, env)
    finally:
        if bucket is not None:
            seaweed.delete_bucket(bucket)
    # The listing is real: the configured broker's and store's clients are there...
    assert needed <= modules
    assert "examtrail.tasks" in modules
    # ...and nothing the deployment does not use.
    assert not (unneeded & modules), f"the worker imported {sorted(unneeded & modules)}"
    _assert_lean(modules)


def test_the_check_is_not_vacuous(settings: Settings, tmp_path: Path) -> None:
    """The same check fails on a worker process that has imported the app."""
    env = {"EXAMTRAIL_BROKER_URL": BROKER_URLS["redis"]}
    modules = _worker_modules(settings, tmp_path, env, prelude="import examtrail.app\n")
    with pytest.raises(AssertionError, match="fastapi"):
        _assert_lean(modules)
