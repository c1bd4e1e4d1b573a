"""``PUT /v1/test/{testId}/candidates`` under concurrency: requests registering the same new
candidates at once all succeed (on PostgreSQL both found them missing, and the loser's
INSERT broke the unique key: a 500), and a PUT racing the test's erasure answers 404
instead of storing rows in the hidden test."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from examtrail.core.db import begin_write
from examtrail.ingest import service as ingest_service
from examtrail.ingest.models import Candidate, Test
from examtrail.lifecycle import repository as lifecycle_repository
from examtrail.runtime import Runtime

REQUESTS = 6
ROUNDS = 3
CANDIDATES = 2000


def _put_all_at_once(
    http: TestClient, headers: dict[str, str], people: list[dict[str, Any]]
) -> list[httpx.Response]:
    gate = threading.Barrier(REQUESTS)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def put() -> None:
        gate.wait()
        response = http.put("/v1/test/42/candidates", json=people, headers=headers)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=put) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_concurrent_puts_of_the_same_new_candidates_all_succeed(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    assert http.put("/v1/test/42", json={"title": "t"}, headers=headers).status_code == 201
    for round_ in range(ROUNDS):
        people = [{"userId": round_ * 100_000 + n, "candidateId": f"c{n}"} for n in range(CANDIDATES)]
        answers = _put_all_at_once(http, headers, people)
        assert [a.status_code for a in answers] == [200] * REQUESTS, [a.text[:300] for a in answers]
        # Exactly one request created them; the others found them all there.
        assert sorted(a.json()["created"] for a in answers) == [0] * (REQUESTS - 1) + [CANDIDATES]
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Candidate)) == ROUNDS * CANDIDATES


def _wait_until_someone_waits_for_a_lock(runtime: Runtime) -> None:
    """PostgreSQL: until another backend of this database waits for a row lock. (SQLite's
    writers queue on its one write lock: the PUT runs after the erasure either way.)"""
    if runtime.engine.dialect.name != "postgresql":
        return
    deadline = time.monotonic() + 60
    with runtime.engine.connect() as connection:
        while not connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        ).scalar_one():
            assert time.monotonic() < deadline, "the PUT never waited for the erasure"
            time.sleep(0.02)
            connection.rollback()  # a fresh snapshot of pg_stat_activity


def test_a_put_racing_the_tests_erasure_is_404_and_stores_nothing(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    assert http.put("/v1/test/42", json={"title": "t"}, headers=headers).status_code == 201
    with runtime.sessions() as session:
        tenant_id, test_pk = session.execute(select(Test.tenant_id, Test.id)).one()
    answers: list[httpx.Response] = []
    erasure = runtime.sessions()
    try:
        # As ``lifecycle.service.erase_test`` accepts an erasure: lock the test, hide its id.
        begin_write(erasure)
        test = ingest_service.require_test(erasure, tenant_id, 42, lock=True)
        lifecycle_repository.hide_test(erasure, test)
        people = [{"userId": n, "candidateId": f"c{n}"} for n in range(10)]
        put = threading.Thread(
            target=lambda: answers.append(http.put("/v1/test/42/candidates", json=people, headers=headers))
        )
        put.start()
        _wait_until_someone_waits_for_a_lock(runtime)
        erasure.commit()
    finally:
        erasure.close()
    put.join()
    assert answers[0].status_code == 404, answers[0].text
    assert answers[0].json()["error"] == "test_not_found"
    with runtime.sessions() as session:
        stored = session.scalar(
            select(func.count()).select_from(Candidate).where(Candidate.test_pk == test_pk)
        )
    assert stored == 0
