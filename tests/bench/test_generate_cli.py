"""The benchmark generator is ``python -m bench.generate``, no longer part of the product CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.processes import examtrail_env, run_cli

ROOT = Path(__file__).resolve().parents[2]


def run_generate(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.generate", *args],
        cwd=ROOT,
        env=examtrail_env(env),
        capture_output=True,
        text=True,
        check=False,
    )


def test_product_cli_has_no_bench_command(tmp_path: Path) -> None:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path)}
    shown = run_cli(["--help"], env)
    assert shown.returncode == 0, shown.stderr
    assert "exports" in shown.stdout
    assert "bench" not in shown.stdout
    gone = run_cli(["bench", "generate", "--help"], env)
    assert gone.returncode != 0
    assert "No such command" in gone.stdout + gone.stderr


def test_generate_command_writes_the_requested_test(tmp_path: Path) -> None:
    database = tmp_path / "bench.db"
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path), "EXAMTRAIL_DATABASE_URL": f"sqlite:///{database}"}
    migrated = run_cli(["db", "upgrade"], env)
    assert migrated.returncode == 0, migrated.stderr

    args = ["--candidates", "3", "--events", "5", "--absent", "1", "--test-id", "77", "--json"]
    result = run_generate(args, env)
    assert result.returncode == 0, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert body["backend"] == "sqlite"
    assert (body["test_id"], body["candidates"], body["events"]) == (77, 4, 15)

    with sqlite3.connect(database) as conn:
        (test_pk,) = conn.execute("SELECT id FROM tests WHERE external_id = 77").fetchone()
        candidates = conn.execute("SELECT count(*) FROM candidates WHERE test_pk = ?", (test_pk,))
        events = conn.execute("SELECT count(*) FROM events WHERE test_pk = ?", (test_pk,))
        assert candidates.fetchone()[0] == 4
        assert events.fetchone()[0] == 15
    conn.close()

    refused = run_generate(args, env)
    assert refused.returncode != 0
    assert "--replace" in refused.stdout + refused.stderr
    replaced = run_generate([*args, "--replace"], env)
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert json.loads(replaced.stdout)["events"] == 15


def test_generate_help_runs_from_the_repository_root() -> None:
    shown = run_generate(["--help"], {})
    assert shown.returncode == 0, shown.stderr
    assert "--candidates" in shown.stdout
    assert "--events" in shown.stdout
