"""``examtrail erase`` and ``examtrail hold`` against the test deployment (both deployments):
the API's refusals and audit entries, data and stored files gone, confirmation asked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from examtrail.audit.models import AuditEntry
from examtrail.cli import jobs
from examtrail.cli.main import app
from examtrail.core.settings import Settings, get_settings
from examtrail.runtime import Runtime, build_runtime
from tests.cli.conftest import point_cli_at
from tests.lifecycle.helpers import attachment_keys, counts, keys, seed_with_files, user_rows


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The commands see the test's database and object store (S3 on the production stack)."""
    point_cli_at(settings, monkeypatch)
    monkeypatch.setattr(jobs, "build_runtime", lambda _configured: build_runtime(settings))
    yield
    get_settings.cache_clear()


def _run(*args: str, answer: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=answer)


def _cli_entries(runtime: Runtime) -> list[tuple[str, str, int | None]]:
    with runtime.sessions() as session:
        # The test's client was created on the command line too: only the entries on tests.
        mine = select(AuditEntry).where(AuditEntry.client_id == "cli", AuditEntry.test_id.is_not(None))
        rows = session.scalars(mine.order_by(AuditEntry.id))
        return [(r.action, r.object_id, r.test_id) for r in rows]


def test_hold_blocks_erasure_until_released(
    http: TestClient, headers: dict[str, str], runtime: Runtime, cli: None
) -> None:
    seed_with_files(http, headers, test_id=42, candidates=2)
    before = counts(runtime)

    held = _run("hold", "set", "42", "--tenant", "uni-a", "--json")
    assert held.exit_code == 0, held.output
    hold = json.loads(held.stdout)
    assert (hold["testId"], hold["held"], hold["setBy"]) == (42, True, "cli") and hold["since"]
    shown = _run("hold", "show", "42", "--tenant", "uni-a")
    assert shown.exit_code == 0 and "test 42: held since" in shown.output and "(set by cli)" in shown.output

    refused = _run("erase", "test", "42", "--tenant", "uni-a", "--yes")
    assert refused.exit_code == 1
    assert "legal hold" in str(refused.exception)
    assert counts(runtime) == before

    released = _run("hold", "release", "42", "--tenant", "uni-a")
    assert released.exit_code == 0 and "test 42: not held" in released.output
    files = keys(runtime)
    erased = _run("erase", "test", "42", "--tenant", "uni-a", "--yes", "--json")
    assert erased.exit_code == 0, erased.output
    out = json.loads(erased.stdout)
    assert (out["status"], out["kind"]) == ("finished", "test")
    assert (out["eventsTotal"], out["eventsDeleted"]) == (8, 8)
    assert out["filesDeleted"] == 2
    assert counts(runtime) == {"tests": 0, "candidates": 0, "events": 0, "attachments": 0}
    assert len(files - keys(runtime)) == 2  # the evidence files left the store
    assert http.get("/v1/test/42", headers=headers).status_code == 404

    assert _cli_entries(runtime) == [
        ("hold.set", "42", 42),
        ("hold.released", "42", 42),
        ("test.erased", "42", 42),
    ]


def test_erase_candidate_asks_first_and_leaves_the_others(
    http: TestClient, headers: dict[str, str], runtime: Runtime, cli: None
) -> None:
    seed_with_files(http, headers, test_id=7, candidates=2)
    files = attachment_keys(runtime, 7, 100)
    assert len(files) == 1

    declined = _run("erase", "candidate", "7", "100", "--tenant", "uni-a", answer="n\n")
    assert declined.exit_code == 1
    assert "nothing erased" in str(declined.exception)
    assert user_rows(runtime, "uni-a", 100)["events"] == 4

    erased = _run("erase", "candidate", "7", "100", "--tenant", "uni-a", answer="y\n")
    assert erased.exit_code == 0, erased.output
    assert "finished" in erased.output and "4 of 4 events" in erased.output
    assert user_rows(runtime, "uni-a", 100) == {"candidates": 0, "events": 0, "attachments": 0}
    assert user_rows(runtime, "uni-a", 101)["events"] == 4
    assert not files & keys(runtime)
    assert _cli_entries(runtime) == [("candidate.erased", "100", 7)]

    # Again: the finished erasure is answered, nothing else happens.
    again = _run("erase", "candidate", "7", "100", "--tenant", "uni-a", "--yes")
    assert again.exit_code == 0 and "finished" in again.output
    assert len(_cli_entries(runtime)) == 1


def test_unknown_tenant_and_test_are_one_line_errors(
    http: TestClient, headers: dict[str, str], runtime: Runtime, cli: None
) -> None:
    seed_with_files(http, headers, test_id=9, candidates=1)
    other = _run("erase", "test", "9", "--tenant", "nobody", "--yes")
    assert other.exit_code == 1 and "no tenant named 'nobody'" in str(other.exception)
    missing = _run("hold", "set", "404", "--tenant", "uni-a")
    assert missing.exit_code == 1 and "not found" in str(missing.exception)
    assert counts(runtime)["events"] == 4
    assert _cli_entries(runtime) == []
