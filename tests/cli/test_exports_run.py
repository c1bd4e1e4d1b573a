"""``examtrail exports run`` in-process: retries after a transient failure, always closes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from examtrail.cli import jobs as cli_jobs
from examtrail.cli.errors import CliError
from examtrail.cli.main import app
from examtrail.core.settings import Settings, get_settings
from examtrail.runtime import Runtime, build_runtime
from examtrail.storage.base import StorageError
from tests.support.processes import run_cli


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path / "data")}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    assert run_cli(["demo"], env).returncode == 0
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EXAMTRAIL_BROKER_URL", raising=False)
    monkeypatch.delenv("EXAMTRAIL_DATABASE_URL", raising=False)
    monkeypatch.setenv("EXAMTRAIL_STORAGE", "local")
    monkeypatch.setenv("COLUMNS", "300")  # error panels on one line
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def _invoke(args: list[str], timeout: float = 60) -> Any:
    """Run the CLI in a thread, so that a hang fails the test instead of the suite."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(CliRunner().invoke(app, args)), daemon=True)
    thread.start()
    thread.join(timeout)
    assert result, f"examtrail {' '.join(args)} did not finish within {timeout} s"
    return result[0]


def test_exports_run_finishes_after_a_transient_failure(
    demo_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtimes: list[Runtime] = []

    def flaky_runtime(settings: Settings) -> Runtime:
        runtime = build_runtime(settings)
        real = runtime.store.open_writer
        failures = [StorageError("503 slow down")]

        def open_writer(key: str, **kwargs: Any) -> Any:
            if failures:
                raise failures.pop()
            return real(key, **kwargs)

        runtime.store.open_writer = open_writer  # type: ignore[method-assign]
        runtimes.append(runtime)
        return runtime

    monkeypatch.setattr(cli_jobs, "build_runtime", flaky_runtime)
    out = tmp_path / "export.json"
    # No worker runs: the retry must be picked up by the command itself.
    result = _invoke(["exports", "run", "1001", "--tenant", "demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "finished" in result.output
    assert out.stat().st_size > 0
    assert len(runtimes) == 1


def test_exports_run_closes_the_runtime_on_errors(
    demo_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[Runtime] = []

    def tracked_runtime(settings: Settings) -> Runtime:
        runtime = build_runtime(settings)
        real_close = runtime.close

        def close() -> None:
            closed.append(runtime)
            real_close()

        runtime.close = close  # type: ignore[method-assign]
        return runtime

    monkeypatch.setattr(cli_jobs, "build_runtime", tracked_runtime)
    for args in (
        ["exports", "run", "999", "--tenant", "demo"],
        ["exports", "run", "1001", "--tenant", "nobody"],
    ):
        result = _invoke(args)
        assert result.exit_code != 0
    assert len(closed) == 2


def test_exports_run_checks_the_output_folder_first(demo_env: dict[str, str], tmp_path: Path) -> None:
    result = _invoke(["exports", "run", "1001", "--tenant", "demo", "--out", str(tmp_path / "no" / "x.json")])
    # `examtrail` prints it as one line (tests/cli/test_cli.py); in process it is the exception.
    assert isinstance(result.exception, CliError)
    assert str(result.exception).startswith("--out: folder") and "does not exist" in str(result.exception)
    listed = _invoke(["exports", "list", "1001", "--tenant", "demo"])
    assert "│ cli" not in listed.output  # no job was ordered (jobs ordered here show "cli")


def test_exports_run_with_format_and_compression(demo_env: dict[str, str], tmp_path: Path) -> None:
    import gzip
    import json

    out = tmp_path / "export.jsonl.gz"
    args = ["exports", "run", "1001", "--tenant", "demo", "--format", "jsonl", "--compression", "gzip"]
    result = _invoke([*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = gzip.decompress(out.read_bytes()).decode().splitlines()
    assert lines and all("candidateUserId" in json.loads(line) for line in lines)
    # Nothing new since: the same finished export is handed out again.
    again = _invoke(args)
    assert again.exit_code == 0 and "finished" in again.output
    bad = _invoke(["exports", "run", "1001", "--tenant", "demo", "--format", "xml"])
    assert bad.exit_code != 0


def test_exports_run_pseudonymized(demo_env: dict[str, str], tmp_path: Path) -> None:
    import json

    out = tmp_path / "research.jsonl"
    args = ["exports", "run", "1001", "--tenant", "demo", "--format", "jsonl", "--pseudonymize"]
    result = _invoke([*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines
    assert all(str(line["candidateUserId"]).startswith("p_") for line in lines)
    assert all(line["candidateId"].startswith("p_") and line["attachedFiles"] == [] for line in lines)
    assert b"C-00" not in out.read_bytes()  # the demo's candidate numbers
