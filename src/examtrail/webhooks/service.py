"""Webhooks: subscriptions, the outbox written when an export ends, and delivery.

Life of a notification
----------------------
1. An export job finishes or fails. In that same transaction ``record_notifications``
   writes one ``webhook_deliveries`` row per active subscription of the tenant to the
   event (the outbox). After the commit a wake-up message goes to the queue.
2. ``deliver`` claims the row with a lease (a conditional UPDATE: one sender at a time),
   builds the payload with a fresh download URL, signs the exact bytes and POSTs them,
   then records the attempt and decides: 2xx succeeded; 410 failed and the subscription
   disabled; anything else retried per ``webhook_retry_schedule`` (with jitter, and at
   least ``Retry-After`` on 429/502/503/504) until the schedule is exhausted.
3. ``dispatch_due`` (periodic) wakes deliveries whose message was lost (a crash, a
   broker restart) or whose sender died mid-attempt (expired lease). So a crash of any
   process loses nothing: the row is the truth, messages only wake workers.

Every attempt carries the delivery's ``webhook-id``; a manual redelivery is another
attempt of the same delivery (same id) and starts a fresh retry cycle.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy.orm import Session

from examtrail.audit import actions
from examtrail.audit.service import record, record_by
from examtrail.core import crypto, leases
from examtrail.core.context import job_context
from examtrail.core.db import begin_write, transaction, utcnow
from examtrail.core.errors import BadRequest, Conflict, NotFound
from examtrail.core.metrics import attempt_label, metrics
from examtrail.core.security import Principal
from examtrail.core.settings import Settings
from examtrail.core.timeutil import format_dt
from examtrail.exports import service as exports
from examtrail.exports.hooks import AfterCommit
from examtrail.exports.models import ExportJob, JobStatus
from examtrail.exports.schemas import ExportJobOut
from examtrail.runtime import Runtime
from examtrail.webhooks import repository, sender
from examtrail.webhooks.models import (
    DeliveryStatus,
    SubscriptionStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from examtrail.webhooks.schemas import (
    AttemptOut,
    DeliveryList,
    DeliveryOut,
    EventsOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
)

log = logging.getLogger(__name__)

DELIVER_TASK = "webhooks.deliver"
EVENTS = tuple(WebhookEvent)
EVENT_FOR_STATUS = {
    JobStatus.FINISHED: WebhookEvent.EXPORT_FINISHED,
    JobStatus.FAILED: WebhookEvent.EXPORT_FAILED,
}
VERIFICATION_EVENT = "verification"
# A Retry-After is honoured up to this many seconds (or the schedule's longest wait).
RETRY_AFTER_CAP_SECONDS = 3600


def list_events() -> EventsOut:
    return EventsOut(events=[str(event) for event in EVENTS])


def secret_box(settings: Settings) -> crypto.SecretBox:
    # Seals with the newest secret key; opens what any configured key sealed.
    return crypto.SecretBox(settings.secret_keyring())


def reencrypt_secrets(
    session: Session, settings: Settings, on_row: Callable[[bool], None] | None = None
) -> crypto.Resealed:
    """Re-seal every subscription's secret with the newest secret key (``examtrail keys
    reencrypt``), so that older secret keys can be dropped from the configuration."""
    box = secret_box(settings)
    result = crypto.Resealed()
    for subscription_id, sealed in repository.sealed_secrets(session):
        moved = result.reseal(box, sealed, subscription_id)
        if moved is not None:
            repository.set_sealed_secret(session, subscription_id, moved)
        if on_row is not None:
            on_row(moved is not None)
    return result


# --- subscriptions -----------------------------------------------------------------


def _out(subscription: WebhookSubscription) -> SubscriptionOut:
    return SubscriptionOut(
        subscriptionId=subscription.id,
        event=subscription.event,
        endpoint=subscription.endpoint,
        status=subscription.status,
        disabledReason=subscription.disabled_reason,
        created=format_dt(subscription.created_at) or "",
        lastModified=format_dt(subscription.last_modified) or "",
    )


def _checked_endpoint(raw: str, settings: Settings) -> None:
    try:
        url = sender.parse_endpoint(raw)
    except sender.InvalidEndpointError as exc:
        raise BadRequest(
            f"The endpoint is not valid: {exc}.",
            code=exc.code,
            details=[{"field": "endpoint", "message": str(exc)}],
        ) from None
    try:
        sender.check_endpoint_within(
            url, allow_private=settings.webhook_allow_private, timeout=settings.webhook_timeout_seconds
        )
    except sender.EndpointError as exc:
        raise BadRequest(
            f"The endpoint cannot be used: {exc}.",
            code=exc.code,
            details=[{"field": "endpoint", "message": str(exc)}],
        ) from None


def _verify_endpoint(settings: Settings, subscription_id: str, body: SubscriptionIn, secret: str) -> None:
    """POST a signed verification message; anything but a 2xx answer refuses the subscription."""
    now = utcnow()
    payload = orjson.dumps(
        {
            "event": VERIFICATION_EVENT,
            "timestamp": format_dt(now),
            "subscriptionId": subscription_id,
            "subscribedEvent": body.event,
        }
    )
    webhook_id = f"msg_verify_{uuid.uuid4().hex}"
    result = sender.post(
        body.endpoint,
        payload,
        sender.signed_headers(secret, webhook_id, now, payload),
        timeout=settings.webhook_timeout_seconds,
        allow_private=settings.webhook_allow_private,
    )
    if result.ok:
        return
    reason = f"it answered HTTP {result.status_code}" if result.status_code is not None else result.error
    detail: dict[str, Any] = {"field": "endpoint", "message": f"verification failed: {reason}"}
    if result.status_code is not None:
        detail["statusCode"] = result.status_code
    raise BadRequest(
        f"The endpoint did not accept the verification request ({reason}); a 2xx answer is required.",
        code="endpoint_verification_failed",
        details=[detail],
    )


def create_subscription(
    session: Session, settings: Settings, principal: Principal, body: SubscriptionIn
) -> SubscriptionCreated:
    """Validate, verify the endpoint (before touching the database), then store."""
    _checked_endpoint(body.endpoint, settings)
    secret = body.secret or sender.new_secret()
    subscription_id = str(uuid.uuid4())
    _verify_endpoint(settings, subscription_id, body, secret)

    # Only now a writer: no database lock is held while the endpoint is being verified.
    begin_write(session)
    existing = repository.find_active(session, principal.tenant_id, body.event, body.endpoint)
    if existing is not None:
        raise Conflict(
            "An active subscription to this event with this endpoint already exists.",
            code="subscription_exists",
            details=[{"subscriptionId": existing.id}],
        )
    now = utcnow()
    subscription = WebhookSubscription(
        id=subscription_id,
        tenant_id=principal.tenant_id,
        event=body.event,
        endpoint=body.endpoint,
        secret_encrypted=secret_box(settings).seal(secret, subscription_id),
        status=SubscriptionStatus.ACTIVE,
        created_by=principal.client_id,
        created_at=now,
        last_modified=now,
    )
    repository.add_subscription(session, subscription)
    # The endpoint's host only: a URL's path or query may carry a receiver's token.
    record(
        session,
        tenant_id=principal.tenant_id,
        client_id=principal.client_id,
        action=actions.SUBSCRIPTION_CREATED,
        object_type=actions.OBJECT_SUBSCRIPTION,
        object_id=subscription.id,
        details={"event": body.event, "endpointHost": _host(body.endpoint)},
    )
    return SubscriptionCreated(**_out(subscription).model_dump(), secret=secret)


def list_subscriptions(session: Session, principal: Principal) -> SubscriptionList:
    return SubscriptionList(
        subscriptions=[_out(s) for s in repository.list_subscriptions(session, principal.tenant_id)]
    )


def require_subscription(session: Session, principal: Principal, subscription_id: str) -> WebhookSubscription:
    subscription = repository.get_subscription(session, principal.tenant_id, subscription_id)
    if subscription is None:
        # Same answer for "another tenant's" and "does not exist".
        raise NotFound(f"Subscription {subscription_id} not found.", code="subscription_not_found")
    return subscription


def get_subscription(session: Session, principal: Principal, subscription_id: str) -> SubscriptionOut:
    return _out(require_subscription(session, principal, subscription_id))


def delete_subscription(session: Session, principal: Principal, subscription_id: str) -> None:
    if not repository.delete_subscription(session, principal.tenant_id, subscription_id):
        raise NotFound(f"Subscription {subscription_id} not found.", code="subscription_not_found")
    record(
        session,
        tenant_id=principal.tenant_id,
        client_id=principal.client_id,
        action=actions.SUBSCRIPTION_DELETED,
        object_type=actions.OBJECT_SUBSCRIPTION,
        object_id=subscription_id,
    )


def _host(endpoint: str) -> str:
    return urlsplit(endpoint).hostname or ""


# --- the delivery log --------------------------------------------------------------


def _attempt_out(attempt: WebhookAttempt) -> AttemptOut:
    return AttemptOut(
        attempt=attempt.number,
        trigger=attempt.trigger,
        time=format_dt(attempt.started_at) or "",
        durationMs=attempt.duration_ms,
        statusCode=attempt.status_code,
        error=attempt.error,
        succeeded=attempt.succeeded,
        nextRetry=format_dt(attempt.next_retry_at),
    )


def _delivery_out(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    waiting = delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
    return DeliveryOut(
        deliveryId=delivery.id,
        webhookId=delivery.webhook_id,
        subscriptionId=delivery.subscription_id,
        event=delivery.event,
        jobId=delivery.job_id,
        contextObjectId=delivery.test_external_id,
        status=delivery.status,
        attemptCount=delivery.attempts,
        created=format_dt(delivery.created_at) or "",
        nextAttempt=format_dt(delivery.next_attempt_at) if waiting else None,
        completed=format_dt(delivery.completed_at),
        lastStatusCode=delivery.last_status_code,
        lastError=delivery.last_error,
        attempts=[_attempt_out(a) for a in attempts],
    )


def list_deliveries(session: Session, principal: Principal, subscription_id: str, limit: int) -> DeliveryList:
    subscription = require_subscription(session, principal, subscription_id)
    deliveries = repository.list_deliveries(session, subscription.id, limit)
    attempts = repository.attempts_of(session, [d.id for d in deliveries])
    return DeliveryList(deliveries=[_delivery_out(d, attempts[d.id]) for d in deliveries])


def redeliver(session: Session, principal: Principal, subscription_id: str, delivery_id: str) -> DeliveryOut:
    """Send a delivery again: a new attempt with the same webhook-id, and a fresh retry cycle."""
    subscription = require_subscription(session, principal, subscription_id)
    delivery = repository.get_delivery(session, subscription.id, delivery_id)
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} not found.", code="delivery_not_found")
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise Conflict(
            "The subscription is disabled; create a new subscription to receive notifications again.",
            code="subscription_disabled",
        )
    if not repository.rearm(session, delivery.id, utcnow()):
        raise Conflict(
            "An attempt of this delivery is in progress; try again shortly.", code="delivery_in_progress"
        )
    details = {"subscriptionId": subscription.id, "deliveryId": delivery.id, "jobId": delivery.job_id}
    test_id = delivery.test_external_id
    record_by(
        session,
        principal,
        actions.WEBHOOK_REDELIVERED,
        actions.OBJECT_DELIVERY,
        delivery.id,
        test_id,
        details,
    )
    refreshed = repository.load_delivery(session, delivery.id)
    assert refreshed is not None
    return _delivery_out(refreshed, repository.attempts_of(session, [delivery.id])[delivery.id])


# --- the outbox --------------------------------------------------------------------


def record_notifications(runtime: Runtime, session: Session, job: ExportJob) -> AfterCommit | None:
    """Completion hook: runs in the transaction that ends ``job``; writes the outbox rows."""
    event = EVENT_FOR_STATUS.get(JobStatus(job.status))
    if event is None:
        return None
    subscriptions = repository.active_subscriptions(session, job.tenant_id, event)
    if not subscriptions:
        return None
    now = utcnow()
    schedule = runtime.settings.webhook_retry_schedule or [0]
    deliveries = []
    for subscription in subscriptions:
        first = now + timedelta(seconds=leases.backoff(schedule, 0) or 0.0)
        deliveries.append(
            WebhookDelivery(
                id=str(uuid.uuid4()),
                webhook_id=f"msg_{uuid.uuid4().hex}",
                tenant_id=job.tenant_id,
                subscription_id=subscription.id,
                event=event,
                job_id=job.id,
                test_external_id=job.test_external_id,
                occurred_at=job.finished_at or now,
                status=DeliveryStatus.PENDING,
                attempts=0,
                cycle_offset=0,
                next_attempt_at=first,
                enqueued_at=first,
                created_at=now,
            )
        )
    repository.add_deliveries(session, deliveries)
    wake_ups = [
        (d.id, max(0, int(((d.next_attempt_at or now) - now).total_seconds() * 1000))) for d in deliveries
    ]

    def wake() -> None:
        for delivery_id, delay_ms in wake_ups:
            runtime.queue.send(DELIVER_TASK, delivery_id, delay_ms=delay_ms or None)

    return wake


# --- sending -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prepared:
    delivery_id: str
    subscription_id: str
    webhook_id: str
    endpoint: str
    secret: str
    payload: dict[str, Any]
    # Why nothing can be sent this time (the attempt is then logged as failed with it).
    problem: str | None
    number: int
    cycle_attempt: int
    trigger: str


# A delivery's lease outlasts its send by this much (recording the attempt, a slow database).
LEASE_MARGIN_SECONDS = 30


def delivery_lease(settings: Settings) -> timedelta:
    """Always longer than a send can take (``webhook_timeout_seconds`` is one overall
    deadline per request), so a send in flight is never claimed and sent again."""
    return timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)


def link_expiry(settings: Settings, now: datetime) -> datetime:
    """When a notification's download link expires: whole seconds, as signed links carry."""
    return (now + timedelta(seconds=settings.webhook_url_ttl_seconds)).replace(microsecond=0)


def build_payload(delivery: WebhookDelivery, status: ExportJobOut) -> dict[str, Any]:
    """The notification for ``delivery`` about the export whose status is ``status``."""
    payload: dict[str, Any] = {
        "event": delivery.event,
        "timestamp": format_dt(delivery.occurred_at),
        "contextObjectId": delivery.test_external_id,
        "jobId": status.jobId,
        "status": str(status.status),
        "format": status.format,
        "compression": status.compression,
    }
    if delivery.event == WebhookEvent.EXPORT_FINISHED:
        payload.update(
            downloadUrl=status.downloadUrl,
            downloadUrlExpires=status.downloadUrlExpires,
            attachmentLinksExpire=status.attachmentLinksExpire,
            fileSize=status.fileSize,
            sha256=status.sha256,
            nextSince=status.nextSince,
            signature=status.signature,
        )
    else:
        payload["error"] = status.error.model_dump() if status.error else {"code": "", "message": ""}
    return payload


def _cancel_unsent(
    session: Session, delivery: WebhookDelivery, owner: str, now: datetime, reason: str
) -> None:
    log.info("webhook delivery %s cancelled: %s", delivery.id, reason)
    repository.settle(
        session,
        delivery.id,
        owner,
        {
            "status": DeliveryStatus.CANCELLED,
            "next_attempt_at": None,
            "completed_at": now,
            "last_error": reason,
            "attempts": delivery.attempts - 1,  # nothing was sent
        },
    )


def _prepare(
    runtime: Runtime, session: Session, delivery: WebhookDelivery, owner: str, now: datetime
) -> _Prepared | None:
    subscription = repository.load_subscription(session, delivery.subscription_id)
    status = exports.describe_job(session, runtime.store, delivery.job_id, link_expiry(runtime.settings, now))
    if subscription is None or subscription.status != SubscriptionStatus.ACTIVE:
        _cancel_unsent(session, delivery, owner, now, "the subscription is disabled")
        return None
    if status is None:
        _cancel_unsent(session, delivery, owner, now, "the export no longer exists")
        return None
    if status.downloadUrl is not None:
        # A link handed to the subscriber's endpoint (by the service: no client); one per attempt.
        record(
            session,
            tenant_id=delivery.tenant_id,
            client_id=None,
            action=actions.EXPORT_LINK_ISSUED,
            object_type=actions.OBJECT_EXPORT,
            object_id=delivery.job_id,
            test_id=delivery.test_external_id,
            details={
                "jobId": delivery.job_id,
                "expires": status.downloadUrlExpires,
                "subscriptionId": subscription.id,
                "deliveryId": delivery.id,
            },
        )
    secret, payload, problem = "", {}, None
    try:
        secret = secret_box(runtime.settings).open(subscription.secret_encrypted, subscription.id)
        payload = build_payload(delivery, status)
    except crypto.SecretUnavailableError:
        problem = "the signing secret cannot be decrypted (was the service's secret key changed?)"
    except Exception:
        # Never leave the claim without an outcome: that would retry forever without a trace.
        log.exception("could not prepare webhook delivery %s", delivery.id)
        problem = "internal error while preparing the notification"
    cycle_attempt = delivery.attempts - delivery.cycle_offset
    trigger = "retry"
    if cycle_attempt == 1:
        trigger = "redelivery" if delivery.cycle_offset else "initial"
    return _Prepared(
        delivery_id=delivery.id,
        subscription_id=subscription.id,
        webhook_id=delivery.webhook_id,
        endpoint=subscription.endpoint,
        secret=secret,
        payload=payload,
        problem=problem,
        number=delivery.attempts,
        cycle_attempt=cycle_attempt,
        trigger=trigger,
    )


def _send(runtime: Runtime, prepared: _Prepared) -> sender.SendResult:
    if prepared.problem is not None:
        return sender.SendResult(None, prepared.problem, 0)
    settings = runtime.settings
    try:
        body = orjson.dumps(prepared.payload)
        headers = sender.signed_headers(prepared.secret, prepared.webhook_id, utcnow(), body)
        return sender.post(
            prepared.endpoint,
            body,
            headers,
            timeout=settings.webhook_timeout_seconds,
            allow_private=settings.webhook_allow_private,
        )
    except Exception as exc:
        log.exception("webhook delivery %s could not be sent", prepared.delivery_id)
        return sender.SendResult(None, f"internal error while sending ({type(exc).__name__})", 0)


def retry_delay(schedule: list[int], cycle_attempt: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt after the ``cycle_attempt``-th failed; None: give up."""
    if retry_after is not None:
        retry_after = min(retry_after, max([RETRY_AFTER_CAP_SECONDS, *schedule]))
    return leases.backoff(schedule, cycle_attempt, retry_after=retry_after)


def _disable(session: Session, subscription_id: str, now: datetime, reason: str) -> None:
    if repository.disable_subscription(session, subscription_id, now, reason):
        cancelled = repository.cancel_pending(
            session, subscription_id, now, f"subscription disabled: {reason}"
        )
        log.warning(
            "webhook subscription %s disabled (%s); %d pending deliveries cancelled",
            subscription_id,
            reason,
            cancelled,
        )


def _record(
    runtime: Runtime, prepared: _Prepared, owner: str, started: datetime, result: sender.SendResult
) -> float | None:
    """Store the attempt and the delivery's next state; returns the delay of a scheduled retry."""
    settings = runtime.settings
    now = utcnow()
    values: dict[str, Any] = {
        "last_attempt_at": started,
        "last_status_code": result.status_code,
        "last_error": None if result.ok else result.describe()[:500],
    }
    retry_in: float | None = None
    next_at: datetime | None = None
    if result.ok:
        values.update(status=DeliveryStatus.SUCCEEDED, next_attempt_at=None, completed_at=now)
    elif result.status_code == 410:
        values.update(status=DeliveryStatus.FAILED, next_attempt_at=None, completed_at=now)
    else:
        retry_in = retry_delay(settings.webhook_retry_schedule, prepared.cycle_attempt, result.retry_after)
        if retry_in is None:
            values.update(status=DeliveryStatus.FAILED, next_attempt_at=None, completed_at=now)
        else:
            next_at = now + timedelta(seconds=retry_in)
            values.update(status=DeliveryStatus.PENDING, next_attempt_at=next_at, enqueued_at=next_at)

    attempt = WebhookAttempt(
        delivery_id=prepared.delivery_id,
        number=prepared.number,
        trigger=prepared.trigger,
        started_at=started,
        duration_ms=result.duration_ms,
        status_code=result.status_code,
        error=None if result.ok or result.status_code is not None else (result.error or "")[:500],
        succeeded=result.ok,
        next_retry_at=next_at,
    )
    with transaction(runtime.sessions) as session:
        settled = repository.settle(session, prepared.delivery_id, owner, values)
        if not settled:
            # Our lease ran out and another sender took over: it decides what happens next,
            # so this attempt scheduled nothing. The attempt happened, so it is logged,
            # unless the delivery is gone (subscription deleted).
            attempt.next_retry_at = None
            if repository.delivery_exists(session, prepared.delivery_id):
                repository.add_attempt(session, attempt)
            return None
        if result.ok:
            repository.clear_failing(session, prepared.subscription_id)
        elif result.status_code == 410:
            _disable(session, prepared.subscription_id, now, "the endpoint answered 410 Gone")
            retry_in = None
        else:
            since = repository.mark_failing(session, prepared.subscription_id, now)
            limit = timedelta(days=settings.webhook_disable_after_days)
            if since is not None and now - since >= limit:
                _disable(
                    session,
                    prepared.subscription_id,
                    now,
                    f"every delivery failed since {format_dt(since)} "
                    f"(more than {_days(settings.webhook_disable_after_days)})",
                )
                # Disabling cancelled this delivery too: the log must not promise a retry.
                retry_in = None
                attempt.next_retry_at = None
        repository.add_attempt(session, attempt)
    return retry_in


def deliver(runtime: Runtime, delivery_id: str) -> None:
    """Claim and make one attempt of a delivery; safe to call any number of times."""
    owner = leases.worker_id()
    now = utcnow()
    with transaction(runtime.sessions) as session:
        if not repository.claim(session, delivery_id, owner, now, delivery_lease(runtime.settings)):
            return
        delivery = repository.load_delivery(session, delivery_id)
        assert delivery is not None
        context = partial(
            job_context,
            job_id=delivery.job_id,
            test_id=delivery.test_external_id,
            tenant=delivery.tenant_id,
            delivery_id=delivery_id,
        )
        with context():
            prepared = _prepare(runtime, session, delivery, owner, now)
    if prepared is None:
        return
    with context():
        _attempt(runtime, prepared, owner, now)


def _attempt(runtime: Runtime, prepared: _Prepared, owner: str, now: datetime) -> None:
    delivery_id = prepared.delivery_id
    result = _send(runtime, prepared)
    outcome = "succeeded" if result.ok else "gone" if result.status_code == 410 else "failed"
    metrics().webhook_deliveries.labels(outcome, attempt_label(prepared.cycle_attempt)).inc()
    if not result.ok:
        log.info("webhook delivery %s attempt %d failed: %s", delivery_id, prepared.number, result.describe())
    retry_in = _record(runtime, prepared, owner, now, result)
    if retry_in is not None:
        runtime.queue.send(DELIVER_TASK, delivery_id, delay_ms=int(retry_in * 1000) or None)


def request_delivery(runtime: Runtime, delivery_id: str) -> None:
    """Wake a worker for a delivery (after the commit that made it due)."""
    runtime.queue.send(DELIVER_TASK, delivery_id)


def waiting_deliveries(session: Session, now: datetime) -> int:
    return repository.waiting_count(session, now)


def dispatch_due(runtime: Runtime) -> int:
    """Re-send wake-ups for due deliveries whose message was lost or whose sender died."""
    now = utcnow()
    grace = timedelta(seconds=max(1.0, 2 * runtime.settings.sweep_interval_seconds))
    with transaction(runtime.sessions) as session:
        ids = repository.due_for_dispatch(session, now, now - grace)
    for delivery_id in ids:
        runtime.queue.send(DELIVER_TASK, delivery_id)
    return len(ids)


def _days(days: float) -> str:
    return f"{days:g} day" if days == 1 else f"{days:g} days"
