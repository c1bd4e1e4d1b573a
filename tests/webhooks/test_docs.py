"""docs/webhooks.md: its walkthrough runs verbatim against a real server, and its verification
snippet verifies what the receiver got."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ExamtrailProcess, run_cli
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def _block(section: str, language: str) -> str:
    text = DOC.read_text().split(f"## {section}", 1)[1]
    match = re.search(rf"```{language}\n(.*?)\n```", text, re.S)
    assert match, f"no {language} block under '{section}'"
    return match.group(1)


def test_the_documented_walkthrough_and_verification_work(tmp_path: Path, receiver: Receiver) -> None:
    env = {"EXAMTRAIL_DATA_DIR": str(tmp_path / "var"), "EXAMTRAIL_WEBHOOK_ALLOW_PRIVATE": "true"}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    seeded = run_cli(["demo"], env)
    assert seeded.returncode == 0, seeded.stderr
    with ExamtrailProcess.server(env, tmp_path / "logs") as server:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _block("Try it", "bash")],
            cwd=tmp_path,
            env={"BASE": server.base_url, "ENDPOINT": receiver.url(), "PATH": "/usr/local/bin:/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("204")
    secret = json.loads((tmp_path / "subscription.json").read_text())["secret"]

    namespace: dict[str, Any] = {}
    exec(_block("Verifying a notification", "python"), namespace)  # noqa: S102  (our own docs)
    requests = receiver.requests("/hook")
    assert [r.event for r in requests] == ["verification", *["event_by_candidates_export_finished"] * 2]
    for request in requests:
        payload = namespace["verify"](request.body, request.headers, secret)
        assert payload["event"] == request.event
    assert requests[1].webhook_id == requests[2].webhook_id  # the redelivery
    with pytest.raises(namespace["WebhookVerificationError"]):
        namespace["verify"](requests[1].body + b" ", requests[1].headers, secret)
    forged = {**requests[1].headers, "x-inspera-signature": "0" * 40}
    with pytest.raises(namespace["WebhookVerificationError"]):
        namespace["verify"](requests[1].body, forged, secret)
