"""The README's walkthrough, run verbatim against a server seeded like ``make run``."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest

from examtrail.exports.schemas import export_file_schema
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
    events = json.loads((tmp_path / "events.json").read_text())
    jsonschema.validate(events, export_file_schema())
    flagged = [e for c in events["candidates"] for e in c["events"] if e["attachedFiles"]]
    assert [f["fileName"] for e in flagged for f in e["attachedFiles"]] == ["evidence.txt", "phone.png"]
