"""The batch insert path: the fast validation path against ``EventIn``, duplicates and conflicts
inside a batch and across batches (on PostgreSQL: COPY straight into ``events``, and the staging
table when an id is already stored), 4xx answers that store nothing, and batches inside savepoints
of one transaction (as the group-commit writer runs them)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import func, select

from examtrail.audit.models import AuditEntry
from examtrail.core.errors import Conflict
from examtrail.ingest import service
from examtrail.ingest.models import Event, Test
from examtrail.ingest.schemas import EventBatch, EventIn, parse_batch
from examtrail.runtime import Runtime
from tests.support.api import seed_test

URL = "/v1/test/42/candidates/100/events"
OTHER_URL = "/v1/test/42/candidates/101/events"
_models = TypeAdapter(list[EventIn])


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "eventId": f"ev-{n}",
        "event": "network_lost",
        "timeStamp": "2026-06-01T10:00:00.5+02:00",
        **extra,
    }


# Valid events in every shape the fast path must treat exactly as EventIn does.
VARIED: list[dict[str, Any]] = [
    event(1),
    {"event": "no id", "timeStamp": "2026-06-01T10:00:00Z"},
    event(2, eventId=None, extraInfo=None, flaggingInfo=None, userId=None),
    event(3, extraInfo={"value": "v\\tab\ttab \u00e9\u4e2d", "type": "ip"}),
    event(4, flaggingInfo={"flagType": "cheating"}),
    event(
        5, flaggingInfo={"comment": "c\nline", "flagType": "t", "severityLevel": None, "flagSubTypes": ["a"]}
    ),
    event(6, userId=9001, timeStamp="1970-01-01T00:00:00Z"),
    event(7, userId=2**63 - 1, timeStamp="2999-12-31T23:59:59.999999Z"),
    event(8, timeStamp="2026-06-01T10:00:00.123456789-09:30"),
    event(9, userId=3.0),  # an int64 sent as a float: not on the fast path, still valid
]


def _rows(batch: EventBatch) -> list[tuple[Any, ...]]:
    return [
        service.event_row(item.get("eventId") or "assigned", item, ms)
        for item, ms in zip(batch.events, batch.occurred_ms, strict=True)
    ]


def test_fast_path_yields_what_event_in_yields() -> None:
    raw = orjson.dumps(VARIED[:-1])
    fast = parse_batch(raw, 100)
    assert fast is not None
    models = _models.validate_json(raw)
    assert _rows(fast) == _rows(EventBatch.of(models))
    assert [row[5] for row in _rows(fast)] == [
        service.event_doc(row[0], model, row[2]) for row, model in zip(_rows(fast), models, strict=True)
    ]


INVALID_OR_SLOW: list[Any] = [
    [],
    [event(1)] * 11,
    [event(1, userId=3.0)],
    [event(1, userId=True)],
    [event(1, userId=2**63)],
    [event(1, timeStamp="1969-12-31T23:59:59.9999Z")],
    [event(1, timeStamp="3000-01-01T00:00:00Z")],
    [event(1, timeStamp="0001-01-01T00:00:00+01:00")],
    [event(1, timeStamp="2026-06-01T10:00:00")],
    [event(1, color="red")],
    [event(1, extraInfo={"type": "a", "value": "b", "more": 1})],
    [event(1, flaggingInfo={"flagType": "f", "x": 1})],
    [event(1, flaggingInfo={"comment": "no type"})],
    [{"eventId": "x", "timeStamp": "2026-06-01T10:00:00Z"}],
    [event(1, event="")],
    [event(1, eventId="")],
    [event(1, event="bad\nname")],
]


@pytest.mark.parametrize("body", INVALID_OR_SLOW, ids=range(len(INVALID_OR_SLOW)))
def test_fast_path_leaves_the_rest_to_event_in(body: Any) -> None:
    assert parse_batch(orjson.dumps(body), 10) is None


def test_fast_path_is_not_fooled_by_bad_json() -> None:
    assert parse_batch(b"[{", 10) is None
    assert parse_batch(b'[{"event": "x", "timeStamp": "2026-06-01T10:00:00Z"}] x', 10) is None


@pytest.fixture
def seeded(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=42, candidates=2, events_per_candidate=0)


def stored(runtime: Runtime) -> dict[str, str]:
    with runtime.sessions() as session:
        return {row.event_id: row.doc for row in session.execute(select(Event.event_id, Event.doc))}


def audit_count(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


@pytest.mark.usefixtures("seeded")
def test_fast_and_model_paths_store_the_same_docs(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    response = http.post(URL, json=VARIED, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["created"] == len(VARIED)
    ids = response.json()["eventIds"]
    # Each event again on its own goes through EventIn: the same doc, so a duplicate (not a 409).
    for body, event_id in zip(VARIED, ids, strict=True):
        again = http.post(URL, json={**body, "eventId": event_id}, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["duplicates"] == 1


@pytest.mark.usefixtures("seeded")
def test_duplicates_inside_one_batch_and_across_batches(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    first = http.post(URL, json=[event(n) for n in range(1, 501)] + [event(1)], headers=headers)
    assert first.status_code == 201
    assert first.json()["created"] == 500 and first.json()["duplicates"] == 1
    # Half of them again with 500 new ones: only the new ones are stored.
    second = http.post(URL, json=[event(n) for n in range(251, 1001)], headers=headers)
    assert second.status_code == 201
    assert second.json() == {
        "received": 750,
        "created": 500,
        "duplicates": 250,
        "eventIds": [f"ev-{n}" for n in range(251, 1001)],
    }
    # Everything again (ids stored at the start, the end, anywhere): nothing new, 200.
    again = http.post(URL, json=[event(n) for n in range(1000, 0, -1)], headers=headers)
    assert again.status_code == 200
    assert again.json()["created"] == 0 and again.json()["duplicates"] == 1000
    assert len(stored(runtime)) == 1000
    assert audit_count(runtime) >= 3


@pytest.mark.usefixtures("seeded")
def test_conflicts_store_nothing_of_the_batch(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    assert http.post(URL, json=[event(n) for n in range(1, 11)], headers=headers).status_code == 201
    before, audits = stored(runtime), audit_count(runtime)
    cases = [
        # Inside one batch: the same id with other content.
        [event(20), event(21), event(20, event="other")],
        # Across batches: a stored id with other content amid new ones.
        [event(n) for n in range(30, 40)] + [event(5, event="other")] + [event(n) for n in range(40, 50)],
        # The stored id first, with other content.
        [event(5, userId=1)] + [event(n) for n in range(50, 60)],
    ]
    for body in cases:
        response = http.post(URL, json=body, headers=headers)
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "event_conflict"
    # The same ids (same content) on another candidate of the test.
    other = http.post(OTHER_URL, json=[event(n) for n in range(60, 70)] + [event(3)], headers=headers)
    assert other.status_code == 409
    assert other.json()["details"][0]["index"] == 10
    # A 422 late in a batch: nothing either.
    bad = http.post(URL, json=[event(n) for n in range(70, 80)] + [event(80, userId=-1)], headers=headers)
    assert bad.status_code == 422
    assert stored(runtime) == before
    assert audit_count(runtime) == audits


def test_batches_in_savepoints_of_one_transaction(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    """As the group-commit writer runs them: each request in a savepoint, one commit for all."""
    seed_test(http, headers, test_id=42, candidates=2, events_per_candidate=0)
    batches = [
        (100, [event(1), event(2)], None),
        (100, [event(2), event(3)], None),  # one stored already, in this very transaction
        (101, [event(4), event(1)], Conflict),  # ev-1 is candidate 100's
        (100, [event(5), event(3, event="x")], Conflict),
        (101, [event(6)], None),
    ]
    with runtime.sessions() as session:
        test = session.scalars(select(Test).where(Test.external_id == 42)).one()
        results = []
        for user_id, body, error in batches:
            savepoint = session.begin_nested()
            events = _models.validate_json(orjson.dumps(body))
            if error is None:
                results.append(service.add_events(session, test, user_id, events).created)
                savepoint.commit()
            else:
                with pytest.raises(error):
                    service.add_events(session, test, user_id, events)
                savepoint.rollback()
        session.commit()
    assert results == [2, 1, 1]
    assert sorted(stored(runtime)) == ["ev-1", "ev-2", "ev-3", "ev-6"]


@pytest.mark.usefixtures("seeded")
def test_backslashes_and_escapes_are_stored_as_sent(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    name = "back\\slash \\N \\t"
    body = event(
        1,
        event=name,
        extraInfo={"type": "\\", "value": "tab\there\nline\r\\N"},
        flaggingInfo={"flagType": name, "comment": "\\\\"},
    )
    assert http.post(URL, json=[body, event(2)], headers=headers).status_code == 201
    with runtime.sessions() as session:
        row = session.execute(
            select(Event.event, Event.flag_type, Event.doc).where(Event.event_id == "ev-1")
        ).one()
    assert row.event == name and row.flag_type == name
    stored_doc = orjson.loads(row.doc)
    assert stored_doc["extraInfo"] == body["extraInfo"]
    assert stored_doc["flaggingInfo"]["comment"] == "\\\\"
    # The same event again on its own (EventIn) is the same doc: a duplicate.
    assert http.post(URL, json=body, headers=headers).status_code == 200


def _together(
    http: TestClient, headers: dict[str, str], start: threading.Barrier, events: list[dict[str, Any]]
) -> Any:
    start.wait()
    return http.post(URL, json=events, headers=headers)


def test_concurrent_batches_sharing_event_ids_in_any_order_never_deadlock(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    """PostgreSQL: each batch took the unique index's entries in the order it was sent, so two
    sharing ids, one of them reversed, waited each for the other: a deadlock, one answered 503
    database_unavailable. In id order, one waits for the other and finds its events stored."""
    seed_test(http, headers, test_id=42, candidates=1, events_per_candidate=0)
    for round_ in range(3):
        batch = [event(n, eventId=f"r{round_}-{n}") for n in range(2000)]
        start = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(partial(_together, http, headers, start), [batch, batch[::-1]]))
        assert sorted(a.status_code for a in answers) == [200, 201], [a.text[:200] for a in answers]
        assert sorted(a.json()["created"] for a in answers) == [0, 2000]
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 3 * 2000
