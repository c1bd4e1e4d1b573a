"""Recording audited actions, and reading the log back.

``record`` adds one row to the caller's session: it commits (or rolls back) with the action
it describes, so an action that fails leaves no entry and no entry lacks its action. The
request id and source address come from ``core.context`` (None outside an HTTP request).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from contextvars import Context
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.orm import Session

from examtrail.audit import repository
from examtrail.audit.actions import Action
from examtrail.audit.models import AuditEntry
from examtrail.audit.schemas import AuditEntryOut, AuditPage
from examtrail.core.context import current_client_ip, current_request_id
from examtrail.core.db import WRITE_OPTIONS, PgPool, utcnow
from examtrail.core.errors import Unprocessable
from examtrail.core.schemas import is_ascii_digits
from examtrail.core.security import Principal
from examtrail.core.timeutil import format_dt

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Entry:
    """One action to record (see :func:`record`)."""

    tenant_id: int
    client_id: str | None
    action: Action | str
    object_type: str
    object_id: str | int
    test_id: int | None = None
    details: dict[str, Any] | None = field(default=None)


def record(
    session: Session,
    *,
    tenant_id: int,
    client_id: str | None,
    action: Action | str,
    object_type: str,
    object_id: str | int,
    test_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add one entry to ``session``'s transaction (the action's own)."""
    record_many(session, [Entry(tenant_id, client_id, action, object_type, object_id, test_id, details)])


def record_by(
    session: Session,
    principal: Principal,
    action: Action,
    object_type: str,
    object_id: str | int,
    test_id: int | None,
    details: dict[str, Any] | None = None,
) -> None:
    """:func:`record` of an action taken by ``principal`` (its tenant and client)."""
    record_many(
        session,
        [Entry(principal.tenant_id, principal.client_id, action, object_type, object_id, test_id, details)],
    )


def record_many(session: Session, entries: Sequence[Entry]) -> None:
    """Several entries in one statement (e.g. every link of a page of jobs)."""
    repository.insert_entries(session, entry_rows(entries))


def record_each(session: Session, entries: Sequence[tuple[Entry, Context]]) -> None:
    """Several requests' entries in one statement, each stamped in its request's context
    (its own request id and address): a group commit's units, recorded together."""
    repository.insert_entries(session, [context.run(entry_rows, [entry])[0] for entry, context in entries])


async def record_committed(database: AsyncEngine | PgPool, entry: Entry) -> None:
    """One entry, committed when this returns, in a group commit with concurrent requests'
    entries (the request paths that answer from the event loop: a status call's link, a token)."""
    await repository.insert_entry_grouped(database, entry_rows([entry])[0])


def entry_rows(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """The audit rows of ``entries``, stamped now with the current request's id and address."""
    now = utcnow()
    request_id, source_ip = current_request_id(), current_client_ip()
    return [
        {
            "at": now,
            "tenant_id": entry.tenant_id,
            "client_id": entry.client_id,
            "action": str(entry.action),
            "object_type": entry.object_type,
            "object_id": str(entry.object_id)[:128],
            "test_id": entry.test_id,
            "request_id": request_id,
            "source_ip": source_ip,
            "details": orjson.dumps(entry.details).decode() if entry.details else None,
        }
        for entry in entries
    ]


def become_writer(session: Session) -> None:
    """Make a session that has only read so far able to write its audit entry.

    On SQLite a read transaction that starts writing fails at once if another writer
    committed since it began; so it ends (it wrote nothing) and a writer's transaction
    (``BEGIN IMMEDIATE``, queued on the lock) starts. PostgreSQL writes in the same one.
    """
    if session.get_bind().dialect.name != "sqlite":
        return
    if session.in_transaction():
        if session.connection().get_execution_options().get("sqlite_begin") == "IMMEDIATE":
            return  # already a writer: stay in the action's transaction
        session.commit()
    session.connection(execution_options=WRITE_OPTIONS)


# --- reading ---------------------------------------------------------------------------

_CURSOR_PREFIX = "a1:"
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{entry_id}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    digits = raw[len(_CURSOR_PREFIX) :]
    if not raw.startswith(_CURSOR_PREFIX) or not is_ascii_digits(digits):
        return None
    value = int(digits)
    return value if 0 < value < 2**63 else None


def _invalid(field_name: str, message: str) -> Unprocessable:
    return Unprocessable(
        "The request is not valid.",
        details=[{"field": field_name, "message": message, "type": "value_error"}],
    )


def parse_time(value: str | None, field_name: str) -> datetime | None:
    """An RFC 3339 date-time with a zone (as the export options take), in UTC."""
    if value is None:
        return None
    if not _RFC3339.match(value):
        raise _invalid(field_name, "must be an RFC 3339 date-time with a zone, e.g. 2026-06-01T08:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise _invalid(field_name, "not a valid date-time") from None
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _invalid(field_name, "out of range") from None


def entry_out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        entryId=entry.id,
        time=format_dt(entry.at) or "",
        clientId=entry.client_id,
        action=entry.action,
        objectType=entry.object_type,
        objectId=entry.object_id,
        testId=entry.test_id,
        requestId=entry.request_id,
        sourceIp=entry.source_ip,
        details=orjson.loads(entry.details) if entry.details else {},
    )


def list_entries(
    session: Session,
    tenant_id: int,
    *,
    actions: Sequence[str] = (),
    test_id: int | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> AuditPage:
    """One page of the tenant's log, newest first (``from`` inclusive, ``to`` exclusive)."""
    start, end = parse_time(since, "from"), parse_time(until, "to")
    if start is not None and end is not None and start >= end:
        raise _invalid("from", "'from' must be before 'to'")
    before_id = None
    if cursor is not None:
        before_id = decode_cursor(cursor)
        if before_id is None:
            raise _invalid("cursor", "not a cursor from nextCursor")
    rows = repository.list_entries(
        session,
        tenant_id,
        actions=actions,
        test_id=test_id,
        since=start,
        until=end,
        before_id=before_id,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        entries=[entry_out(row) for row in rows],
        nextCursor=encode_cursor(rows[-1].id) if more and rows else None,
    )
