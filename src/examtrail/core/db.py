"""Database engine, sessions and the declarative base shared by all features."""

from __future__ import annotations

import asyncio
import logging
import select
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from weakref import WeakKeyDictionary

import psycopg
from psycopg.errors import DeadlockDetected
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Executable,
    MetaData,
    Result,
    String,
    create_engine,
    event,
    func,
    literal,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from examtrail.core.settings import Settings

if TYPE_CHECKING:  # imported where used: workers and the CLI never load the asyncio extension
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")

log = logging.getLogger(__name__)

# SQLite has no 64-bit autoincrement type distinct from INTEGER; keep PostgreSQL BIGINT.
BigIntPK = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes everywhere; stored naive-UTC so SQLite compares them correctly."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling does not BEGIN before SELECT, so a long read
    # would not be a snapshot. Take over: autocommit at the driver, BEGIN ourselves.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        # SQLite's own lower() folds ASCII letters only; PostgreSQL's folds every letter, as
        # Python does to the search text: "ØKONOMI" must match "økonomi" on both databases.
        dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)

    # SQLite has one writer. Its busy handler polls with growing sleeps (unfair: under 100
    # concurrent writers some wait past busy_timeout and fail "database is locked"), so
    # this process's writers queue on a lock first and reach BEGIN IMMEDIATE one at a
    # time; busy_timeout is left for other processes (the CLI, a second server).
    gate = _WriterGate()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Reads begin DEFERRED (WAL readers never wait). Writers ask for IMMEDIATE through
        # begin_write(): the write lock up front, so two writers queue instead of failing
        # when a read transaction tries to become a write one.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode != "IMMEDIATE":
            connection.exec_driver_sql(f"BEGIN {mode}")
            return
        dbapi_connection = connection.connection.dbapi_connection
        gate.acquire(dbapi_connection)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            gate.release(dbapi_connection)
            raise

    # The lock is released once COMMIT/ROLLBACK has run at the driver (the Connection
    # events fire before it); returning a connection to the pool rolls back, so a
    # forgotten session releases too.
    dialect = engine.dialect
    for name in ("do_commit", "do_rollback"):
        setattr(dialect, name, gate.releasing(getattr(dialect, name)))

    @event.listens_for(engine, "close")
    def _on_close(dbapi_connection: Any, _record: Any) -> None:
        gate.release(dbapi_connection)

    @event.listens_for(engine, "invalidate")
    def _on_invalidate(dbapi_connection: Any, _record: Any, _exc: Any) -> None:
        gate.release(dbapi_connection)


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def contains_folded(
    column: ColumnElement[str] | InstrumentedAttribute[str], text: str
) -> ColumnElement[bool]:
    """Whether ``column`` contains ``text`` whatever the case of their letters, its LIKE wildcards
    taken as plain characters. Both sides are lowered by the database's own ``lower()``: Python's
    folds some letters otherwise than PostgreSQL's (a final capital sigma, a dotted capital I), so a
    search lowered in Python missed titles PostgreSQL lowered (SQLite's ``lower()`` is Python's)."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return func.lower(column).contains(func.lower(literal(escaped, String)), escape="/")


class _WriterGate:
    """One in-process SQLite writer at a time; the holder is a DB-API connection."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._holder: Any = None

    def acquire(self, dbapi_connection: Any) -> None:
        if not self.lock.acquire(timeout=WRITE_LOCK_TIMEOUT):
            raise OperationalError(
                "BEGIN IMMEDIATE", None, Exception("database is locked (in-process writer queue)")
            )
        self._holder = dbapi_connection

    def release(self, connection: Any) -> None:
        # SQLAlchemy passes the pool's proxy to do_commit/do_rollback, the raw one elsewhere.
        dbapi_connection = getattr(connection, "dbapi_connection", connection)
        if dbapi_connection is not None and self._holder is dbapi_connection:
            self._holder = None
            self.lock.release()

    def releasing(self, end: Callable[[Any], None]) -> Callable[[Any], None]:
        def wrapped(dbapi_connection: Any) -> None:
            try:
                end(dbapi_connection)
            finally:
                self.release(dbapi_connection)

        return wrapped


WRITE_OPTIONS = {"sqlite_begin": "IMMEDIATE"}
# Longest wait of an in-process SQLite writer for its turn (as busy_timeout: 30 s).
WRITE_LOCK_TIMEOUT = 30.0


def begin_write(session: Session) -> None:
    """Start ``session``'s transaction as a writer (call before its first query)."""
    session.connection(execution_options=WRITE_OPTIONS)


def is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL aborting this transaction to break a deadlock (raised by
    psycopg itself on the driver's cursor, or wrapped by SQLAlchemy)."""
    return isinstance(exc, DeadlockDetected) or isinstance(getattr(exc, "orig", None), DeadlockDetected)


def commit_retrying_deadlock(session: Session, work: Callable[[Session], T]) -> T:
    """``work`` in ``session``'s write transaction, then COMMIT. If PostgreSQL aborts it to break
    a deadlock (nothing of it stored), it runs once more in a new transaction: the transaction it
    deadlocked with has its locks by then. Writers that take rows in a consistent order rarely
    deadlock; a unit of several statements (a group of requests) cannot always."""
    try:
        result = work(session)
        session.commit()
    except Exception as exc:
        if not is_deadlock(exc):
            raise
        log.info("deadlock detected; the transaction runs once more: %s", exc)
        session.rollback()
    else:
        return result
    begin_write(session)
    result = work(session)
    session.commit()
    return result


def update_rows(session: Session, model: Any, where: ColumnElement[bool], **values: Any) -> int:
    """``UPDATE model SET values WHERE where`` (no ORM sync); the number of rows matched."""
    return rowcount(
        session.execute(
            update(model).where(where).values(**values).execution_options(synchronize_session=False)
        )
    )


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE or DELETE (typed: ``Result`` does not declare it)."""
    count: int = getattr(result, "rowcount", 0)
    return count


def build_engine(settings: Settings) -> Engine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=20
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


# The async engine's connections per API process: a fixed pool (no overflow), so no connection
# is opened or closed under load; requests beyond it wait in the event loop for one.
ASYNC_POOL_SIZE = 10


def build_async_engine(settings: Settings) -> AsyncEngine | None:
    """PostgreSQL (psycopg 3): an engine on the async driver for the request paths that answer
    from the event loop (status and token calls); None on SQLite (those run one threadpool hop).

    Autocommit: every statement commits on its own, so a path that reads and then writes one
    row needs no BEGIN/COMMIT round trips. psycopg prepares a statement on a connection after
    it ran a few times (``prepare_threshold``). No pre-ping (a round trip per checkout): a
    checkout looks at the connection's socket instead (:func:`server_closed`), and a read on a
    connection the server dropped meanwhile is run once more by :func:`on_async_connection`.
    """
    url = settings.resolved_database_url
    if not url.startswith("postgresql+psycopg"):
        return None
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        url,
        pool_size=ASYNC_POOL_SIZE,
        max_overflow=0,
        pool_timeout=30,
        pool_recycle=3600,
        isolation_level="AUTOCOMMIT",
    )
    event.listen(engine.sync_engine.pool, "checkout", _refuse_closed_by_server)
    return engine


def server_closed(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server has closed this idle connection (it restarted, or ended the session).

    An idle connection has nothing to read: a readable socket holds the server's last words
    (``FATAL: terminating connection``) or the end of the stream. No round trip: one poll.
    """
    if connection.closed or connection.broken:
        return True
    # poll, not select: select() refuses descriptors past FD_SETSIZE (1024), which a busy
    # process reaches, and every connection would then look closed.
    poller = select.poll()
    try:
        poller.register(connection.pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, psycopg.OperationalError):
        return True


def _refuse_closed_by_server(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    # The pool replaces a connection refused at checkout by a fresh one.
    if server_closed(dbapi_connection.driver_connection):
        raise DisconnectionError("the server closed this pooled connection")


async def on_async_connection(
    engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]], *, rerun: bool = True
) -> T:
    """``work`` on a pooled autocommit connection (one the server closed is replaced at checkout).

    ``rerun``: when the connection turns out dead anyway (the server went away between checkout
    and statement), ``work`` runs once more on a fresh one. Only for reads: a write may have
    committed before the connection died, and running it again would store it twice.
    """
    for attempt in (1, 2):
        try:
            async with engine.connect() as connection:
                return await work(connection)
        except DBAPIError as exc:
            if attempt == 2 or not rerun or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


class GroupInsert:
    """Rows of one INSERT from concurrent requests, committed together (group commit).

    Each caller awaits the commit of its own row; meanwhile the rows of the others arrive, and
    the next flush writes all of them as one multi-row statement, one autocommit transaction:
    one WAL flush for many requests instead of one each (a durable commit costs milliseconds,
    far more than the rest of a status call). One flush at a time per engine and statement.
    A flush that a row's own data breaks (a constraint, a bad value) committed nothing; its rows
    are then written one by one, so only the bad row's caller gets the error. Any other failure
    (the connection, the commit) fails every request in the flush and nothing is written again:
    it may have been committed.

    ``write`` commits a list of rows in one transaction (:func:`group_insert` builds it for a
    statement on the async engine, :func:`pg_group_insert` for SQL on a :class:`PgPool`).
    """

    def __init__(self, write: Callable[[list[dict[str, Any]]], Awaitable[None]]) -> None:
        self.write = write
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def insert(self, row: dict[str, Any]) -> None:
        """Return once ``row`` is committed (raise when its flush failed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.write([row for row, _ in batch])
            except _ROW_ERRORS as exc:
                if len(batch) == 1:
                    _settle(batch, exc)
                else:
                    await self._one_by_one(batch)  # the statement wrote nothing: find the bad row
            except Exception as exc:
                _settle(batch, exc)
            else:
                _settle(batch, None)

    async def _one_by_one(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        for one in batch:
            try:
                await self.write([one[0]])
            except Exception as exc:
                _settle([one], exc)
            else:
                _settle([one], None)


# Errors a row's own data causes: the statement (its own transaction) committed nothing.
_ROW_ERRORS = (IntegrityError, DataError, psycopg.IntegrityError, psycopg.DataError)


def _settle(batch: list[tuple[dict[str, Any], asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


async def _engine_write(engine: AsyncEngine, statement: Executable, rows: list[dict[str, Any]]) -> None:
    async def write(connection: AsyncConnection) -> None:
        await connection.execute(statement, rows[0] if len(rows) == 1 else rows)

    await on_async_connection(engine, write, rerun=False)


_group_inserts: WeakKeyDictionary[AsyncEngine, dict[Executable, GroupInsert]] = WeakKeyDictionary()


def group_insert(engine: AsyncEngine, statement: Executable) -> GroupInsert:
    """The :class:`GroupInsert` of ``statement`` on ``engine`` (one per engine and statement)."""
    per_engine = _group_inserts.setdefault(engine, {})
    grouped = per_engine.get(statement)
    if grouped is None:
        grouped = per_engine[statement] = GroupInsert(partial(_engine_write, engine, statement))
    return grouped


# --- plain psycopg on the event loop (PostgreSQL) ----------------------------------------------

# Connections of a PgPool per API process (besides the async engine's): a fixed bound, opened on
# first need and kept; requests beyond it wait in the event loop for one.
PG_POOL_SIZE = 8


class PgPool:
    """A small pool of psycopg async connections in autocommit mode, for the hottest request path
    (the export status call): its two statements run on the driver directly, without
    SQLAlchemy's async adaptation (a greenlet hop, result processing, a rollback per checkout).

    Autocommit: each statement commits on its own, so a checkout needs no reset. Statements are
    prepared on a connection after a few runs (psycopg's ``prepare_threshold``). No pre-ping: a
    pooled connection the server closed (it restarted) is found by a poll of its socket at
    checkout (:func:`server_closed`) and replaced, as the engine's are.
    """

    def __init__(self, conninfo: str, size: int = PG_POOL_SIZE) -> None:
        self.conninfo = conninfo
        self.size = size
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    async def run(
        self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]], *, rerun: bool = True
    ) -> T:
        """``work`` on a pooled connection (its statements autocommit).

        ``rerun``: when a pooled connection dies under ``work`` (the server went away after the
        checkout's look), ``work`` runs once more on a fresh one. Only for reads: a write may
        have committed before the connection died, and running it again would store it twice.
        """
        async with self._slots:
            connection, pooled = await self._checkout()
            try:
                result = await work(connection)
            except psycopg.OperationalError:
                await self._release(connection)
                if not rerun or not pooled or not (connection.closed or connection.broken):
                    raise
                await self._discard_idle()  # its idle neighbours died with it
                connection = await self._connect()
                try:
                    result = await work(connection)
                except BaseException:
                    await self._release(connection)
                    raise
            except BaseException:
                await self._release(connection)
                raise
            await self._release(connection)
            return result

    async def _checkout(self) -> tuple[psycopg.AsyncConnection[Any], bool]:
        """An idle connection the server has not closed, else a new one (and whether pooled)."""
        while self._idle:
            connection = self._idle.pop()
            if not server_closed(connection):
                return connection, True
            await connection.close()
        return await self._connect(), False

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)

    async def _discard_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

    async def _release(self, connection: psycopg.AsyncConnection[Any]) -> None:
        # Back to the pool only when idle (an interrupted statement leaves it busy: closed).
        if (
            not self._closed
            and not connection.closed
            and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        ):
            self._idle.append(connection)
        else:
            await connection.close()

    async def close(self) -> None:
        self._closed = True
        await self._discard_idle()


def build_pg_pool(settings: Settings) -> PgPool | None:
    """PostgreSQL: the :class:`PgPool` of an API process; None on SQLite."""
    url = settings.resolved_database_url
    if not url.startswith("postgresql+psycopg"):
        return None
    return PgPool(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))


async def _pool_write(pool: PgPool, sql: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    async def write(connection: psycopg.AsyncConnection[Any]) -> None:
        # One statement whatever the group's size: each column's values as one array.
        await connection.execute(sql, [[row[name] for row in rows] for name in columns])

    await pool.run(write, rerun=False)


_pool_inserts: WeakKeyDictionary[PgPool, dict[str, GroupInsert]] = WeakKeyDictionary()


def pg_group_insert(pool: PgPool, sql: str, columns: tuple[str, ...]) -> GroupInsert:
    """The :class:`GroupInsert` of ``sql`` on ``pool``: ``sql`` takes one array parameter per
    name in ``columns`` (``INSERT … SELECT * FROM unnest(%s::type[], …)``), a group in one
    statement and one commit."""
    per_pool = _pool_inserts.setdefault(pool, {})
    grouped = per_pool.get(sql)
    if grouped is None:
        grouped = per_pool[sql] = GroupInsert(partial(_pool_write, pool, sql, columns))
    return grouped


def build_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work for tasks: commit on success, roll back on any error."""
    session = factory()
    try:
        begin_write(session)
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# --- consistent reads -------------------------------------------------------------------

_PG_SNAPSHOT: dict[str, Any] = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection on one consistent snapshot of the database."""
    # SQLite: WAL readers see the database as of their first read, and never block writers.
    options = _PG_SNAPSHOT if engine.dialect.name == "postgresql" else {"sqlite_begin": "DEFERRED"}
    with engine.connect().execution_options(**options) as connection, connection.begin():
        yield connection


def export_snapshot(connection: Connection) -> str:
    """PostgreSQL: the id of ``connection``'s snapshot, for :func:`snapshot_reader`."""
    return str(connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())


@contextmanager
def snapshot_reader(engine: Engine, snapshot_id: str) -> Iterator[Connection]:
    """PostgreSQL: another read-only connection on the exported snapshot ``snapshot_id``
    (valid while the exporting transaction is open)."""
    if not snapshot_id or any(not (ch.isalnum() or ch == "-") for ch in snapshot_id):
        raise ValueError(f"not a snapshot id: {snapshot_id!r}")
    with engine.connect().execution_options(**_PG_SNAPSHOT) as connection, connection.begin():
        connection.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
        yield connection
