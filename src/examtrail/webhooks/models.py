"""Webhook subscriptions, the delivery outbox and the log of every attempt.

A delivery row is written in the same transaction that finishes (or fails) an export
job, so a notification exists exactly when the job's final state does. Workers claim
a delivery with a lease, send it, and record the attempt; the row says what happens next.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

# The tables our foreign keys reference must be in the metadata wherever these models are
# used (a standalone worker imports no routers): import their models too.
from examtrail.auth import models as _auth_models  # noqa: F401
from examtrail.core.db import Base, BigIntPK, UTCDateTime, utcnow
from examtrail.exports import models as _export_models  # noqa: F401


class WebhookEvent(enum.StrEnum):
    EXPORT_FINISHED = "event_by_candidates_export_finished"
    EXPORT_FAILED = "event_by_candidates_export_failed"


class SubscriptionStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (``next_attempt_at``)
    SENDING = "sending"  # claimed by a worker under a lease
    SUCCEEDED = "succeeded"  # the endpoint answered 2xx
    FAILED = "failed"  # the retry schedule is exhausted, or the endpoint answered 410
    CANCELLED = "cancelled"  # its subscription was disabled before it got through


FINAL_DELIVERY_STATUSES = (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED)


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_tenant_event", "tenant_id", "event", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(100))
    endpoint: Mapped[str] = mapped_column(String(2048))
    # AES-GCM ciphertext of the signing secret (key derived from the service's secret key).
    secret_encrypted: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.ACTIVE)
    disabled_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Start of the current unbroken run of failed attempts; cleared by any success.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One notification to one subscription (the outbox row). Its ``webhook_id`` is the
    ``webhook-id`` header of every attempt, so receivers can de-duplicate."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription_created", "subscription_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(100))
    job_id: Mapped[str] = mapped_column(ForeignKey("export_jobs.id", ondelete="CASCADE"), index=True)
    test_external_id: Mapped[int] = mapped_column(BigInteger)
    # When the event happened (the job's end): the payload's ``timestamp``, same on every attempt.
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts made before the current retry cycle (a manual redelivery starts a new one).
    cycle_offset: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the wake-up message for the next attempt is due; the sweeper re-sends stale ones.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: when, how it ended, how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16))  # "scheduled" | "redelivery"
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    succeeded: Mapped[bool] = mapped_column(default=False)
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
