"""Webhook subscriptions, Inspera-compatible: ``/v1/subscription`` (scope ``export``).

Another tenant's subscription or delivery answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import Field

from examtrail.auth.deps import ExportPrincipal
from examtrail.core.body import JsonBodyRoute
from examtrail.core.errors import ServiceUnavailable
from examtrail.core.media import require_json
from examtrail.core.pools import PoolFull, shared_pool
from examtrail.core.schemas import ASCII_DIGITS, NO_CONTROL
from examtrail.core.security import Principal
from examtrail.deps import RuntimeDep, SessionDep, WriteSessionDep
from examtrail.runtime import Runtime
from examtrail.webhooks import service
from examtrail.webhooks.schemas import (
    DeliveryList,
    DeliveryOut,
    EventsOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
)

router = APIRouter(prefix="/v1/subscription", tags=["webhooks"], route_class=JsonBodyRoute)

SubscriptionId = Annotated[
    str,
    Path(
        alias="subscriptionId",
        min_length=1,
        max_length=64,
        pattern=NO_CONTROL,
        description="The subscription's id",
    ),
]
DeliveryId = Annotated[
    str,
    Path(
        alias="deliveryId",
        min_length=1,
        max_length=64,
        pattern=NO_CONTROL,
        description="The delivery's id (delivery log)",
    ),
]


@router.get("/events", response_model=EventsOut, summary="The events one can subscribe to")
def list_events(_principal: ExportPrincipal) -> EventsOut:
    return service.list_events()


@router.post(
    "",
    response_model=SubscriptionCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Subscribe an endpoint to an event",
    description='The endpoint first receives a signed verification POST (`{"event": "verification"}`) '
    "and must answer 2xx within `EXAMTRAIL_WEBHOOK_TIMEOUT_SECONDS` (one deadline for the whole "
    "request), else 400 `endpoint_verification_failed`. Verifications run on a bounded pool "
    "(`EXAMTRAIL_WEBHOOK_VERIFY_THREADS`); when it is full the answer is 503 `verification_busy` "
    "with `Retry-After`. The signing secret (generated when absent) is returned only in this answer. "
    "A finished export's notification carries its `fileSize`, `sha256` and `signature` (the "
    "export's JWS, verifiable with `/.well-known/jwks.json`).",
    dependencies=[Depends(require_json)],
)
async def create_subscription(
    body: SubscriptionIn,
    principal: ExportPrincipal,
    runtime: RuntimeDep,
    response: Response,
) -> SubscriptionCreated:
    # The verification POST may take the whole webhook deadline: never on the request threads.
    pool = shared_pool("examtrail-verify", runtime.settings.webhook_verify_threads)
    try:
        created = await pool.run(_subscribe, runtime, principal, body)
    except PoolFull:
        raise ServiceUnavailable(
            "Too many webhook endpoint verifications are in progress; retry shortly.",
            code="verification_busy",
            headers={"Retry-After": "5"},
        ) from None
    response.headers["Location"] = f"/v1/subscription/{created.subscriptionId}"
    response.headers["Cache-Control"] = "no-store"
    return created


def _subscribe(runtime: Runtime, principal: Principal, body: SubscriptionIn) -> SubscriptionCreated:
    """Verify and store, on a verification thread; the commit is this request's edge."""
    session = runtime.sessions()
    try:
        created = service.create_subscription(session, runtime.settings, principal, body)
        session.commit()
        return created
    finally:
        session.rollback()
        session.close()


@router.get("", response_model=SubscriptionList, summary="List the tenant's subscriptions (never secrets)")
def list_subscriptions(principal: ExportPrincipal, session: SessionDep) -> SubscriptionList:
    return service.list_subscriptions(session, principal)


@router.get("/{subscriptionId}", response_model=SubscriptionOut, summary="Describe a subscription")
def get_subscription(
    subscription_id: SubscriptionId, principal: ExportPrincipal, session: SessionDep
) -> SubscriptionOut:
    return service.get_subscription(session, principal, subscription_id)


@router.delete(
    "/{subscriptionId}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a subscription (and its delivery log)",
)
def delete_subscription(
    subscription_id: SubscriptionId, principal: ExportPrincipal, session: WriteSessionDep
) -> Response:
    service.delete_subscription(session, principal, subscription_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{subscriptionId}/deliveries",
    response_model=DeliveryList,
    summary="Delivery log: notifications, newest first, with every attempt",
)
def list_deliveries(
    subscription_id: SubscriptionId,
    principal: ExportPrincipal,
    session: SessionDep,
    limit: Annotated[
        int, Field(ge=1, le=200), ASCII_DIGITS, Query(description="How many deliveries, newest first")
    ] = 50,
) -> DeliveryList:
    return service.list_deliveries(session, principal, subscription_id, limit)


@router.post(
    "/{subscriptionId}/deliveries/{deliveryId}/redeliver",
    response_model=DeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a notification again",
    description="Schedules a new attempt of the same delivery now, with the same `webhook-id` (receivers "
    "that de-duplicate see the same notification) and a fresh retry schedule. 409 while an attempt is "
    "in flight or when the subscription is disabled.",
)
def redeliver(
    subscription_id: SubscriptionId,
    delivery_id: DeliveryId,
    principal: ExportPrincipal,
    session: WriteSessionDep,
    runtime: RuntimeDep,
) -> DeliveryOut:
    delivery = service.redeliver(session, principal, subscription_id, delivery_id)
    session.commit()
    # Only after the commit: the worker must find the row due.
    service.request_delivery(runtime, delivery.deliveryId)
    return delivery
