"""Group commit: many small write requests, one transaction and one commit.

A :class:`GroupCommitWriter` owns its writer thread(s) (one on SQLite, a few on PostgreSQL:
:func:`writer_threads`). Requests hand it a unit of work (a function of a session) from the
event loop and await its result; a thread takes whatever units are waiting (up to
``max_units``, no delay beyond what is already queued), runs them in ONE write transaction,
commits once, and only then resolves each unit's future: nothing is answered before the
commit that stored it. On SQLite the write lock is taken once per group, not per request.

A unit that raises rolls back only its own part and gets its own exception: the group runs
first without savepoints (no extra round trips while everything succeeds); when a unit
fails, the whole group is rolled back and run again with a SAVEPOINT per unit (and the next
groups too, until one runs without a failure).

Each unit runs in a copy of the submitting request's context variables (request id,
client address), so what it logs or audits is its own request's.

Units awaited from an event loop (:meth:`GroupCommitWriter.run`) are answered with ONE
``call_soon_threadsafe`` per group and loop, which sets every result of the group: a
thread-safe wake-up of the loop per request (what ``asyncio.wrap_future`` costs) is a large
share of a single-event request's event-loop time.

Units of one kind may also come with a *runner* (``together``) that stores all of a group's
units of that kind at once (one statement per table instead of a few per unit). A runner
answers each unit it took (a unit it refuses, e.g. a 404 or 409, wrote nothing) and may
leave some to run on their own after it. If the runner raises, the group runs again with a
SAVEPOINT per unit, each unit on its own: one bad request never fails the others.

If the group's transaction itself fails before its commit (a statement, the connection), each
unit is run again alone in its own transaction, so one unit never takes the others down with it.
A unit PostgreSQL aborted to break a deadlock (the group's units take rows in their own orders)
runs once more alone after the group's commit, and once more again if that deadlocks too.
If the COMMIT fails, the group may be stored all the same (its answer was lost with the
connection): every unit gets that error and none runs again, which could store it (and its
audit entry) twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from examtrail.core.db import begin_write, commit_retrying_deadlock, is_deadlock

log = logging.getLogger(__name__)

T = TypeVar("T")

# A unit's outcome: (its value, None), or (None, the exception it answers with).
Outcome = tuple[Any, BaseException | None]
# Runs a group's units of one kind together (each with its request's context variables) in
# the group's transaction: the outcome of each, or None for a unit left to run on its own.
# A unit with an error outcome must have written nothing.
GroupRunner = Callable[[Session, Sequence[tuple[Any, contextvars.Context]]], list[Outcome | None]]

# Units per group: bounds the time the write lock is held and a group's retry cost.
DEFAULT_MAX_UNITS = 64


class WriterStopped(RuntimeError):
    """The writer is stopped (the process is shutting down): no new work is taken."""


@dataclass(slots=True)
class _Item(Generic[T]):
    unit: Callable[[Session], T]
    context: contextvars.Context
    together: GroupRunner | None = None
    future: concurrent.futures.Future[T] = field(default_factory=concurrent.futures.Future)
    # Set by :meth:`GroupCommitWriter.run`: the awaiting loop's future, resolved in that loop
    # together with the group's other answers (``future`` is then unused).
    waiter: asyncio.Future[T] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def claim(self) -> bool:
        """Whether the unit still has a caller (then it can no longer be cancelled)."""
        if self.waiter is None:
            return self.future.set_running_or_notify_cancel()
        # Read from the writer thread: a cancel that lands after this only drops the answer,
        # exactly as a cancel of a running concurrent future does.
        return not self.waiter.cancelled()


_STOP = object()


def writer_threads(engine: Engine) -> int:
    """Writer threads for ``engine``: SQLite has one write lock, so one; on PostgreSQL each
    unit is a few round trips to the server, so several groups are in flight at once."""
    return 1 if engine.dialect.name == "sqlite" else POSTGRES_WRITER_THREADS


POSTGRES_WRITER_THREADS = 4


class GroupCommitWriter:
    """Writer thread(s) for ``sessions``' database: see the module's description."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        threads: int = 1,
        max_units: int = DEFAULT_MAX_UNITS,
        name: str = "group-commit",
    ) -> None:
        self.sessions = sessions
        self.max_units = max_units
        self.name = name
        self._queue: queue.SimpleQueue[_Item[Any] | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._thread_count = threads
        self._accepting = False
        self._lock = threading.Lock()
        # After a unit failed, groups run with a SAVEPOINT per unit until one runs clean.
        self._careful = False
        # Counters (read by tests and the benchmark): groups committed and units answered.
        self.groups = 0
        self.units = 0

    def start(self) -> None:
        with self._lock:
            if self._threads:
                return
            self._accepting = True
            self._threads = [
                threading.Thread(target=self._run, name=self.name, daemon=True)
                for _ in range(self._thread_count)
            ]
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Take no new work, finish (and commit) what is queued, then end the threads."""
        with self._lock:
            threads, self._threads = self._threads, []
            self._accepting = False
            # After every queued unit: each thread ends at the first stop it takes.
            for _ in threads:
                self._queue.put(_STOP)
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("group-commit writer %s did not drain within %ss", self.name, timeout)

    @property
    def threads(self) -> int:
        return self._thread_count

    @property
    def running(self) -> bool:
        return self._accepting

    def pending(self) -> int:
        """Units waiting for a thread (approximate)."""
        return self._queue.qsize()

    def submit(
        self, unit: Callable[[Session], T], *, together: GroupRunner | None = None
    ) -> concurrent.futures.Future[T]:
        """Queue ``unit`` (with the caller's context variables); its future resolves after the
        commit that stored it, or with the exception it raised (its part rolled back).
        ``together``: how the group's units of this kind run at once (see the module)."""
        item: _Item[T] = _Item(unit, contextvars.copy_context(), together)
        self._put(item)
        return item.future

    async def run(self, unit: Callable[[Session], T], *, together: GroupRunner | None = None) -> T:
        """:meth:`submit` from the event loop, awaiting the answer (resolved per group)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._put(_Item(unit, contextvars.copy_context(), together, waiter=waiter, loop=loop))
        return await waiter

    def _put(self, item: _Item[Any]) -> None:
        with self._lock:
            if not self._accepting:
                raise WriterStopped(f"{self.name} is not running")
            self._queue.put(item)

    # --- the writer threads -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Item)
            group: list[_Item[Any]] = [first]
            stop = False
            # Whatever else is already waiting: no delay to wait for more.
            while len(group) < self.max_units:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                assert isinstance(more, _Item)
                group.append(more)
            try:
                self._commit_group(group)
            except BaseException as exc:  # never leave a caller waiting on a dead thread
                log.exception("group-commit writer %s failed a group", self.name)
                error = exc if isinstance(exc, Exception) else RuntimeError(exc)
                _answer(
                    [item for item in group if item.waiter is not None or not item.future.done()],
                    [(None, error)] * len(group),
                )
                if not isinstance(exc, Exception):
                    raise
            if stop:
                return

    def _commit_group(self, group: list[_Item[Any]]) -> None:
        # A unit whose caller went away (cancelled before it ran) is not run.
        live = [item for item in group if item.claim()]
        if not live:
            return
        try:
            outcomes = self._run_group(live)
            # A unit PostgreSQL aborted to break a deadlock (its savepoint rolled back) runs
            # once more, alone, now that the group's commit has let go of its locks.
            outcomes = [
                self._run_alone(item) if _deadlocked(outcome) else outcome
                for item, outcome in zip(live, outcomes, strict=True)
            ]
        except _CommitFailed as failed:
            log.warning("the commit of a group of %d writes failed; none runs again", len(live))
            outcomes = [(None, failed.error)] * len(live)
        except Exception:
            if len(live) > 1:
                log.warning("a group of %d writes failed together; each runs alone", len(live), exc_info=True)
            outcomes = [self._run_alone(item) for item in live]
        with self._lock:
            self.groups += 1
            self.units += len(live)
        _answer(live, outcomes)

    def _run_group(self, group: list[_Item[Any]]) -> list[Outcome]:
        # Optimistic first: no SAVEPOINT round trips while every unit succeeds. A unit that
        # fails rolls the whole group back, and the group runs again with savepoints.
        if not self._careful:
            try:
                return self._run_in_one_transaction(group, savepoints=False)
            except _UnitFailed:
                self._careful = True
        outcomes = self._run_in_one_transaction(group, savepoints=True)
        if all(error is None for _, error in outcomes):
            self._careful = False
        return outcomes

    def _run_in_one_transaction(self, group: list[_Item[Any]], *, savepoints: bool) -> list[Outcome]:
        session = self.sessions()
        try:
            begin_write(session)
            if savepoints:
                outcomes = [_run_in_savepoint(session, item) for item in group]
            else:
                outcomes = _run_together(session, group)
            # Rows a unit left pending fail here, before the COMMIT: a failure that stored nothing.
            session.flush()
            try:
                session.commit()
            except Exception as exc:
                raise _CommitFailed(exc) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        return outcomes

    def _run_alone(self, item: _Item[Any]) -> Outcome:
        session = self.sessions()
        try:
            begin_write(session)
            value = commit_retrying_deadlock(session, lambda s: item.context.run(item.unit, s))
        except Exception as exc:
            session.rollback()
            return None, exc
        finally:
            session.close()
        return value, None


def _deadlocked(outcome: Outcome) -> bool:
    return outcome[1] is not None and is_deadlock(outcome[1])


def _answer(items: Sequence[_Item[Any]], outcomes: Sequence[Outcome]) -> None:
    """Resolve each item's future with its outcome: concurrent futures here, loop futures
    with one wake-up per loop for the whole group."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for item, outcome in zip(items, outcomes, strict=False):
        if item.waiter is None:
            value, error = outcome
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(value)
        else:
            assert item.loop is not None
            by_loop.setdefault(item.loop, []).append((item.waiter, outcome))
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, answers)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.warning("group-commit answers dropped: their event loop is closed")


def _resolve(answers: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    """In the awaiting loop: set every answer of a group (skipping cancelled waiters)."""
    for waiter, (value, error) in answers:
        if waiter.done():
            continue
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(value)


def _run_in_savepoint(session: Session, item: _Item[Any]) -> Outcome:
    """The unit on its own (never through a runner), rolled back alone if it fails."""
    savepoint = session.begin_nested()
    try:
        value = item.context.run(item.unit, session)
    except Exception as exc:
        savepoint.rollback()
        return None, exc
    savepoint.commit()
    return value, None


def _run_together(session: Session, group: list[_Item[Any]]) -> list[Outcome]:
    """The group without savepoints: each runner's units at once, then the other units one by
    one; any exception (a unit's, a runner's) is :class:`_UnitFailed`."""
    outcomes: list[Outcome | None] = [None] * len(group)
    kinds: dict[GroupRunner, list[int]] = {}
    for index, item in enumerate(group):
        if item.together is not None:
            kinds.setdefault(item.together, []).append(index)
    for runner, indexes in kinds.items():
        try:
            answers = runner(session, [(group[i].unit, group[i].context) for i in indexes])
        except Exception as exc:
            raise _UnitFailed from exc
        for index, answer in zip(indexes, answers, strict=True):
            outcomes[index] = answer
    done: list[Outcome] = []
    for item, outcome in zip(group, outcomes, strict=True):
        if outcome is None:
            try:
                outcome = (item.context.run(item.unit, session), None)
            except Exception as exc:
                raise _UnitFailed from exc
        done.append(outcome)
    return done


class _UnitFailed(Exception):
    """A unit raised in a group run without savepoints: the group runs again with them."""


class _CommitFailed(Exception):
    """The group's COMMIT raised (``error``): whether it stored the group is unknown."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
