"""The export pipeline under failure, cancellation and size."""

from __future__ import annotations

import threading
import time
import tracemalloc
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from examtrail.core.db import snapshot, transaction, utcnow
from examtrail.core.settings import Settings
from examtrail.exports import pipeline, repository, service
from examtrail.exports.models import ExportJob
from examtrail.exports.pipeline import write_export
from examtrail.ingest import read_model
from examtrail.ingest.models import Candidate, Event, Test
from examtrail.runtime import Runtime
from examtrail.storage.base import StorageError, StoredObject
from tests.support.api import seed_test, wait_for_job


def exported_files(runtime: Runtime) -> list[str]:
    return list(runtime.store.list_keys("exports/"))


@pytest.mark.settings(job_max_attempts=2)
def test_storage_failure_retries_then_fails_cleanly(
    http: TestClient, headers: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_test(http, headers, test_id=20)
    monkeypatch.setattr(service, "_backoff", lambda attempt: timedelta(milliseconds=100))
    calls = []

    def broken(key: str, **_: Any) -> Any:
        calls.append(key)
        raise StorageError("bucket unreachable")

    monkeypatch.setattr(runtime.store, "open_writer", broken)
    job = http.post("/v1/test/20/events", headers=headers).json()
    status = wait_for_job(http, headers, 20, job["jobId"], timeout=20)
    assert status["status"] == "failed"
    assert status["error"] == {"code": "storage_unavailable", "message": "bucket unreachable"}
    assert status["downloadUrl"] is None
    assert len(calls) == 2
    assert exported_files(runtime) == []


def test_transient_failure_then_success(
    http: TestClient, headers: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_test(http, headers, test_id=21)
    monkeypatch.setattr(service, "_backoff", lambda attempt: timedelta(milliseconds=100))
    real = runtime.store.open_writer
    failures = [StorageError("503 slow down")]

    def flaky(key: str, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(key, **kwargs)

    monkeypatch.setattr(runtime.store, "open_writer", flaky)
    job = http.post("/v1/test/21/events", headers=headers).json()
    status = wait_for_job(http, headers, 21, job["jobId"], timeout=20)
    assert status["status"] == "finished"
    assert len(exported_files(runtime)) == 1


def test_unexpected_error_fails_with_generic_message(
    http: TestClient, headers: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_test(http, headers, test_id=22)

    def boom(*_: Any, **__: Any) -> StoredObject:
        raise ValueError("secret internals")

    monkeypatch.setattr(service, "write_export", boom)
    job = http.post("/v1/test/22/events", headers=headers).json()
    status = wait_for_job(http, headers, 22, job["jobId"])
    assert status["status"] == "failed"
    assert status["error"]["code"] == "internal_error"
    assert "secret" not in status["error"]["message"]


def test_cancel_running_job_publishes_nothing(
    http: TestClient, headers: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_test(http, headers, test_id=23)
    running = threading.Event()
    real = write_export

    def slow(connection: Any, test_pk: int, writer: Any, store: Any, **kwargs: Any) -> StoredObject:
        running.set()
        progress: pipeline.Progress = kwargs["progress"]
        # Hold the export open until the heartbeat notices the cancellation.
        assert progress.stop.wait(10)
        return real(connection, test_pk, writer, store, **kwargs)

    monkeypatch.setattr(service, "write_export", slow)
    job = http.post("/v1/test/23/events", headers=headers).json()
    assert running.wait(10)
    response = http.delete("/v1/test/23/events", params={"jobId": job["jobId"]}, headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    time.sleep(0.5)
    final = wait_for_job(http, headers, 23, job["jobId"])
    assert final["status"] == "cancelled"
    assert final["downloadUrl"] is None
    assert exported_files(runtime) == []


def test_taken_over_job_does_not_publish(runtime: Runtime, http: TestClient, headers: dict[str, str]) -> None:
    """A worker that lost its lease (another worker took the job) must not mark it finished."""
    seed_test(http, headers, test_id=24)
    with transaction(runtime.sessions) as session:
        test = session.query(Test).filter_by(external_id=24).one()
        job = ExportJob(
            id="job-takeover",
            tenant_id=test.tenant_id,
            test_pk=test.id,
            test_external_id=24,
            requested_by="x",
            status="queued",
            links_expire_at=utcnow() + timedelta(hours=1),
            not_before=utcnow() + timedelta(hours=1),
        )
        session.add(job)
    with transaction(runtime.sessions) as session:
        held = session.get(ExportJob, "job-takeover")
        assert held is not None
        held.status, held.lease_owner, held.lease_expires_at = (
            "running",
            "someone-else",
            utcnow() + timedelta(hours=1),
        )
    key = "exports/x/job-takeover/1-me.json"
    stored = StoredObject(key=key, size=1, sha256="0" * 64)
    service._publish(runtime, (), "job-takeover", "me", key, stored, pipeline.Progress(), None, utcnow())
    with runtime.sessions() as session:
        after = repository.load_job(session, "job-takeover")
        assert after is not None and after.status == "running" and after.storage_key is None


def test_snapshot_excludes_events_added_during_export(
    runtime: Runtime, http: TestClient, headers: dict[str, str]
) -> None:
    seed_test(http, headers, test_id=25, candidates=2, events_per_candidate=3)
    store = runtime.store
    with runtime.sessions() as session:
        test = session.query(Test).filter_by(external_id=25).one()
        test_pk = test.id
    writer = store.open_writer("exports/snapshot-test.json", content_type="application/json")
    with snapshot(runtime.engine) as connection:
        # Start reading, then let another client add events before the read finishes.
        read_model.count_candidates(connection, test_pk)
        late = {"eventId": "late", "event": "x", "timeStamp": "2026-06-01T09:00:00Z"}
        assert http.post("/v1/test/25/candidates/100/events", json=late, headers=headers).status_code == 201
        stored = pipeline.write_export(
            connection,
            test_pk,
            writer,
            store,
            created=utcnow(),
            links_expire_at=utcnow(),
            progress=pipeline.Progress(),
        )
    import json

    body = json.loads(b"".join(store.open_read(stored.key)))
    assert "late" not in [e["eventId"] for c in body["candidates"] for e in c["events"]]
    assert sum(len(c["events"]) for c in body["candidates"]) == 6


def _bulk_events(runtime: Runtime, test_pk: int, candidates: int, per_candidate: int) -> None:
    from examtrail.ingest.schemas import EventIn
    from examtrail.ingest.service import event_doc

    with transaction(runtime.sessions) as session:
        session.execute(
            insert(Candidate),
            [
                {"test_pk": test_pk, "user_id": u, "candidate_id": f"c{u}", "created_at": utcnow()}
                for u in range(candidates)
            ],
        )
        pks = dict(session.query(Candidate.user_id, Candidate.id).filter_by(test_pk=test_pk).all())
        rows = []
        for user_id, candidate_pk in pks.items():
            for n in range(per_candidate):
                ms = 1_780_000_000_000 + n * 1000
                event_id = f"{user_id}-{n}"
                model = EventIn.model_validate_json(
                    f'{{"eventId": "{event_id}", "event": "tick", "timeStamp": "2026-06-01T09:00:00Z"}}'
                )
                rows.append(
                    {
                        "test_pk": test_pk,
                        "candidate_pk": candidate_pk,
                        "event_id": event_id,
                        "event": "tick",
                        "occurred_at_ms": ms,
                        "doc": event_doc(event_id, model, ms),
                        "file_count": 0,
                        "created_at": utcnow(),
                    }
                )
        session.execute(insert(Event), rows)


class _CountingWriter:
    def __init__(self) -> None:
        self.size = 0
        self.largest = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self.largest = max(self.largest, len(data))

    def commit(self) -> StoredObject:
        return StoredObject("k", self.size, "")

    def abort(self) -> None:
        pass


def _peak_export_memory(runtime: Runtime, test_pk: int) -> tuple[int, _CountingWriter]:
    writer = _CountingWriter()
    tracemalloc.start()
    try:
        with snapshot(runtime.engine) as connection:
            pipeline.write_export(
                connection,
                test_pk,
                writer,
                runtime.store,
                created=utcnow(),
                links_expire_at=utcnow(),
                progress=pipeline.Progress(),
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, writer


def test_memory_does_not_grow_with_events(
    runtime: Runtime, http: TestClient, headers: dict[str, str]
) -> None:
    """Peak Python memory while exporting is the same for 10k and 50k events (streaming)."""
    sizes = {}
    for test_id, candidates in ((26, 10), (27, 50)):
        http.put(f"/v1/test/{test_id}", json={"title": "big"}, headers=headers)
        with runtime.sessions() as session:
            test_pk = session.query(Test).filter_by(external_id=test_id).one().id
        _bulk_events(runtime, test_pk, candidates=candidates, per_candidate=1000)
        sizes[candidates] = _peak_export_memory(runtime, test_pk)
    (small_peak, small), (large_peak, large) = sizes[10], sizes[50]
    assert large.size > 4.5 * small.size
    assert large.largest < 2 * 1024 * 1024
    # Five times the events, about the same memory: buffers are bounded, nothing accumulates.
    # The bound includes the candidate bodies read ahead of the writer (SQLite), which the
    # short run does not always fill before it ends: allowed on top, whatever the run's timing.
    body = large.size // 50
    read_ahead = (pipeline._SQLITE_READ_AHEAD + 2) * body
    assert large_peak < small_peak * 1.25 + 256 * 1024 + read_ahead, (small_peak, large_peak, read_ahead)


def test_settings_parse_retry_schedule() -> None:
    settings = Settings(_env_file=None, webhook_retry_schedule="0, 1,2")
    assert settings.webhook_retry_schedule == [0, 1, 2]


def test_retry_schedule_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMTRAIL_WEBHOOK_RETRY_SCHEDULE", "0,1,2")
    assert Settings(_env_file=None).webhook_retry_schedule == [0, 1, 2]
    monkeypatch.setenv("EXAMTRAIL_WEBHOOK_RETRY_SCHEDULE", "[5, 10]")
    assert Settings(_env_file=None).webhook_retry_schedule == [5, 10]


def test_concurrent_orders_create_one_job(runtime: Runtime) -> None:
    """Orders racing from several API processes end up with one job under way."""
    from concurrent.futures import ThreadPoolExecutor

    from examtrail.auth.service import create_client
    from examtrail.core.security import Principal
    from examtrail.ingest.service import put_test

    with transaction(runtime.sessions) as session:
        tenant_id = create_client(session, tenant_name="uni-a", scopes=frozenset({"export"})).tenant_id
        put_test(session, tenant_id, 30, "race", actor=None)
    principal = Principal(tenant_id, "et_x", frozenset({"export"}), utcnow() + timedelta(hours=1))

    def order(_: int) -> str:
        with transaction(runtime.sessions) as session:
            return service.order_export(session, principal, 30, reuse=True, retention_days=0).job.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(order, range(16)))
    assert len(ids) == 1
