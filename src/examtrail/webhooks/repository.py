"""SQL for subscriptions, the delivery outbox (claims under a lease) and the attempt log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from examtrail.core import leases
from examtrail.core.db import rowcount, update_rows
from examtrail.webhooks.models import (
    FINAL_DELIVERY_STATUSES,
    DeliveryStatus,
    SubscriptionStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)

# --- subscriptions -----------------------------------------------------------------


def add_subscription(session: Session, subscription: WebhookSubscription) -> None:
    session.add(subscription)
    session.flush()


def get_subscription(session: Session, tenant_id: int, subscription_id: str) -> WebhookSubscription | None:
    return session.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.id == subscription_id, WebhookSubscription.tenant_id == tenant_id
        )
    ).one_or_none()


def sealed_secrets(session: Session) -> list[tuple[str, str]]:
    """(id, sealed secret) of every subscription, any tenant and status."""
    rows = session.execute(
        select(WebhookSubscription.id, WebhookSubscription.secret_encrypted).order_by(WebhookSubscription.id)
    )
    return [(row[0], row[1]) for row in rows]


def set_sealed_secret(session: Session, subscription_id: str, sealed: str) -> None:
    update_rows(
        session, WebhookSubscription, WebhookSubscription.id == subscription_id, secret_encrypted=sealed
    )


def load_subscription(session: Session, subscription_id: str) -> WebhookSubscription | None:
    return session.get(WebhookSubscription, subscription_id, populate_existing=True)


def list_subscriptions(session: Session, tenant_id: int) -> list[WebhookSubscription]:
    return list(
        session.scalars(
            select(WebhookSubscription)
            .where(WebhookSubscription.tenant_id == tenant_id)
            .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
        )
    )


def find_active(session: Session, tenant_id: int, event: str, endpoint: str) -> WebhookSubscription | None:
    return session.scalars(
        select(WebhookSubscription)
        .where(
            WebhookSubscription.tenant_id == tenant_id,
            WebhookSubscription.event == event,
            WebhookSubscription.endpoint == endpoint,
            WebhookSubscription.status == SubscriptionStatus.ACTIVE,
        )
        .limit(1)
    ).one_or_none()


def active_subscriptions(session: Session, tenant_id: int, event: str) -> list[WebhookSubscription]:
    return list(
        session.scalars(
            select(WebhookSubscription)
            .where(
                WebhookSubscription.tenant_id == tenant_id,
                WebhookSubscription.event == event,
                WebhookSubscription.status == SubscriptionStatus.ACTIVE,
            )
            .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
        )
    )


def delete_subscription(session: Session, tenant_id: int, subscription_id: str) -> bool:
    """Deletes the subscription; its deliveries and their attempts go with it (ON DELETE CASCADE)."""
    result = session.execute(
        delete(WebhookSubscription)
        .where(WebhookSubscription.id == subscription_id, WebhookSubscription.tenant_id == tenant_id)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def disable_subscription(session: Session, subscription_id: str, now: datetime, reason: str) -> bool:
    active = and_(
        WebhookSubscription.id == subscription_id, WebhookSubscription.status == SubscriptionStatus.ACTIVE
    )
    disabled = update_rows(
        session,
        WebhookSubscription,
        active,
        status=SubscriptionStatus.DISABLED,
        disabled_reason=reason[:500],
        disabled_at=now,
        last_modified=now,
    )
    return disabled == 1


def mark_failing(session: Session, subscription_id: str, now: datetime) -> datetime | None:
    """Start (or continue) the subscription's run of failures; returns when it started."""
    update_rows(
        session,
        WebhookSubscription,
        WebhookSubscription.id == subscription_id,
        failing_since=func.coalesce(WebhookSubscription.failing_since, now),
    )
    return session.scalars(
        select(WebhookSubscription.failing_since).where(WebhookSubscription.id == subscription_id)
    ).one_or_none()


def clear_failing(session: Session, subscription_id: str) -> None:
    failing = and_(WebhookSubscription.id == subscription_id, WebhookSubscription.failing_since.is_not(None))
    update_rows(session, WebhookSubscription, failing, failing_since=None)


# --- deliveries --------------------------------------------------------------------


def add_deliveries(session: Session, deliveries: Sequence[WebhookDelivery]) -> None:
    session.add_all(deliveries)
    session.flush()


def load_delivery(session: Session, delivery_id: str) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id, populate_existing=True)


def delivery_exists(session: Session, delivery_id: str) -> bool:
    found = session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.id == delivery_id)).first()
    return found is not None


def get_delivery(session: Session, subscription_id: str, delivery_id: str) -> WebhookDelivery | None:
    return session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == subscription_id
        )
    ).one_or_none()


def list_deliveries(session: Session, subscription_id: str, limit: int) -> list[WebhookDelivery]:
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.subscription_id == subscription_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
            .limit(limit)
        )
    )


def attempts_of(session: Session, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
    found: dict[str, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    if not delivery_ids:
        return found
    rows = session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
        .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number, WebhookAttempt.id)
    )
    for attempt in rows:
        found[attempt.delivery_id].append(attempt)
    return found


def add_attempt(session: Session, attempt: WebhookAttempt) -> None:
    session.add(attempt)
    session.flush()


LEASE = leases.LeaseSpec(
    WebhookDelivery,
    waiting=DeliveryStatus.PENDING,
    leased=DeliveryStatus.SENDING,
    due=WebhookDelivery.next_attempt_at,
)


def claim(session: Session, delivery_id: str, owner: str, now: datetime, lease: timedelta) -> bool:
    """Take the delivery if its next attempt is due, or if its sender's lease ran out."""
    return leases.claim(session, LEASE, delivery_id, owner, now, lease, attempts=WebhookDelivery.attempts + 1)


def settle(session: Session, delivery_id: str, owner: str, values: dict[str, Any]) -> bool:
    """Record the outcome of the claimed attempt; False when the claim was lost meanwhile."""
    return leases.settle(session, LEASE, delivery_id, owner, **values)


def cancel_pending(session: Session, subscription_id: str, now: datetime, reason: str) -> int:
    pending = and_(
        WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.status == DeliveryStatus.PENDING
    )
    return update_rows(
        session,
        WebhookDelivery,
        pending,
        status=DeliveryStatus.CANCELLED,
        next_attempt_at=None,
        completed_at=now,
        last_error=reason[:500],
    )


def rearm(session: Session, delivery_id: str, now: datetime) -> bool:
    """Start a new retry cycle now (manual redelivery), unless an attempt is in flight."""
    idle = and_(
        WebhookDelivery.id == delivery_id,
        or_(
            WebhookDelivery.status.in_((DeliveryStatus.PENDING, *FINAL_DELIVERY_STATUSES)),
            LEASE.is_orphaned(now),
        ),
    )
    rearmed = update_rows(
        session,
        WebhookDelivery,
        idle,
        status=DeliveryStatus.PENDING,
        cycle_offset=WebhookDelivery.attempts,
        next_attempt_at=now,
        enqueued_at=now,
        lease_owner=None,
        lease_expires_at=None,
        completed_at=None,
    )
    return rearmed == 1


def due_for_dispatch(session: Session, now: datetime, stale_before: datetime, limit: int = 500) -> list[str]:
    """Deliveries whose wake-up message is overdue (lost), or whose sender stopped mid-attempt."""
    return leases.due_for_dispatch(session, LEASE, now, stale_before, limit)


def waiting_count(session: Session, now: datetime) -> int:
    """Deliveries due now that no sender holds (for the metrics scrape)."""
    return int(
        session.scalar(
            select(func.count()).where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                or_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.next_attempt_at <= now),
            )
        )
        or 0
    )
