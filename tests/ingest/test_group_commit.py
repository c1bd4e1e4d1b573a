"""Single events share one transaction and one commit (the group-commit writer), yet each
request keeps its own answer, its own rollback on error and its own audit entry; nothing is
answered before the commit that stored it, and a stopping writer commits what it holds."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from psycopg.errors import DeadlockDetected
from sqlalchemy import Connection, event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from examtrail.audit.models import AuditEntry
from examtrail.auth.models import Tenant
from examtrail.core.batching import GroupCommitWriter, Outcome, WriterStopped
from examtrail.core.db import commit_retrying_deadlock, utcnow
from examtrail.ingest.api import GROUP_COMMIT_MAX_EVENTS
from examtrail.ingest.models import Event
from examtrail.runtime import Runtime
from tests.support.api import seed_test


def _writer(http: TestClient) -> GroupCommitWriter:
    writer: GroupCommitWriter = http.app.state.ingest_writer  # type: ignore[attr-defined]
    return writer


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def _single(event_id: str, kind: str = "network_lost") -> dict[str, Any]:
    return {"eventId": event_id, "event": kind, "timeStamp": "2026-06-01T10:00:00Z"}


def _stored(runtime: Runtime, event_id: str) -> Event | None:
    with runtime.sessions() as session:
        return session.scalars(select(Event).where(Event.event_id == event_id)).one_or_none()


def _audit_by_request(runtime: Runtime) -> dict[str | None, AuditEntry]:
    with runtime.sessions() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "events.ingested")).all()
    return {row.request_id: row for row in rows}


def _block(release: threading.Event, started: threading.Event, _session: Session) -> bool:
    started.set()
    return release.wait(60)


@contextmanager
def held(writer: GroupCommitWriter) -> Iterator[threading.Event]:
    """Every writer thread busy with a unit that waits: the requests sent meanwhile queue.
    Setting the returned event frees one thread, which then takes them all in one group."""
    releases: list[threading.Event] = []
    blockers: list[Future[bool]] = []
    for _ in range(writer.threads):  # one at a time: each on a thread of its own
        release, started = threading.Event(), threading.Event()
        blockers.append(writer.submit(partial(_block, release, started)))
        assert started.wait(60)
        releases.append(release)
    try:
        yield releases[0]
    finally:
        for release in releases:
            release.set()
        for blocker in blockers:
            blocker.result(timeout=60)


def test_requests_of_one_group_keep_their_own_answers_rollbacks_and_audit_entries(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str], runtime: Runtime
) -> None:
    seed_test(http, headers, test_id=42, candidates=2, events_per_candidate=0)
    first = http.post("/v1/test/42/candidates/100/events", json=_single("taken"), headers=headers)
    assert first.status_code == 201
    writer = _writer(http)

    sends = {
        "rid-ok-1": ("/v1/test/42/candidates/100/events", _single("new-1")),
        "rid-no-candidate": ("/v1/test/42/candidates/999/events", _single("lost-1")),
        "rid-conflict": ("/v1/test/42/candidates/100/events", _single("taken", "new_seb_login")),
        "rid-ok-2": ("/v1/test/42/candidates/101/events", _single("new-2")),
        "rid-no-test": ("/v1/test/4242/candidates/100/events", _single("lost-2")),
        "rid-repeat": ("/v1/test/42/candidates/100/events", _single("taken")),
        "rid-tenant": ("/v1/test/42/candidates/100/events", _single("lost-3")),  # another tenant's
    }
    groups_before = writer.groups
    with held(writer) as release, ThreadPoolExecutor(len(sends)) as pool:
        answers: dict[str, Future[httpx.Response]] = {
            rid: pool.submit(
                http.post,
                path,
                json=body,
                headers={**(other_headers if rid == "rid-tenant" else headers), "X-Request-ID": rid},
            )
            for rid, (path, body) in sends.items()
        }
        _wait_for(lambda: writer.pending() == len(sends), "the requests to queue behind the blocker")
        assert not any(answer.done() for answer in answers.values())
        release.set()
        got = {rid: answer.result(timeout=60) for rid, answer in answers.items()}
        # The freed blocker's group, then every request in one group: one transaction, one commit.
        assert writer.groups - groups_before == 2

    assert got["rid-ok-1"].status_code == 201
    assert got["rid-ok-1"].json() == {"received": 1, "created": 1, "duplicates": 0, "eventIds": ["new-1"]}
    assert got["rid-ok-2"].status_code == 201
    assert got["rid-repeat"].status_code == 200
    assert got["rid-repeat"].json()["duplicates"] == 1
    assert got["rid-no-candidate"].status_code == 404
    assert got["rid-no-candidate"].json()["error"] == "candidate_not_found"
    assert got["rid-no-test"].status_code == 404
    assert got["rid-no-test"].json()["error"] == "test_not_found"
    assert got["rid-tenant"].status_code == 404
    assert got["rid-tenant"].json()["error"] == "test_not_found"
    assert got["rid-conflict"].status_code == 409
    assert got["rid-conflict"].json()["error"] == "event_conflict"
    for rid, answer in got.items():
        assert answer.headers["x-request-id"] == rid

    assert _stored(runtime, "new-1") is not None and _stored(runtime, "new-2") is not None
    assert _stored(runtime, "lost-1") is None and _stored(runtime, "lost-2") is None
    assert _stored(runtime, "lost-3") is None
    taken = _stored(runtime, "taken")
    assert taken is not None and taken.event == "network_lost"  # the conflicting one changed nothing

    audit = _audit_by_request(runtime)
    # One entry per successful request, under its own request id and address; none for the failures.
    assert {"rid-ok-1", "rid-ok-2", "rid-repeat"} <= set(audit)
    assert not {"rid-no-candidate", "rid-conflict", "rid-no-test", "rid-tenant"} & set(audit)
    for rid, created in (("rid-ok-1", 1), ("rid-ok-2", 1), ("rid-repeat", 0)):
        entry = audit[rid]
        assert entry.test_id == 42 and entry.source_ip == "testclient"
        assert entry.details is not None
        assert orjson.loads(entry.details) == {"received": 1, "created": created, "duplicates": 1 - created}


def test_a_batch_that_fails_rolls_back_only_its_own_events(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    seed_test(http, headers, test_id=43, candidates=1, events_per_candidate=0)
    writer = _writer(http)
    path = "/v1/test/43/candidates/100/events"
    bad_batch = [_single("b-1"), _single("b-2"), _single("b-1", "new_seb_login")]  # contradicts itself
    late_conflict = [_single("c-1"), _single("a-1", "new_seb_login")]  # a-1 is stored by the first
    with held(writer) as release, ThreadPoolExecutor(3) as pool:
        good = pool.submit(http.post, path, json=[_single("a-1"), _single("a-2")], headers=headers)
        _wait_for(lambda: writer.pending() == 1, "the first request to queue")
        bad = pool.submit(http.post, path, json=bad_batch, headers=headers)
        _wait_for(lambda: writer.pending() == 2, "the second request to queue")
        late = pool.submit(http.post, path, json=late_conflict, headers=headers)
        _wait_for(lambda: writer.pending() == 3, "the third request to queue")
        release.set()
        assert good.result(timeout=60).status_code == 201
        assert bad.result(timeout=60).status_code == 409
        # Its first event was inserted inside the group before the conflict was found: rolled back.
        assert late.result(timeout=60).status_code == 409
    assert [_stored(runtime, e) is not None for e in ("a-1", "a-2", "b-1", "b-2", "c-1")] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_the_answer_leaves_only_after_the_commit_that_stored_it(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    seed_test(http, headers, test_id=44, candidates=1, events_per_candidate=0)
    writer = _writer(http)
    entered, release = threading.Event(), threading.Event()

    def hold_commit(connection: Connection) -> None:
        if threading.current_thread().name == writer.name:
            entered.set()
            assert release.wait(60)

    event.listen(runtime.engine, "commit", hold_commit)
    try:
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(
                http.post, "/v1/test/44/candidates/100/events", json=_single("late"), headers=headers
            )
            assert entered.wait(60)
            # The commit has not run: no answer yet, and the event is not visible to others.
            assert not answer.done()
            assert _stored(runtime, "late") is None
            release.set()
            assert answer.result(timeout=60).status_code == 201
    finally:
        event.remove(runtime.engine, "commit", hold_commit)
    assert _stored(runtime, "late") is not None


def test_a_failed_commit_answers_an_error_and_stores_nothing(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    seed_test(http, headers, test_id=45, candidates=1, events_per_candidate=0)
    writer = _writer(http)

    def fail_commit(connection: Connection) -> None:
        if threading.current_thread().name == writer.name:
            raise OperationalError("COMMIT", None, Exception("the database went away"))

    event.listen(runtime.engine, "commit", fail_commit)
    try:
        answer = http.post("/v1/test/45/candidates/100/events", json=_single("gone"), headers=headers)
    finally:
        event.remove(runtime.engine, "commit", fail_commit)
    assert answer.status_code == 503
    assert answer.json()["error"] == "database_unavailable"
    assert _stored(runtime, "gone") is None
    again = http.post("/v1/test/45/candidates/100/events", json=_single("gone"), headers=headers)
    assert again.status_code == 201
    assert _stored(runtime, "gone") is not None


def test_a_commit_whose_answer_is_lost_is_never_run_again(
    http: TestClient, headers: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's COMMIT reached the database, then its answer was lost (the connection died):
    the group may be stored. Running its units again would store each audit entry twice and
    answer a 200 'duplicate' to the request that created the event: each gets the error."""
    seed_test(http, headers, test_id=47, candidates=1, events_per_candidate=0)
    writer = _writer(http)
    dialect = runtime.engine.dialect
    commit = dialect.do_commit
    lost: list[bool] = []

    def commit_then_lose_the_answer(dbapi_connection: Any) -> None:
        commit(dbapi_connection)
        if threading.current_thread().name == writer.name and not lost:
            lost.append(True)
            raise dialect.loaded_dbapi.OperationalError("the connection was lost after COMMIT")

    monkeypatch.setattr(dialect, "do_commit", commit_then_lose_the_answer)
    url = "/v1/test/47/candidates/100/events"
    answer = http.post(url, json=_single("lost"), headers={**headers, "X-Request-ID": "lost-1"})
    monkeypatch.undo()
    assert lost and answer.status_code == 503, answer.text
    assert answer.json()["error"] == "database_unavailable"
    assert _stored(runtime, "lost") is not None
    with runtime.sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.request_id == "lost-1")).all()
    assert len(entries) == 1, [e.details for e in entries]
    again = http.post(url, json=_single("lost"), headers=headers)
    assert again.status_code == 200 and again.json()["duplicates"] == 1


def test_a_unit_whose_pending_rows_fail_at_the_flush_fails_alone(runtime: Runtime) -> None:
    """Rows a unit added but did not flush fail before the group's COMMIT: nothing was stored,
    so each unit runs again alone and only the bad one fails (never the group's other units)."""
    writer = GroupCommitWriter(runtime.sessions, name="flush-writer")
    writer.start()
    try:

        def add(tenant_id: int, session: Session) -> int:
            session.add(
                AuditEntry(at=utcnow(), tenant_id=tenant_id, action="probe", object_type="t", object_id="x")
            )
            return tenant_id

        with runtime.sessions() as session:
            tenant = Tenant(name="flush")
            session.add(tenant)
            session.commit()
            good_tenant = tenant.id
        release, started = threading.Event(), threading.Event()
        blocker = writer.submit(partial(_block, release, started))
        assert started.wait(60)
        good = writer.submit(partial(add, good_tenant))
        bad = writer.submit(partial(add, good_tenant + 10_000))  # no such tenant: the foreign key
        release.set()
        assert blocker.result(timeout=60) is True
        assert good.result(timeout=60) == good_tenant
        with pytest.raises(IntegrityError):
            bad.result(timeout=60)
    finally:
        writer.stop()


def test_events_sent_after_the_writer_stopped_get_the_documented_retryable_503(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    """Shutting down: the writer takes no more events. The answer is a 503 as documented for
    the operation (a listed ``error`` code, ``Retry-After``), and nothing is stored."""
    seed_test(http, headers, test_id=48, candidates=1, events_per_candidate=0)
    writer = _writer(http)
    writer.stop()
    try:
        answer = http.post("/v1/test/48/candidates/100/events", json=_single("late"), headers=headers)
    finally:
        writer.start()
    assert answer.status_code == 503, answer.text
    assert answer.headers.get("retry-after", "").isdigit()
    operation = http.get("/openapi.json").json()["paths"]["/v1/test/{testId}/candidates/{userId}/events"]
    documented = operation["post"]["responses"]["503"]["description"]
    assert f"`{answer.json()['error']}`" in documented, documented
    assert _stored(runtime, "late") is None
    assert (
        http.post("/v1/test/48/candidates/100/events", json=_single("late"), headers=headers).status_code
        == 201
    )


@pytest.mark.parametrize("threads", [1, 3])
def test_a_stopping_writer_commits_what_is_queued_then_refuses(runtime: Runtime, threads: int) -> None:
    if threads > 1 and runtime.engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one write lock: its writer has one thread")
    writer = GroupCommitWriter(runtime.sessions, name="test-writer", max_units=4, threads=threads)
    writer.start()
    releases = [threading.Event() for _ in range(threads)]
    blockers = []
    for release in releases:
        started = threading.Event()
        blockers.append(writer.submit(partial(_block, release, started)))
        assert started.wait(60)

    def count_entries(session: Session) -> int:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)

    queued = [writer.submit(count_entries) for _ in range(10)]
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    _wait_for(lambda: not writer.running, "the writer to stop accepting")
    with pytest.raises(WriterStopped):
        writer.submit(count_entries)
    for release in releases:
        release.set()
    stopper.join(60)
    assert not stopper.is_alive()
    assert all(blocker.result(timeout=1) is True for blocker in blockers)
    assert all(isinstance(unit.result(timeout=1), int) for unit in queued)
    assert writer.units == threads + 10
    if threads == 1:  # the blocker alone, then the ten queued units in groups of at most four
        assert writer.groups == 4


def test_a_large_batch_keeps_its_own_transaction_beside_the_writer(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    seed_test(http, headers, test_id=46, candidates=1, events_per_candidate=0)
    writer = _writer(http)
    units_before = writer.units
    path = "/v1/test/46/candidates/100/events"
    batch = [_single(f"big-{n}") for n in range(GROUP_COMMIT_MAX_EVENTS + 1)]
    created = http.post(path, json=batch, headers={**headers, "X-Request-ID": "rid-big"})
    assert created.status_code == 201
    assert created.json()["created"] == len(batch)
    assert http.post(path, json=batch, headers=headers).status_code == 200
    conflicting = [*batch[:-1], _single("big-0", "new_seb_login"), _single("big-extra")]
    refused = http.post(path, json=conflicting, headers=headers)
    assert refused.status_code == 409
    assert _stored(runtime, "big-extra") is None
    assert writer.units == units_before  # none of them went through the writer
    entry = _audit_by_request(runtime)["rid-big"]
    assert entry.details is not None and orjson.loads(entry.details)["created"] == len(batch)


def test_other_writes_take_turns_with_the_writer_under_a_flood_of_single_events(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    # SQLite: the writer thread and the routes that write share one write lock; neither may
    # starve the other into "database is locked".
    seed_test(http, headers, test_id=47, candidates=20, events_per_candidate=0)

    def flood(n: int) -> list[int]:
        return [
            http.post(
                f"/v1/test/47/candidates/{100 + n}/events", json=_single(f"f-{n}-{k}"), headers=headers
            ).status_code
            for k in range(15)
        ]

    def roster(n: int) -> int:
        people = [{"userId": 1000 + n, "candidateId": f"late-{n}"}]
        answer: httpx.Response = http.put("/v1/test/47/candidates", json=people, headers=headers)
        return answer.status_code

    with ThreadPoolExecutor(24) as pool:
        singles = [pool.submit(flood, n) for n in range(20)]
        rosters = [pool.submit(roster, n) for n in range(4)]
        assert [f.result(timeout=120) for f in rosters] == [200] * 4
        assert all(status == 201 for f in singles for status in f.result(timeout=120))
    with runtime.sessions() as session:
        stored = session.scalar(select(func.count()).select_from(Event).where(Event.event_id.like("f-%")))
    assert stored == 20 * 15


def test_single_events_stored_together_keep_their_own_answers_when_a_group_repeats_an_event(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str], runtime: Runtime
) -> None:
    # PostgreSQL stores a group's single events in one INSERT; the same event twice in one
    # group, or a request of several events, runs on its own after it, in the same commit.
    seed_test(http, headers, test_id=48, candidates=2, events_per_candidate=0)
    writer = _writer(http)
    path = "/v1/test/48/candidates/100/events"
    sends = [
        ("rid-first", path, _single("twice")),
        ("rid-again", path, _single("twice")),
        ("rid-other", path, _single("twice", "new_seb_login")),
        ("rid-several", path, [_single("s-1"), _single("s-2")]),
        ("rid-elsewhere", "/v1/test/48/candidates/101/events", _single("twice")),  # same test: taken
        ("rid-solo", "/v1/test/48/candidates/101/events", _single("solo")),
        ("rid-tenant", path, _single("intruder")),  # another tenant: not its test
    ]
    groups_before = writer.groups
    with held(writer) as release, ThreadPoolExecutor(len(sends)) as pool:
        answers: dict[str, Future[httpx.Response]] = {}
        for rid, target, body in sends:  # one at a time: the group keeps this order
            auth = other_headers if rid == "rid-tenant" else headers
            answers[rid] = pool.submit(http.post, target, json=body, headers={**auth, "X-Request-ID": rid})
            _wait_for(lambda: writer.pending() == len(answers), f"{rid} to queue")
        release.set()
        got = {rid: answer.result(timeout=60) for rid, answer in answers.items()}
        assert writer.groups - groups_before == 2

    assert {rid: answer.status_code for rid, answer in got.items()} == {
        "rid-first": 201,
        "rid-again": 200,
        "rid-other": 409,
        "rid-several": 201,
        "rid-elsewhere": 409,
        "rid-solo": 201,
        "rid-tenant": 404,
    }
    assert got["rid-tenant"].json()["error"] == "test_not_found"
    assert got["rid-again"].json() == {"received": 1, "created": 0, "duplicates": 1, "eventIds": ["twice"]}
    twice = _stored(runtime, "twice")
    assert twice is not None and twice.event == "network_lost"
    assert all(_stored(runtime, e) is not None for e in ("s-1", "s-2", "solo"))
    assert _stored(runtime, "intruder") is None
    audit = _audit_by_request(runtime)
    assert {"rid-first", "rid-again", "rid-several", "rid-solo"} <= set(audit)
    assert not {"rid-other", "rid-elsewhere", "rid-tenant"} & set(audit)
    assert audit["rid-several"].details is not None
    assert orjson.loads(audit["rid-several"].details)["created"] == 2


_REQUEST = contextvars.ContextVar[str]("request", default="-")


def test_a_runner_stores_its_units_together_and_a_failing_one_sends_each_unit_alone(
    runtime: Runtime,
) -> None:
    writer = GroupCommitWriter(runtime.sessions, name="test-writer", threads=1)
    writer.start()
    seen: list[list[str]] = []

    def alone(name: str, session: Session) -> str:
        if name == "bad":
            raise ValueError(name)
        return f"alone {name} {_REQUEST.get()}"

    def together(session: Session, units: Sequence[tuple[Any, contextvars.Context]]) -> list[Outcome | None]:
        names = [context.run(_REQUEST.get) for _, context in units]
        seen.append(names)
        if "rid-bad" in names:
            raise RuntimeError("the runner's statement failed")
        # The last one is left to run on its own, after the others.
        return [(f"together {name}", None) for name in names[:-1]] + [None]

    def send(name: str) -> Future[str]:
        _REQUEST.set(f"rid-{name}")
        return writer.submit(partial(alone, name), together=together)

    try:
        release, started = threading.Event(), threading.Event()
        blocker = writer.submit(partial(_block, release, started))
        assert started.wait(60)
        plain = writer.submit(partial(alone, "plain"))
        first = [contextvars.copy_context().run(send, name) for name in ("a", "b", "c")]
        release.set()
        assert blocker.result(timeout=60) is True
        assert plain.result(timeout=60) == "alone plain -"
        assert [f.result(timeout=60) for f in first] == ["together rid-a", "together rid-b", "alone c rid-c"]
        assert seen == [["rid-a", "rid-b", "rid-c"]]

        release, started = threading.Event(), threading.Event()
        blocker = writer.submit(partial(_block, release, started))
        assert started.wait(60)
        second = [contextvars.copy_context().run(send, name) for name in ("d", "bad", "e")]
        release.set()
        assert blocker.result(timeout=60) is True
        # The runner failed: the group ran again with each unit on its own, in its savepoint.
        assert second[0].result(timeout=60) == "alone d rid-d"
        with pytest.raises(ValueError, match="bad"):
            second[1].result(timeout=60)
        assert second[2].result(timeout=60) == "alone e rid-e"
        assert seen[-1] == ["rid-d", "rid-bad", "rid-e"]
    finally:
        writer.stop()


def test_awaited_units_are_answered_per_group_with_their_own_outcomes(runtime: Runtime) -> None:
    """``run`` from an event loop: a group's answers reach the loop in one wake-up, each with
    its own value or exception; a unit whose caller was cancelled before it ran is not run."""
    writer = GroupCommitWriter(runtime.sessions, name="test-writer", threads=1)
    writer.start()
    ran: list[str] = []

    def unit(name: str, session: Session) -> str:
        ran.append(name)
        if name == "bad":
            raise ValueError(name)
        return f"stored {name}"

    async def scenario() -> tuple[list[str | BaseException], int]:
        loop = asyncio.get_running_loop()
        wakeups = 0
        plain_call_soon_threadsafe = loop.call_soon_threadsafe

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal wakeups
            wakeups += 1
            return plain_call_soon_threadsafe(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
        release, started = threading.Event(), threading.Event()
        blocker = writer.submit(partial(_block, release, started))
        assert await asyncio.to_thread(started.wait, 60)
        tasks = [asyncio.ensure_future(writer.run(partial(unit, name))) for name in ("a", "bad", "gone", "b")]
        await asyncio.sleep(0)  # each task has queued its unit
        tasks[2].cancel()
        wakeups = 0  # not the one that answered ``to_thread``
        release.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert blocker.result(timeout=60) is True  # a plain future: no wake-up of the loop
        return outcomes, wakeups

    try:
        outcomes, wakeups = asyncio.run(scenario())
    finally:
        writer.stop()
    assert outcomes[0] == "stored a"
    assert isinstance(outcomes[1], ValueError)
    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert outcomes[3] == "stored b"
    assert "gone" not in ran
    # The group of three (the cancelled unit left out) reached the loop in one wake-up.
    assert wakeups == 1


class _Deadlocking:
    """A unit PostgreSQL aborts to break a deadlock its first ``times`` runs."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.runs = 0

    def __call__(self, _session: Session) -> str:
        self.runs += 1
        if self.runs <= self.times:
            raise OperationalError("INSERT", None, DeadlockDetected("deadlock detected"))
        return "stored"


@pytest.mark.parametrize("deadlocks", [1, 2, 3])
def test_a_unit_aborted_by_a_deadlock_runs_once_more_alone(runtime: Runtime, deadlocks: int) -> None:
    """A group runs without savepoints, then again with them; a unit still aborted by a deadlock
    runs alone after the group's commit, with one more try: a deadlock in any of those runs is
    not the unit's answer, but neither is it retried forever."""
    writer = GroupCommitWriter(runtime.sessions, name="deadlock-writer")
    writer.start()
    try:
        assert writer.submit(_Deadlocking(deadlocks)).result(timeout=60) == "stored"
        always = _Deadlocking(1000)
        with pytest.raises(OperationalError, match="deadlock"):
            writer.submit(always).result(timeout=60)
        # In the group (without savepoints unless a failure just made the writer careful, then
        # with), then alone twice.
        assert always.runs == (3 if deadlocks > 1 else 4)
    finally:
        writer.stop()


def test_commit_retrying_deadlock_runs_the_work_once_more_then_gives_up(runtime: Runtime) -> None:
    def fails_with(error: Exception, times: int) -> Callable[[Session], int]:
        runs: list[int] = []

        def work(_session: Session) -> int:
            runs.append(1)
            if len(runs) <= times:
                raise error
            return len(runs)

        return work

    with runtime.sessions() as session:  # as psycopg raises it on a driver cursor
        assert commit_retrying_deadlock(session, fails_with(DeadlockDetected("deadlock"), 1)) == 2
    with runtime.sessions() as session, pytest.raises(DeadlockDetected):
        commit_retrying_deadlock(session, fails_with(DeadlockDetected("deadlock"), 2))
    with runtime.sessions() as session, pytest.raises(ValueError, match="other"):
        commit_retrying_deadlock(session, fails_with(ValueError("other"), 1))
