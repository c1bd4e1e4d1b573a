"""``GET /v1/audit``: scope, tenant isolation, filters, keyset pagination, errors; the log is
append-only in the database itself; ``examtrail audit list``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from examtrail.audit.actions import Action
from examtrail.runtime import Runtime
from tests.audit.conftest import Log
from tests.support.api import seed_test
from tests.support.processes import run_cli


def _all(http: TestClient, auditor: dict[str, str], **params: object) -> list[dict[str, object]]:
    response = http.get("/v1/audit", params=params, headers=auditor)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    entries: list[dict[str, object]] = response.json()["entries"]
    return entries


def test_needs_the_audit_scope(http: TestClient, headers: dict[str, str]) -> None:
    assert http.get("/v1/audit").status_code == 401
    response = http.get("/v1/audit", headers=headers)  # ingest and export, not audit
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


def test_entries_are_the_tenants_own_newest_first(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str], auditor: dict[str, str]
) -> None:
    seed_test(http, headers, test_id=21, candidates=2, events_per_candidate=1)
    seed_test(http, other_headers, test_id=21, candidates=1, events_per_candidate=1)
    entries = _all(http, auditor)
    ids = [int(str(e["entryId"])) for e in entries]
    assert ids == sorted(ids, reverse=True)
    ingested = [e for e in entries if e["action"] == "events.ingested"]
    assert len(ingested) == 2  # uni-b's batch is not there
    first = ingested[0]
    assert set(first) == {
        "entryId",
        "time",
        "clientId",
        "action",
        "objectType",
        "objectId",
        "testId",
        "requestId",
        "sourceIp",
        "details",
    }
    assert first["testId"] == 21 and first["sourceIp"] == "testclient" and first["requestId"]
    assert first["details"] == {"received": 1, "created": 1, "duplicates": 0}
    # Client creation is on the command line: clientId "cli".
    assert {e["clientId"] for e in entries if e["action"] == "client.created"} == {"cli"}


def test_filters(http: TestClient, headers: dict[str, str], auditor: dict[str, str]) -> None:
    seed_test(http, headers, test_id=31, candidates=1, events_per_candidate=1)
    seed_test(http, headers, test_id=32, candidates=2, events_per_candidate=1)
    assert {e["action"] for e in _all(http, auditor, action="events.ingested")} == {"events.ingested"}
    both = _all(http, auditor, action=["events.ingested", "token.issued"])
    assert {e["action"] for e in both} == {"events.ingested", "token.issued"}
    on_32 = _all(http, auditor, testId=32)
    # Newest first: a batch per candidate, after the candidates and the test were put.
    assert [e["action"] for e in on_32] == ["events.ingested"] * 2 + ["candidates.updated", "test.created"]
    assert {e["testId"] for e in on_32} == {32}
    now = datetime.now(UTC)
    assert len(_all(http, auditor, testId=31, **{"from": (now - timedelta(minutes=5)).isoformat()})) == 3
    assert (
        _all(http, auditor, **{"from": (now + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")}) == []
    )
    assert _all(http, auditor, to=(now - timedelta(minutes=5)).isoformat()) == []
    window = {"from": "2020-01-01T00:00:00+02:00", "to": (now + timedelta(minutes=5)).isoformat()}
    assert len(_all(http, auditor, testId=31, **window)) == 3


@pytest.mark.parametrize(
    "params",
    [
        {"action": "export.nope"},
        {"from": "yesterday"},
        {"from": "1700000000"},
        {"from": "2026-06-01T08:00:00"},  # no zone
        {"from": "2026-06-02T00:00:00Z", "to": "2026-06-01T00:00:00Z"},
        {"cursor": "not-a-cursor"},
        {"limit": 0},
        {"limit": 1001},
        {"testId": -1},
    ],
)
def test_bad_queries_are_422(http: TestClient, auditor: dict[str, str], params: dict[str, object]) -> None:
    response = http.get("/v1/audit", params=params, headers=auditor)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert response.json()["details"]


def test_keyset_pagination_sees_every_entry_once(
    http: TestClient, headers: dict[str, str], auditor: dict[str, str], audit_log: Log
) -> None:
    seed_test(http, headers, test_id=41, candidates=5, events_per_candidate=1)
    everything = _all(http, auditor, limit=1000)
    seen: list[object] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/v1/audit", params=params, headers=auditor).json()
        assert len(page["entries"]) <= 2
        seen += [e["entryId"] for e in page["entries"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [e["entryId"] for e in everything]
    assert len(seen) == len(set(seen)) >= 7


def test_the_log_refuses_updates_and_deletes(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    with runtime.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_log")).scalar_one() > 0
    for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), runtime.engine.begin() as connection:
            connection.execute(text(statement))


def test_actions_are_documented(http: TestClient) -> None:
    document = http.get("/openapi.json").json()
    operation = document["paths"]["/v1/audit"]["get"]
    assert operation["operationId"] == "listAuditEntries"
    action = next(p for p in operation["parameters"] if p["name"] == "action")
    ref = json.dumps(action["schema"]).split('"#/components/schemas/')[1].split('"')[0]
    assert document["components"]["schemas"][ref]["enum"] == [str(a) for a in Action]
    assert all(str(a) in operation["description"] for a in Action)
    assert operation["security"]
    assert (
        "audit" in document["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["scopes"]
    )


def test_cli_lists_entries(http: TestClient, headers: dict[str, str], runtime: Runtime) -> None:
    seed_test(http, headers, test_id=51, candidates=1, events_per_candidate=1)
    env = {
        "EXAMTRAIL_DATA_DIR": str(runtime.settings.data_dir),
        "EXAMTRAIL_DATABASE_URL": runtime.settings.resolved_database_url,
    }
    listed = run_cli(["audit", "list", "--tenant", "uni-a", "--test-id", "51", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["action"], r["testId"]) for r in rows] == [
        ("events.ingested", 51),
        ("candidates.updated", 51),
        ("test.created", 51),
    ]
    only_tokens = json.loads(
        run_cli(["audit", "list", "--tenant", "uni-a", "--action", "token.issued", "--json"], env).stdout
    )
    assert len(only_tokens) == 1 and only_tokens[0]["clientId"].startswith("et_")
    table = run_cli(["audit", "list", "--tenant", "uni-a", "--limit", "1"], env)
    assert table.returncode == 0 and "events.ingested" in table.stdout
    assert "token.issued" not in table.stdout  # the newest one is the ingest batch
    for bad, message in (
        (["--tenant", "nobody"], "no tenant"),
        (["--tenant", "uni-a", "--action", "nope"], "unknown action"),
        (["--tenant", "uni-a", "--from", "yesterday"], "--from"),
    ):
        result = run_cli(["audit", "list", *bad], env)
        assert result.returncode == 1 and message in result.stderr, result.stderr
