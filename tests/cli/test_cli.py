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
    assert missing.stderr.strip() == "Error: Test 999 not found."


def test_listings_have_json_and_full_ids(tmp_path: Path) -> None:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path), "COLUMNS": "40"}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    assert run_cli(["demo"], env).returncode == 0
    clients = run_cli(["clients", "list", "--json"], env)
    assert clients.returncode == 0, clients.stderr
    (client,) = json.loads(clients.stdout)
    assert set(client) == {"clientId", "tenant", "name", "scopes", "created", "revoked"}
    # Not a terminal: the table is not cut to the terminal's width.
    assert client["clientId"] in run_cli(["clients", "list"], env).stdout
    assert run_cli(["exports", "run", "1001", "--tenant", "demo"], env).returncode == 0
    exports = json.loads(run_cli(["exports", "list", "1001", "--tenant", "demo", "--json"], env).stdout)
    assert [job["status"] for job in exports] == ["finished"]
    assert exports[0]["jobId"] in run_cli(["exports", "list", "1001", "--tenant", "demo"], env).stdout


def test_database_errors_are_one_line_and_name_the_fix(tmp_path: Path) -> None:
    # Run from another folder: no database there, and none is created.
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path / "var")}
    result = run_cli(["clients", "list"], env)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "examtrail db upgrade" in result.stderr
    assert not (tmp_path / "var" / "examtrail.db").exists()
    # A database file that was never migrated.
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "examtrail.db").write_bytes(b"")
    result = run_cli(["exports", "list", "1", "--tenant", "x"], env)
    assert result.returncode == 1
    assert "not migrated" in result.stderr and "examtrail db upgrade" in result.stderr
    # An unreachable server.
    unreachable = {"EXAMTRAIL_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    result = run_cli(["clients", "list"], unreachable)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot reach the database")
    assert "Traceback" not in result.stderr


def test_help_has_no_type_hints(tmp_path: Path) -> None:
    for command in (
        ["--help"],
        ["worker", "--help"],
        ["exports", "run", "--help"],
        ["clients", "create", "--help"],
    ):
        shown = run_cli(command, {"EXAMTRAIL_DATA_DIR": str(tmp_path)}).stdout
        assert "<bool>" not in shown and "<str>" not in shown and "<int>" not in shown, shown
    worker_help = " ".join(run_cli(["worker", "--help"], {}).stdout.split())
    assert "EXAMTRAIL_WORKER_THREADS, else 2" in worker_help
    assert "EXAMTRAIL_WEBHOOK_THREADS, else 2" in worker_help
