"""Bad input on the command line is one line on stderr (``Error: ...``), never a traceback, and
nothing runs or is created before it is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.processes import run_cli

TOO_LARGE = "99999999999999999999"  # past int64: an OverflowError in SQLite's driver


@pytest.fixture
def migrated(tmp_path: Path) -> dict[str, str]:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path / "var")}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    return env


@pytest.fixture
def env(migrated: dict[str, str]) -> dict[str, str]:
    """The demo's tenant, client and test 1001."""
    assert run_cli(["demo"], migrated).returncode == 0
    return migrated


def _refused(args: list[str], env: dict[str, str], message: str, status: int = 1) -> None:
    result = run_cli(args, env)
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr


def test_unreadable_signature_files(migrated: dict[str, str], tmp_path: Path) -> None:
    env = migrated
    binary = tmp_path / "binary.jws"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    export = tmp_path / "export.json"
    export.write_text("{}")
    verify = ["verify", str(export), "--jwks", str(tmp_path / "none.json"), "--signature"]
    _refused([*verify, f"@{tmp_path / 'missing'}"], env, "Error: --signature: cannot read")
    _refused([*verify, f"@{tmp_path}"], env, "Is a directory")
    _refused([*verify, "@"], env, "Error: --signature: give the file after @")
    _refused([*verify, f"@{binary}"], env, "is not UTF-8 text")


@pytest.mark.parametrize(
    "args",
    [
        ["hold", "show", TOO_LARGE, "--tenant", "demo"],
        ["erase", "candidate", "1001", TOO_LARGE, "--tenant", "demo", "--yes"],
        ["erase", "test", TOO_LARGE, "--tenant", "demo", "--yes"],
        ["exports", "list", TOO_LARGE, "--tenant", "demo"],
        ["audit", "list", "--tenant", "demo", "--test-id", TOO_LARGE],
        ["hold", "show", "--tenant", "demo", "--", "-1"],
    ],
)
def test_ids_past_int64_are_usage_errors(env: dict[str, str], args: list[str]) -> None:
    _refused(args, env, "Invalid value", status=2)


def test_exports_run_checks_out_before_the_export(env: dict[str, str]) -> None:
    _refused(["exports", "run", "1001", "--tenant", "demo", "--out", "/sys/foo.json"], env, "cannot write")
    listed = run_cli(["exports", "list", "1001", "--tenant", "demo", "--json"], env)
    assert json.loads(listed.stdout) == []  # nothing ran


def test_out_keeps_an_existing_file_until_the_export_is_written(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "kept.json"
    out.write_text("old")
    _refused(["exports", "run", "999", "--tenant", "demo", "--out", str(out)], env, "Test 999 not found")
    assert out.read_text() == "old"
    fresh = tmp_path / "fresh.json"
    _refused(["exports", "run", "999", "--tenant", "demo", "--out", str(fresh)], env, "Test 999 not found")
    assert not fresh.exists()


def test_db_upgrade_to_an_unknown_revision(migrated: dict[str, str]) -> None:
    _refused(
        ["db", "upgrade", "nonexistent"], migrated, "Error: revision 'nonexistent': Can't locate revision"
    )


def test_db_current_does_not_create_a_database(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    _refused(["db", "current"], {"EXAMTRAIL_DATA_DIR": str(data)}, "Error: no database at")
    assert not data.exists()


def test_progress_bars_go_to_stderr(env: dict[str, str]) -> None:
    ran = run_cli(["exports", "run", "1001", "--tenant", "demo"], env)
    assert ran.returncode == 0, ran.stderr
    assert "candidates" in ran.stderr and "6/6" in ran.stderr
    assert ran.stdout.startswith("finished: ")
    erased = run_cli(["erase", "candidate", "1001", "2001", "--tenant", "demo", "--yes", "--json"], env)
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["status"] == "finished"
    assert "events" in erased.stderr


@pytest.mark.parametrize(
    ("tenant", "message"),
    [
        ("", "must not be blank"),
        ("   ", "must not be blank"),
        ("a\nb", "control characters or line breaks"),
        ("a\u2028b", "control characters or line breaks"),
        (" a", "must not start or end with whitespace"),
        ("x" * 201, "at most 200 characters"),
    ],
)
def test_clients_create_refuses_bad_tenant_names(migrated: dict[str, str], tenant: str, message: str) -> None:
    _refused(["clients", "create", "--tenant", tenant], migrated, message, status=2)
    assert json.loads(run_cli(["clients", "list", "--json"], migrated).stdout) == []


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "EXAMTRAIL_WORKER_THREADS=0",
            "EXAMTRAIL_WORKER_THREADS: Input should be greater than or equal to 1",
        ),
        ("EXAMTRAIL_WEBHOOK_RETRY_SCHEDULE=a,b", "EXAMTRAIL_WEBHOOK_RETRY_SCHEDULE: "),
        ("EXAMTRAIL_SECRET_KEYS=[not-json-secret", "EXAMTRAIL_SECRET_KEYS: a JSON list of secrets"),
        ("EXAMTRAIL_LOG_LEVEL=BOGUS", "EXAMTRAIL_LOG_LEVEL: must be one of"),
        ("EXAMTRAIL_DATABASE_URL=foo://x", "EXAMTRAIL_DATABASE_URL: must be a sqlite:///"),
        ("EXAMTRAIL_BROKER_URL=bogus://x", "EXAMTRAIL_BROKER_URL: must be a redis://"),
        ("EXAMTRAIL_S3_ENDPOINT_URL=::bad", "EXAMTRAIL_S3_ENDPOINT_URL: must be an http:// or https:// URL"),
        ("EXAMTRAIL_PUBLIC_URL=notaurl", "EXAMTRAIL_PUBLIC_URL: must be an http:// or https:// URL"),
        ("EXAMTRAIL_PUBLIC_URL=http://host:99999", "EXAMTRAIL_PUBLIC_URL: not a valid URL"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, setting: str, message: str) -> None:
    """Before anything starts: the variable and what is wrong, never a traceback or the value."""
    name, value = setting.split("=", 1)
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path / "var"), name: value}
    for args in (["serve", "--port", "1"], ["db", "current"]):
        _refused(args, env, message)
        assert "not-json-secret" not in run_cli(args, env).stderr
    assert not (tmp_path / "var").exists()  # nothing created
