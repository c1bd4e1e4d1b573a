"""The database-built JSON (PostgreSQL ``COPY`` / SQLite ``group_concat`` bodies) equals the
JSON the per-event Python path builds, byte for byte, for tricky values.

Runs on both deployments like the rest of the suite: each compares its own fast path with
the generic one on the same snapshot.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from examtrail.core.db import snapshot
from examtrail.exports import pipeline
from examtrail.ingest import read_model
from examtrail.ingest.models import Test
from examtrail.ingest.read_model import NO_FILTER, EventFilter
from examtrail.runtime import Runtime

INT64_MAX = 2**63 - 1
TEST_ID = 88

PEOPLE = [
    {"userId": INT64_MAX, "candidateId": 'quote " back \\ slash'},
    {"userId": 0, "candidateId": "ünïcødé 😀 \u2028 ok"},
    {"userId": 7, "candidateId": "no events"},
    {"userId": 9_007_199_254_740_993, "candidateId": "big"},
]

COMMENT = 'line\nbreak\ttab\r "quoted" \\ \u2028\u2029 😀 ü "attachedFiles":[] \u00a0'


def _events(user_id: int) -> list[dict[str, Any]]:
    """Inserted out of order, with equal timestamps (``eventId`` breaks the tie)."""
    events = [
        {
            "eventId": f"u{user_id % 1000}-e{n:02d}",
            "event": "flag" if n % 3 == 0 else "ticö",
            # Three events per timestamp, the later eventIds first.
            "timeStamp": f"2026-06-01T09:{(11 - n) // 3:02d}:00.{n % 7:03d}Z",
            "extraInfo": {"type": "big", "value": str(INT64_MAX)} if n % 4 == 1 else None,
            "flaggingInfo": (
                {
                    "flagType": "suspect",
                    "flagSubTypes": ["a", "ß"],
                    "comment": COMMENT,
                    "severityLevel": "high",
                }
                if n % 3 == 0
                else None
            ),
            "userId": INT64_MAX if n % 5 == 0 else None,
        }
        for n in range(12)
    ]
    return list(reversed(events))


@pytest.fixture
def tricky(http: TestClient, headers: dict[str, str], runtime: Runtime) -> int:
    assert http.put(f"/v1/test/{TEST_ID}", json={"title": "t"}, headers=headers).status_code in (200, 201)
    assert http.put(f"/v1/test/{TEST_ID}/candidates", json=PEOPLE, headers=headers).status_code == 200
    for person in PEOPLE:
        if person["candidateId"] == "no events":
            continue
        url = f"/v1/test/{TEST_ID}/candidates/{person['userId']}/events"
        response = http.post(url, json=_events(int(person["userId"])), headers=headers)  # type: ignore[call-overload]
        assert response.status_code == 201, response.text
    files = f"/v1/test/{TEST_ID}/candidates/{INT64_MAX}/events/{{}}/files/{{}}"
    first = f"u{INT64_MAX % 1000}"
    for event, name in (("e03", "zeta.txt"), ("e03", "Älpha ü.txt"), ("e03", "a b.txt"), ("e07", "x.bin")):
        event_id = f"{first}-{event}"
        response = http.put(
            files.format(event_id, name),
            content=b"data" * 3,
            headers={**headers, "content-type": "text/plain"},
        )
        assert response.status_code in (200, 201), response.text
    with runtime.sessions() as session:
        return int(session.query(Test).filter_by(external_id=TEST_ID).one().id)


class _Collect:
    def __init__(self) -> None:
        self.data = bytearray()

    def add(self, data: bytes | memoryview) -> None:
        self.data += data


def _sign(key: str, name: str, content_type: str) -> str:
    return f"https://signed.example/{key}?name={name}&type={content_type}"


def _both(runtime: Runtime, test_pk: int, flt: EventFilter) -> tuple[bytes, bytes, pipeline.Progress]:
    with snapshot(runtime.engine) as connection:
        generic = _Collect()
        pipeline._write_candidates_generic(connection, test_pk, flt, generic, _sign, pipeline.Progress())
        fast = _Collect()
        progress = pipeline.Progress()
        if connection.dialect.name == "postgresql":
            pipeline._write_candidates_postgres(connection, test_pk, flt, fast, _sign, progress)
        else:
            pipeline._write_candidates_sqlite(connection, test_pk, flt, fast, _sign, progress)
    return bytes(generic.data), bytes(fast.data), progress


FILTERS = [
    NO_FILTER,
    EventFilter(flagged=True),
    EventFilter(user_ids=(INT64_MAX, 7)),
    EventFilter(events=("ticö",), severity_levels=()),
    EventFilter(severity_levels=("high",)),
    EventFilter(from_ms=1_780_304_460_000),
]


@pytest.mark.parametrize("flt", FILTERS, ids=[str(n) for n in range(len(FILTERS))])
def test_database_built_json_equals_python_built(runtime: Runtime, tricky: int, flt: EventFilter) -> None:
    generic, fast, progress = _both(runtime, tricky, flt)
    assert fast == generic
    candidates = json.loads(b"[" + fast + b"]")
    assert progress.done == len(candidates)
    assert progress.events == sum(len(c["events"]) for c in candidates)
    if flt == NO_FILTER:
        assert [c["userId"] for c in candidates] == sorted(p["userId"] for p in PEOPLE)  # type: ignore[type-var]
        first = next(c for c in candidates if c["userId"] == INT64_MAX)
        assert [e["eventId"] for e in first["events"]] == sorted(
            (e["eventId"] for e in _events(INT64_MAX)),
            key=lambda i: ((11 - int(i[-2:])) // 3, int(i[-2:]) % 7, i),
        )
        with_files = {e["eventId"][-3:]: e["attachedFiles"] for e in first["events"] if e["attachedFiles"]}
        assert [f["fileName"] for f in with_files["e03"]] == sorted(["zeta.txt", "Älpha ü.txt", "a b.txt"])
        assert with_files["e07"][0]["presignedUrl"].startswith("https://signed.example/")
        assert progress.files == 4
        flagged = next(e for e in first["events"] if e["flaggingInfo"])
        assert flagged["flaggingInfo"]["comment"] == COMMENT


def test_long_candidates_stream_in_pieces(
    runtime: Runtime, tricky: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More events than fit one row: the candidate streams in pieces, same bytes."""
    monkeypatch.setattr(pipeline, "_PG_MAX_EVENTS_PER_ROW", 2)
    monkeypatch.setattr(pipeline, "_SQLITE_MAX_EVENTS_PER_ROW", 2)
    monkeypatch.setattr(pipeline, "_FETCH_ROWS", 5)
    for flt in (NO_FILTER, EventFilter(flagged=True)):
        generic, fast, _ = _both(runtime, tricky, flt)
        assert fast == generic


def _fast_path(runtime: Runtime) -> Any:
    if runtime.engine.dialect.name == "postgresql":
        return pipeline._write_candidates_postgres
    return pipeline._write_candidates_sqlite


def test_reader_stops_when_the_export_is_interrupted(runtime: Runtime, tricky: int) -> None:
    progress = pipeline.Progress()
    progress.stop.set()
    write = _fast_path(runtime)
    with snapshot(runtime.engine) as connection:
        with pytest.raises(pipeline.ExportInterrupted):
            write(connection, tricky, NO_FILTER, _Collect(), _sign, progress)
        # The connection is free again (no reader thread left on it).
        assert read_model.count_candidates(connection, tricky) == len(PEOPLE)


def test_read_ahead_passes_on_errors_and_bounds_the_queue() -> None:
    produced: list[int] = []

    def produce() -> Any:
        for n in range(100):
            produced.append(n)
            yield n
        raise RuntimeError("database gone")

    reader = pipeline._ReadAhead(produce, 2)
    items = iter(reader)
    assert next(items) == 0
    time.sleep(0.2)
    # The producer is at most the queue's depth (+ the item in hand) ahead.
    assert len(produced) <= 4
    seen = [0]
    with pytest.raises(RuntimeError, match="database gone"):
        seen.extend(items)
    reader.close()
    assert seen == list(range(100))


def test_read_ahead_stops_its_thread_when_closed_early() -> None:
    def produce() -> Any:
        n = 0
        while True:
            yield n
            n += 1

    reader = pipeline._ReadAhead(produce, 2)
    assert next(iter(reader)) == 0
    reader.close()
    assert not reader._thread.is_alive()
