"""Change marks survive erasures: removing a candidate's (or a whole test's) rows never makes
a later write look older than an earlier export. On SQLite the stamp was one above the
test's highest row, which an erasure lowered: the next event took a stamp earlier cursors
already covered, so incremental exports skipped it and stale files were handed out again."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from examtrail.runtime import Runtime
from tests.exports.test_export_options import all_ids, export_json
from tests.lifecycle.helpers import erase_headers
from tests.support.api import seed_test

LATE = {"eventId": "late-100", "event": "submitted", "timeStamp": "2026-06-01T10:00:00.000Z"}


def _post_late(http: TestClient, headers: dict[str, str], test_id: int) -> None:
    response = http.post(f"/v1/test/{test_id}/candidates/100/events", json=LATE, headers=headers)
    assert response.status_code == 201, response.text


def _erase(http: TestClient, eraser: dict[str, str], path: str) -> None:
    response = http.delete(path, headers=eraser)
    assert response.status_code in (200, 202), response.text


def test_since_after_a_candidates_erasure_holds_the_next_event(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    eraser = erase_headers(http, runtime)
    # 101's rows are the newest: their erasure takes the test's highest stamps away.
    seed_test(http, headers, 42, candidates=2, events_per_candidate=2)
    first, _ = export_json(http, headers, 42)
    _erase(http, eraser, "/v1/test/42/candidates/101")
    _post_late(http, headers, 42)
    second, delta = export_json(http, headers, 42, {"since": first["nextSince"]})
    assert all_ids(delta) == ["late-100"]
    _, nothing = export_json(http, headers, 42, {"since": second["nextSince"]})
    assert all_ids(nothing) == []


def test_an_export_is_not_handed_out_again_after_an_erasure_and_a_new_event(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    eraser = erase_headers(http, runtime)
    seed_test(http, headers, 42, candidates=2, events_per_candidate=2)
    params: dict[str, Any] = {"userId": "100"}
    first, _ = export_json(http, headers, 42, params)  # leaves 101 out: the erasure keeps it
    _erase(http, eraser, "/v1/test/42/candidates/101")
    again, _ = export_json(http, headers, 42, params)
    assert again["jobId"] == first["jobId"]  # nothing of the file changed
    _post_late(http, headers, 42)
    fresh, body = export_json(http, headers, 42, params)
    assert fresh["jobId"] != first["jobId"]
    assert "late-100" in all_ids(body)


def test_since_of_an_erased_test_covers_nothing_of_its_successor(
    http: TestClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    eraser = erase_headers(http, runtime)
    seed_test(http, headers, 43, candidates=2, events_per_candidate=3)
    old, _ = export_json(http, headers, 43)
    _erase(http, eraser, "/v1/test/43")
    # The same testId again, with fewer writes than the erased test had.
    seed_test(http, headers, 43, candidates=1, events_per_candidate=0)
    _post_late(http, headers, 43)
    _, delta = export_json(http, headers, 43, {"since": old["nextSince"]})
    assert all_ids(delta) == ["late-100"]
    assert [c["userId"] for c in delta["candidates"]] == [100]
