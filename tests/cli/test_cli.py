from __future__ import annotations

import json
from pathlib import Path

from tests.support.processes import run_cli


def test_clients_create_json_list_and_revoke(tmp_path: Path) -> None:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path)}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    created = run_cli(["clients", "create", "--tenant", "uni", "--scopes", "export", "--json"], env)
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert set(body) == {"clientId", "apiKey"}
    listed = run_cli(["clients", "list"], env)
    assert body["clientId"] in listed.stdout
    assert body["apiKey"] not in listed.stdout
    assert run_cli(["clients", "revoke", body["clientId"]], env).returncode == 0
    assert run_cli(["clients", "revoke", body["clientId"]], env).returncode == 1


def test_clients_create_refuses_unknown_scope(tmp_path: Path) -> None:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path)}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    result = run_cli(["clients", "create", "--tenant", "uni", "--scopes", "admin"], env)
    assert result.returncode != 0
    assert "scopes" in result.stderr + result.stdout


def test_demo_is_repeatable_and_keeps_its_client(tmp_path: Path) -> None:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path)}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    first = run_cli(["demo"], env)
    assert first.returncode == 0, first.stderr
    saved = json.loads((tmp_path / "demo-client.json").read_text())
    second = run_cli(["demo"], env)
    assert second.returncode == 0, second.stderr
    assert json.loads((tmp_path / "demo-client.json").read_text()) == saved
    assert (tmp_path / "demo-client.json").stat().st_mode & 0o077 == 0


def test_worker_needs_a_broker(tmp_path: Path) -> None:
    result = run_cli(["worker"], {"EXAMTRAIL_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "BROKER_URL" in result.stderr + result.stdout


def test_exports_run_with_progress_and_list(tmp_path: Path) -> None:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path)}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    assert run_cli(["demo"], env).returncode == 0
    out = tmp_path / "export.json"
    result = run_cli(["exports", "run", "1001", "--tenant", "demo", "--out", str(out)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "finished" in result.stdout
    body = json.loads(out.read_text())
    assert len(body["candidates"]) == 6
    listed = run_cli(["exports", "list", "1001", "--tenant", "demo"], env)
    assert listed.returncode == 0
    assert "finished" in listed.stdout
    assert "cli" in listed.stdout
    missing = run_cli(["exports", "run", "999", "--tenant", "demo"], env)
    assert missing.returncode == 1
    assert "not found" in missing.stdout
