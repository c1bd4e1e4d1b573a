"""The status call and the token call answer from the event loop: on PostgreSQL through the async
driver (one SELECT, the audit entry inserted and committed before the answer), on SQLite as one
threadpool hop for the read and, when a link is issued, one as a writer for its audit entry.
The same answers and the same audit entries either way."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, event, select
from sqlalchemy.engine import make_url

from examtrail.audit.models import AuditEntry
from examtrail.core import db
from examtrail.core.db import ASYNC_POOL_SIZE
from examtrail.deps import get_runtime_dep
from examtrail.runtime import Runtime
from tests.support.api import bearer, create_client, get_token, seed_test, wait_for_job
from tests.support.db import PG_ADMIN_DSN


def _link_entries(runtime: Runtime, job_id: str) -> list[AuditEntry]:
    # A session of its own: what the status call committed, nothing else.
    with runtime.sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "export.link_issued", AuditEntry.object_id == job_id
                )
            )
        )


def _finished(http: TestClient, headers: dict[str, str], test_id: int) -> dict[str, Any]:
    seed_test(http, headers, test_id)
    ordered = http.post(f"/v1/test/{test_id}/events", headers=headers)
    assert ordered.status_code == 202, ordered.text
    status = wait_for_job(http, headers, test_id, ordered.json()["jobId"])
    assert status["status"] == "finished", status
    return status


def test_the_event_loop_engine_is_there_on_postgresql_only(http: TestClient, runtime: Runtime) -> None:
    engine = getattr(http.app, "state").async_engine  # noqa: B009 (Starlette's state is untyped)
    if runtime.engine.dialect.name == "postgresql":
        assert engine is not None and engine.pool.size() == ASYNC_POOL_SIZE
    else:
        assert engine is None


def test_each_status_call_commits_one_link_entry_before_it_answers(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    status = _finished(http, headers, 31)
    job_id = status["jobId"]
    before = len(_link_entries(runtime, job_id))  # wait_for_job's own calls
    answers = []
    for path in (f"/v1/test/31/events?jobId={job_id}", f"/v1/test/31/events/{job_id}"):
        response = http.get(path, headers={**headers, "X-Request-ID": "poll-1"})
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"] == "application/json"
        answers.append(response.json())
        entries = _link_entries(runtime, job_id)
        assert len(entries) == before + 1
        before += 1
        newest = max(entries, key=lambda entry: entry.id)
        assert newest.request_id == "poll-1" and newest.test_id == 31
        assert newest.client_id is not None and newest.source_ip is not None
    first, second = answers
    # The same job, the same body but for the freshly signed link.
    assert {k: v for k, v in first.items() if k != "downloadUrl"} == {
        k: v for k, v in second.items() if k != "downloadUrl"
    }
    assert first["signature"] and first["downloadUrl"] and first["downloadUrlExpires"]
    assert first["progress"] == 100 and first["status"] == "finished"


def test_a_status_call_without_a_link_writes_no_entry_and_unknown_jobs_are_404(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str], runtime: Runtime
) -> None:
    status = _finished(http, headers, 32)
    job_id = status["jobId"]
    before = len(_link_entries(runtime, job_id))
    # Another tenant, another test, an unknown id: 404, and no entry.
    for path, who in (
        (f"/v1/test/32/events?jobId={job_id}", other_headers),
        (f"/v1/test/33/events?jobId={job_id}", headers),
        ("/v1/test/32/events?jobId=nope", headers),
    ):
        response = http.get(path, headers=who)
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "job_not_found"
    assert len(_link_entries(runtime, job_id)) == before


def test_the_status_call_survives_a_dropped_database_connection(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    status = _finished(http, headers, 34)
    url = f"/v1/test/34/events?jobId={status['jobId']}"
    assert http.get(url, headers=headers).status_code == 200
    if runtime.engine.dialect.name == "postgresql":
        # Every other connection to the test database goes (a server restart, as pooled
        # connections see it): the next call is answered on a fresh one.
        dsn = runtime.settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    for _ in range(3):
        response = http.get(url, headers=headers)
        assert response.status_code == 200, response.text


def test_the_token_call_commits_its_entry_and_refuses_wrong_keys(http: TestClient, runtime: Runtime) -> None:
    client_id, key = create_client(runtime, "uni-t")
    token = get_token(http, client_id, key)
    assert http.get("/v1/test/1/events?jobId=x", headers=bearer(token)).status_code == 404
    with runtime.sessions() as session:
        issued = list(
            session.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "token.issued", AuditEntry.client_id == client_id
                )
            )
        )
    assert len(issued) == 1 and issued[0].object_id == client_id
    wrong = http.post(
        f"/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}",
        headers={"code": key + "x"},
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_grant"
    unknown = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": key},
    )
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_grant"
    oauth = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": key},
    )
    assert oauth.status_code == 200 and oauth.headers["cache-control"] == "no-store"
    assert set(oauth.json()) == {"access_token", "token_type", "expires_in"}


def test_a_plain_status_call_refuses_what_the_routes_dependencies_refuse(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    ingest_id, ingest_key = create_client(runtime, "uni-a", scopes="ingest")
    ingest_only = bearer(get_token(http, ingest_id, ingest_key))
    for path in ("/v1/test/35/events?jobId=x", "/v1/test/35/events/x"):
        response = http.get(path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="examtrail"'
        response = http.get(path, headers={"Authorization": "Bearer not.a.token"})
        assert response.status_code == 401 and response.json()["error"] == "invalid_token"
        response = http.get(path, headers=ingest_only)
        assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"
        assert http.get(path, headers=headers).status_code == 404
    # Input the fast path leaves to the route's own validation: the same 422s as before.
    for path in (
        "/v1/test/abc/events?jobId=x",
        "/v1/test/-1/events?jobId=x",
        f"/v1/test/{2**63}/events?jobId=x",
        f"/v1/test/{'9' * 5000}/events?jobId=x",  # past int()'s digit limit: a 422, never a 500
        f"/v1/test/35/events?jobId={'x' * 65}",
        "/v1/test/35/events?jobId=",
        "/v1/test/35/events?jobId=x&format=csv",
        f"/v1/test/35/events/{'x' * 65}",
    ):
        response = http.get(path, headers=headers)
        assert response.status_code == 422, (path, response.text)


def test_a_test_id_not_written_in_ascii_digits_is_a_422_on_both_paths(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    job_id = _finished(http, headers, 37)["jobId"]
    app = getattr(http, "app")  # noqa: B009 (TestClient's app is untyped)

    def both(test_id: str) -> tuple[Any, Any]:
        url = f"/v1/test/{test_id}/events?jobId={job_id}"
        fast = http.get(url, headers=headers)
        app.dependency_overrides[get_runtime_dep] = lambda: runtime
        try:
            return fast, http.get(url, headers=headers)
        finally:
            app.dependency_overrides.clear()

    # What pydantic's lax mode reads as 37 (the regular route answered the job with it).
    for loose in ("37.0", "%2B37", "3_7", "%2037", "37%20"):
        fast, regular = both(loose)
        assert fast.status_code == regular.status_code == 422, (loose, fast.text, regular.text)
        assert fast.content == regular.content
        assert fast.json()["error"] == "validation_error"
        assert fast.json()["details"][0]["field"] == "testId"
    # ASCII digits, leading zeros too, are the test's id on both paths.
    for plain in ("37", "0037"):
        fast, regular = both(plain)
        assert fast.status_code == regular.status_code == 200, (plain, fast.text, regular.text)
        assert fast.json()["jobId"] == regular.json()["jobId"] == job_id


def test_the_fast_and_the_regular_status_path_answer_alike(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    status = _finished(http, headers, 36)
    url = f"/v1/test/36/events?jobId={status['jobId']}"
    before = len(_link_entries(runtime, status["jobId"]))
    fast = http.get(url, headers=headers)
    app = getattr(http, "app")  # noqa: B009 (TestClient's app is untyped)
    # Any dependency override sends the call through FastAPI's dependency solving.
    app.dependency_overrides[get_runtime_dep] = lambda: runtime
    try:
        regular = http.get(url, headers=headers)
    finally:
        app.dependency_overrides.clear()
    assert fast.status_code == regular.status_code == 200
    assert fast.headers["cache-control"] == regular.headers["cache-control"] == "no-store"
    assert {k: v for k, v in fast.json().items() if k != "downloadUrl"} == {
        k: v for k, v in regular.json().items() if k != "downloadUrl"
    }
    assert len(_link_entries(runtime, status["jobId"])) == before + 2


def test_the_status_call_answers_503_while_the_database_refuses_connections(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    """PostgreSQL: the status call runs on plain psycopg, whose errors SQLAlchemy does not wrap;
    an unreachable database is still the retryable 503 every other route answers, not a 500."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("the plain psycopg path is PostgreSQL's")
    url = "/v1/test/37/events?jobId=x"
    assert http.get(url, headers=headers).status_code == 404  # a pooled connection exists
    database = make_url(runtime.settings.resolved_database_url).database
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
            response = http.get(url, headers=headers)
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "database_unavailable"
    assert response.headers["retry-after"] == "2"
    assert http.get(url, headers=headers).status_code == 404


@pytest.mark.parametrize("listing", [False, True], ids=["status", "job-list"])
def test_sqlite_status_polls_never_starve_a_writer_of_threads(
    http: TestClient,
    headers: dict[str, str],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    listing: bool,
) -> None:
    """SQLite: a status call whose answer carries a link writes its audit entry. Polls that waited
    for the write lock on worker threads took every thread while a request holding the lock
    needed one more to commit: nothing moved until the lock's timeout, the polls were 503s.
    Here the threads are few (3) and the lock's timeout short (5 s); the polls wait their
    turn in the event loop and every call is answered. The job list, whose links are audited
    alike, waits the same way."""
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single write lock")
    status = _finished(http, headers, 39)
    url = "/v1/test/39/events/jobs" if listing else f"/v1/test/39/events?jobId={status['jobId']}"
    monkeypatch.setattr(db, "WRITE_LOCK_TIMEOUT", 5.0)
    threads = 3

    async def few_threads() -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads

    portal: Any = getattr(http, "portal")  # noqa: B009 (set while the client runs)
    portal.call(few_threads)
    holding = threading.Event()

    def slow_writer(connection: Connection) -> None:
        # The PUT below holds the write lock a while between its thread hops.
        if connection.get_execution_options().get("sqlite_begin") == "IMMEDIATE" and not holding.is_set():
            holding.set()
            time.sleep(1.0)

    event.listen(runtime.engine, "begin", slow_writer)
    try:
        with ThreadPoolExecutor(threads + 1) as pool:
            put = pool.submit(http.put, "/v1/test/39", json={"title": "renamed"}, headers=headers)
            assert holding.wait(10)
            polls = [pool.submit(http.get, url, headers=headers) for _ in range(threads)]
            answers = [poll.result(60) for poll in polls]
            assert put.result(60).status_code == 200
    finally:
        event.remove(runtime.engine, "begin", slow_writer)
    assert [answer.status_code for answer in answers] == [200] * threads, [a.text for a in answers]
    assert len(_link_entries(runtime, status["jobId"])) >= threads


def test_the_job_list_commits_one_link_entry_per_listed_link_before_it_answers(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    status = _finished(http, headers, 41)
    other = http.post("/v1/test/41/events", params={"format": "csv"}, headers=headers).json()
    ids = (status["jobId"], other["jobId"])
    before = {job_id: len(_link_entries(runtime, job_id)) for job_id in ids}
    listed = http.get("/v1/test/41/events/jobs", headers={**headers, "X-Request-ID": "list-1"})
    assert listed.status_code == 200, listed.text
    assert listed.headers["cache-control"] == "no-store"
    jobs = {job["jobId"]: job for job in listed.json()["jobs"]}
    assert set(jobs) == set(ids) and jobs[status["jobId"]]["downloadUrl"]
    for job_id in ids:  # one entry per link handed out (the other job may not be finished yet)
        entries = _link_entries(runtime, job_id)
        linked = jobs[job_id].get("downloadUrl") is not None
        assert len(entries) == before[job_id] + linked
        if linked:
            assert max(entries, key=lambda entry: entry.id).request_id == "list-1"
