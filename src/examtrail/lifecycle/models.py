from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from examtrail.core.db import Base, UTCDateTime, utcnow


class ErasureStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class ErasureKind(enum.StrEnum):
    CANDIDATE = "candidate"
    TEST = "test"


class ErasureJob(Base):
    """The erasure of one candidate or one whole test.

    Accepting it moves what is to be erased out of sight in one transaction: the test is
    renamed to a negative ``testId`` (which no API call can address), or the candidate and
    its events are moved into a new hidden *holding* test. The job then deletes everything
    under ``holding_test_pk`` in batches (objects first, rows after), which is idempotent,
    so a worker killed half-way simply starts again. Neither test pk is a foreign key: the
    job outlives both rows.
    """

    __tablename__ = "erasure_jobs"
    __table_args__ = (
        Index("ix_erasure_jobs_status_lease", "status", "lease_expires_at"),
        Index("ix_erasure_jobs_tenant_test", "tenant_id", "test_external_id", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    test_external_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The test the candidate was erased from (its export files are expired); for a test: itself.
    test_pk: Mapped[int] = mapped_column(BigInteger)
    # Everything under this test is deleted, then the test row itself.
    holding_test_pk: Mapped[int] = mapped_column(BigInteger)
    requested_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=ErasureStatus.QUEUED)
    events_total: Mapped[int] = mapped_column(BigInteger, default=0)
    events_deleted: Mapped[int] = mapped_column(BigInteger, default=0)
    files_deleted: Mapped[int] = mapped_column(BigInteger, default=0)
    exports_expired: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LegalHold(Base):
    """A test under legal hold: neither erasure nor retention deletes anything of it."""

    __tablename__ = "legal_holds"

    test_pk: Mapped[int] = mapped_column(
        ForeignKey("tests.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
