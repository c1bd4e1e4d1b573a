"""``since`` is exact under concurrency: an event whose transaction commits after an
export's snapshot is in the next incremental export, never lost, never twice."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from examtrail.core.db import begin_write, transaction
from examtrail.ingest import service as ingest_service
from examtrail.ingest.schemas import EventIn
from examtrail.runtime import Runtime
from tests.exports.test_export_options import all_ids, export_json
from tests.support.api import seed_test


def _event(event_id: str, minute: int = 0) -> EventIn:
    return EventIn.model_validate_json(
        json.dumps({"eventId": event_id, "event": "tick", "timeStamp": f"2026-06-01T08:{minute:02d}:00Z"})
    )


def _tenant_of(runtime: Runtime, test_id: int) -> int:
    from sqlalchemy import select

    from examtrail.ingest.models import Test

    with runtime.sessions() as session:
        return int(session.scalars(select(Test.tenant_id).where(Test.external_id == test_id)).one())


def test_late_commit_with_a_lower_id_is_in_the_next_export(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no transaction commits behind another")
    seed_test(http, headers, test_id=80, candidates=1, events_per_candidate=0)
    tenant_id = _tenant_of(runtime, 80)
    slow = runtime.sessions()
    try:
        begin_write(slow)
        test = ingest_service.require_test(slow, tenant_id, 80)
        # Inserted first (lower id, earlier timestamp), committed last.
        ingest_service.add_events(slow, test, 100, [_event("slow", 0)])
        response = http.post(
            "/v1/test/80/candidates/100/events",
            json={"eventId": "fast", "event": "tick", "timeStamp": "2026-06-01T08:30:00Z"},
            headers=headers,
        )
        assert response.status_code == 201
        first, body = export_json(http, headers, 80)
        assert all_ids(body) == ["fast"]
        slow.commit()
    finally:
        slow.close()
    second, delta = export_json(http, headers, 80, {"since": first["nextSince"]})
    assert all_ids(delta) == ["slow"]
    _, nothing = export_json(http, headers, 80, {"since": second["nextSince"]})
    assert all_ids(nothing) == []


def test_chain_of_incremental_exports_during_ingestion(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    seed_test(http, headers, test_id=81, candidates=3, events_per_candidate=0)
    tenant_id = _tenant_of(runtime, 81)
    postgres = runtime.engine.dialect.name == "postgresql"
    writers = 3 if postgres else 1
    ingested: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def ingest(worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        try:
            while not stop.is_set() and n < 40:
                ids = [f"w{worker}-{n}-{k}" for k in range(rng.randint(1, 5))]
                with transaction(runtime.sessions) as session:
                    test = ingest_service.require_test(session, tenant_id, 81)
                    user = 100 + rng.randrange(3)
                    # Early timestamps on purpose: late rows land "before" exported ones.
                    ingest_service.add_events(
                        session, test, user, [_event(i, rng.randrange(60)) for i in ids]
                    )
                    if postgres:
                        time.sleep(rng.random() * 0.05)  # commit out of order with the others
                with lock:
                    ingested.extend(ids)
                n += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    exported: list[str] = []
    since: str | None = None
    rounds = 0
    try:
        while any(t.is_alive() for t in threads) or rounds < 2:
            params: dict[str, Any] = {"since": since} if since else {}
            params["format"] = "jsonl" if rounds % 2 else "json"
            status, body = _export_any(http, headers, params)
            exported.extend(body)
            since = status["nextSince"]
            rounds += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors
    status, body = _export_any(http, headers, {"since": since})
    exported.extend(body)
    assert rounds >= 2
    assert len(exported) == len(set(exported)), "an event was exported twice"
    assert sorted(exported) == sorted(ingested)


def _export_any(
    http: TestClient, headers: dict[str, str], params: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    from tests.exports.test_export_options import download, jsonl, order

    if params.get("format") == "jsonl":
        status = order(http, headers, 81, params)
        return status, [line["eventId"] for line in jsonl(download(http, status))]
    status, body = export_json(http, headers, 81, params)
    return status, all_ids(body)
