from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from examtrail.core.db import Base, BigIntPK, UTCDateTime, utcnow


class AuditEntry(Base):
    """One audited action. Rows are only ever inserted (no code path updates or deletes
    them; on PostgreSQL a trigger refuses it). Nothing secret and no event content."""

    __tablename__ = "audit_log"
    __table_args__ = (
        # The API's keyset pages (newest first) per tenant, and per tenant and test.
        Index("ix_audit_log_tenant_id_id", "tenant_id", "id"),
        Index("ix_audit_log_tenant_test", "tenant_id", "test_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    # The API client that acted; "cli" for the command line; None for the service itself.
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(128))
    test_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the external testId
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON object
