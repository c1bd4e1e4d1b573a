from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from examtrail.core.db import Base, UTCDateTime, utcnow


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The file was deleted (retention, or erasure of data it held); the job stays, without a link.
    EXPIRED = "expired"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class ExportJob(Base):
    """An export of one test's events. The database row is the job's truth;
    queue messages only wake a worker, which claims the row with a lease."""

    __tablename__ = "export_jobs"
    __table_args__ = (
        Index("ix_export_jobs_tenant_test", "tenant_id", "test_pk"),
        Index("ix_export_jobs_status_lease", "status", "lease_expires_at"),
        Index("ix_export_jobs_tenant_test_created", "tenant_id", "test_pk", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    test_pk: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"))
    test_external_id: Mapped[int] = mapped_column(BigInteger)
    requested_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    candidates_total: Mapped[int] = mapped_column(Integer, default=0)
    candidates_done: Mapped[int] = mapped_column(Integer, default=0)
    events_written: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    storage_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When a worker was last asked (by message) to run it; the sweeper re-sends stale ones.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Attachment links inside the file expire with the token that ordered the export.
    links_expire_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A retry after a transient error waits until then.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The normalised options (canonical JSON: equal options, equal text; see exports.options).
    options: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    format: Mapped[str] = mapped_column(String(8), default="json", server_default="json")
    compression: Mapped[str] = mapped_column(String(8), default="none", server_default="none")
    # The cursor of the snapshot the file was read from (``nextSince``), once finished.
    next_since: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Attachment links written into the file (they expire at ``links_expire_at``).
    files_written: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The compact JWS over the finished file's claims (examtrail.signing), once finished.
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def progress(self) -> int:
        # An export that finished stays at 100 when retention or an erasure expires its file.
        if self.status == JobStatus.FINISHED or (self.status == JobStatus.EXPIRED and self.finished_at):
            return 100
        if self.candidates_total <= 0:
            return 0
        # Never claim 100 before the file is published.
        return min(99, self.candidates_done * 100 // self.candidates_total)


class PseudonymKey(Base):
    """A tenant's key for pseudonymised exports (``exports.pseudonyms``): random, created on
    first use, sealed with ``core.crypto.SecretBox`` (purpose ``PSEUDONYM_KEYS``). Stored,
    not derived from the service's secret key, so pseudonyms survive that key's rotation."""

    __tablename__ = "pseudonym_keys"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    sealed_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
