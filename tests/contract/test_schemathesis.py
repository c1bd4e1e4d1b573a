"""Schemathesis against a live server: every check, positive and negative data, fixed seed.

Every check is on by default; ``schemathesis.toml`` turns off only ``use_after_free`` (an export
"deleted" with DELETE is cancelled, and stays readable) and counts 413 as a rejection.

Settings (seed, examples, the documented exceptions) are in ``schemathesis.toml`` beside this
file; ``schemathesis_hooks.py`` keeps every webhook endpoint on this machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract.conftest import LiveApi

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _schemathesis(live_api: LiveApi, report_dir: Path, *options: str, config: Path | None = None) -> str:
    """Runs the CLI with the suite's settings (or ``config``); fails the test on any finding.
    Returns the output."""
    env = {
        **os.environ,
        "EXAMTRAIL_CONTRACT_RECEIVER": live_api.receiver.url("/contract-hook"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "NO_COLOR": "1",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config or HERE / "schemathesis.toml"),
            "run",
            f"{live_api.base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {live_api.token()}",
            "--request-timeout",
            "20",
            "--report",
            "junit",
            "--report-dir",
            str(report_dir),
            *options,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    output = result.stdout[-20_000:] + result.stderr[-5_000:]
    assert result.returncode == 0, output
    assert "No issues found" in output or " passed" in output, output
    return output


def test_schemathesis_finds_nothing(live_api: LiveApi, tmp_path: Path) -> None:
    _schemathesis(live_api, tmp_path)


def test_stateful_phase_on_the_tests_finds_nothing(live_api: LiveApi, tmp_path: Path) -> None:
    """The stateful phase starts its scenarios only at calls that need no id (a POST or a GET
    without path parameters) when the API has any: here those are the subscription calls, so the
    full run above never reaches the tests' links. Without the subscriptions, every call the links
    lead from is a start, `PUT /v1/test/{testId}` (which takes any id) among them, and the
    scenarios follow the links from a test to its candidates, events, files, exports, erasures
    and legal hold: most of their 75 links, against a handful in the full run."""
    # Scenarios long enough to follow a test's links several calls deep (a test, its candidates,
    # an event, its file, an export, its status). The default six steps reach 3 of the 75 links;
    # forty reach most of them in about 12 s (in the full run, they would slow the subscriptions'
    # scenarios, whose every creation is verified by a webhook call, tenfold).
    config = tmp_path / "schemathesis.toml"
    config.write_text((HERE / "schemathesis.toml").read_text() + "\n[phases.stateful]\nmax-steps = 40\n")
    options = ("--phases", "stateful", "--exclude-path-regex", "^/v1/subscription")
    output = _schemathesis(live_api, tmp_path / "report", *options, config=config)
    covered = re.search(r"API Links: +([0-9]+) covered", output)
    # A floor well under the usual count: it fails when the scenarios stop reaching the tests.
    assert covered is not None and int(covered[1]) >= 30, output
