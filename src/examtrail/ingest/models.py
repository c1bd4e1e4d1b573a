from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from examtrail.core.db import Base, BigIntPK, UTCDateTime, utcnow


def _byte_ordered(length: int) -> TypeEngine[str]:
    """A text key that sorts by code point on PostgreSQL as SQLite's text does, whatever
    the database's collation (migration 0009)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def first_change_seq() -> int:
    """Where a new test's counter starts: the clock in microseconds. A test erased and
    created again under its ``testId`` must not reuse stamps an old ``nextSince`` of that
    ``testId`` covers; the old counter grew by one per write (each takes well over a
    microsecond), slower than the clock, so it stayed below this."""
    return time.time_ns() // 1000


class Test(Base):
    """A test (exam) of a tenant, addressed by the tenant's own int64 ``testId``."""

    __tablename__ = "tests"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id", name="uq_tests_tenant_external"),)
    __test__ = False  # not a pytest class

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    external_id: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # SQLite only: the last change stamp handed to a write of this test's candidates and
    # events (``repository.change_stamp``). A counter of its own, so that an erasure moving
    # rows out cannot lower it (a maximum over the rows could, and stamps would repeat).
    # Unused on PostgreSQL, whose stamps are transaction ids.
    change_seq: Mapped[int] = mapped_column(BigInteger, default=first_change_seq, server_default="0")


class Candidate(Base):
    __tablename__ = "candidates"
    __table_args__ = (
        UniqueConstraint("test_pk", "user_id", name="uq_candidates_test_user"),
        Index("ix_candidates_test_ingest_xid", "test_pk", "ingest_xid"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    test_pk: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigInteger)
    candidate_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The write that created or last renamed it (see ``Event.ingest_xid``).
    ingest_xid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Event(Base):
    """One event on a candidate.

    ``doc`` is the event's canonical JSON object as it appears in the export file
    (without ``attachedFiles``): exports copy it through instead of re-serialising
    every field, and idempotent re-sends compare it byte for byte.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("test_pk", "event_id", name="uq_events_test_event"),
        Index("ix_events_export_order", "candidate_pk", "occurred_at_ms", "event_id"),
        Index("ix_events_test_ingest_xid", "test_pk", "ingest_xid"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    test_pk: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"))
    candidate_pk: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    # Byte (code point) order on both databases: see migration 0009.
    event_id: Mapped[str] = mapped_column(_byte_ordered(128))
    event: Mapped[str] = mapped_column(String(200))
    occurred_at_ms: Mapped[int] = mapped_column(BigInteger)
    creator_user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    flag_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    doc: Mapped[str] = mapped_column(Text)
    file_count: Mapped[int] = mapped_column(default=0)
    # The server's clock when the event was ingested (UTC ms; ``receivedAt`` in JSON Lines,
    # CSV and the review pages, never in the seed's JSON file). One read per batch.
    received_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Which write produced the event or last attached a file to it, for incremental
    # exports: on PostgreSQL the transaction id (server default ``pg_current_xact_id()``,
    # set by migration 0003), on SQLite the test's counter (``Test.change_seq``).
    ingest_xid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Attachment(Base):
    """An evidence file attached to an event; its bytes live in the object store.

    Immutable: a row is never updated, and ``storage_key`` is a fresh key per upload that
    is never reused, so an export's link always serves the bytes it was written for.
    Only erasure deletes the row and its object.
    """

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("event_pk", "file_name", name="uq_attachments_event_file"),)

    # Exposed as the export's ``contentItemId``.
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    file_name: Mapped[str] = mapped_column(_byte_ordered(255))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
