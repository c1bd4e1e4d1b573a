"""The SQL of the audit log: inserts and keyset reads, nothing else (the log is append-only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from psycopg import sql as pgsql
from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from examtrail.audit.models import AuditEntry
from examtrail.core.db import PgPool, group_insert, pg_group_insert

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def insert_entries(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    # A Core insert on the table, on the session's connection (its transaction): no ORM bulk
    # machinery on the hot paths (one per request, never per event).
    if not rows:
        return
    connection = session.connection()
    if len(rows) == 1:
        connection.execute(_INSERT, rows[0])
    else:
        connection.execute(_INSERT, list(rows))


async def insert_entry_grouped(database: AsyncEngine | PgPool, row: dict[str, Any]) -> None:
    """The same insert on the event loop (the async engine, or plain psycopg), committed together
    with the entries of concurrent requests (``core.db.GroupInsert``); returns once ``row`` is
    committed."""
    if isinstance(database, PgPool):
        # The column is naive UTC (``UTCDateTime``), as the engine's bind processing stores it.
        pg_row = {**row, "at": row["at"].astimezone(UTC).replace(tzinfo=None)}
        await pg_group_insert(database, _PG_INSERT, _PG_NAMES).insert(pg_row)
    else:
        await group_insert(database, _INSERT).insert(row)


# ``_INSERT`` as psycopg SQL: a group of rows as one array per column, one statement whatever
# the group's size (prepared once per connection).
_PG_COLUMNS = {
    "at": "timestamp",
    "tenant_id": "int",
    "client_id": "varchar",
    "action": "varchar",
    "object_type": "varchar",
    "object_id": "varchar",
    "test_id": "bigint",
    "request_id": "varchar",
    "source_ip": "varchar",
    "details": "text",
}
_PG_NAMES = tuple(_PG_COLUMNS)
_PG_INSERT = (
    pgsql.SQL("INSERT INTO audit_log ({}) SELECT * FROM unnest({})")
    .format(
        pgsql.SQL(", ").join(map(pgsql.Identifier, _PG_COLUMNS)),
        pgsql.SQL(", ").join(pgsql.SQL(f"%s::{kind}[]") for kind in _PG_COLUMNS.values()),
    )
    .as_string()
)


_INSERT = insert(cast(Table, AuditEntry.__table__))


def list_entries(
    session: Session,
    tenant_id: int,
    *,
    actions: Sequence[str] = (),
    test_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int,
) -> list[AuditEntry]:
    """The tenant's entries, newest first (by id); ``before_id`` is the last id of the previous page."""
    stmt = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
    if actions:
        stmt = stmt.where(AuditEntry.action.in_(list(actions)))
    if test_id is not None:
        stmt = stmt.where(AuditEntry.test_id == test_id)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    return list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit)))
