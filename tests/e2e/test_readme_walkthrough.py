"""The README's walkthrough, run verbatim against a server seeded like ``make run``."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest

from examtrail.exports.schemas import export_file_schema
from tests.support.ports import free_port
from tests.support.processes import ExamtrailProcess, run_cli

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough_script() -> str:
    text = README.read_text()
    section = text.split("## Walkthrough", 1)[1]
    match = re.search(r"```bash\n(.*?)\n```", section, re.S)
    assert match, "no bash block in the README's walkthrough"
    return match.group(1)


def test_readme_walkthrough_works_verbatim(tmp_path: Path) -> None:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path / "var")}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    seeded = run_cli(["demo"], env)
    assert seeded.returncode == 0, seeded.stderr
    with ExamtrailProcess.server(env, tmp_path / "logs") as server:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walkthrough_script()],
            cwd=tmp_path,
            env={"BASE": server.base_url, "PATH": "/usr/local/bin:/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 candidates, 33 events" in result.stdout
    events = json.loads((tmp_path / "var" / "walkthrough" / "events.json").read_text())
    # Everything it wrote is under var/ (ignored by git).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "var"]
    jsonschema.validate(events, export_file_schema())
    flagged = [e for c in events["candidates"] for e in c["events"] if e["attachedFiles"]]
    assert [f["fileName"] for e in flagged for f in e["attachedFiles"]] == ["evidence.txt", "phone.png"]


def test_readme_walkthrough_stops_when_the_server_is_down(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", "-c", walkthrough_script()],
        cwd=tmp_path,
        env={"BASE": f"http://127.0.0.1:{free_port()}", "PATH": "/usr/local/bin:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "no Examtrail server at" in result.stderr


def test_readme_walkthrough_stops_on_a_wrong_key(tmp_path: Path) -> None:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path / "var")}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    assert run_cli(["demo"], env).returncode == 0
    saved = tmp_path / "var" / "demo-client.json"
    saved.write_text(json.dumps({**json.loads(saved.read_text()), "apiKey": "wrong"}))
    with ExamtrailProcess.server(env, tmp_path / "logs") as server:
        result = subprocess.run(
            ["bash", "-c", walkthrough_script()],
            cwd=tmp_path,
            env={"BASE": server.base_url, "PATH": "/usr/local/bin:/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "no token" in result.stderr
