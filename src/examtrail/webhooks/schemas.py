"""Request and response bodies of the subscriptions API (Inspera-compatible field names)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from examtrail.core.schemas import Timestamp
from examtrail.webhooks import sender
from examtrail.webhooks.models import DeliveryStatus, SubscriptionStatus

EventName = Literal["event_by_candidates_export_finished", "event_by_candidates_export_failed"]


def _secret(value: str) -> str:
    return sender.check_secret(value)


# 'whsec_' and padded base64 of 24 to 64 bytes (8-21 groups of 4, then 0-2 bytes of padding).
_B64 = "[A-Za-z0-9+/]"
_GROUPS = f"(?:{_B64}{{4}})"
_SECRET_PATTERN = (
    f"^whsec_(?:{_GROUPS}{{8,21}}|{_GROUPS}{{8,21}}{_B64}{{2}}==|{_GROUPS}{{8,20}}{_B64}{{3}}=)$"
)
Secret = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_secret)]


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    event: EventName = Field(description="The event to be notified of")
    endpoint: Annotated[str, StringConstraints(min_length=1, max_length=sender.MAX_ENDPOINT_LENGTH)] = Field(
        description="http(s) URL that receives the POSTs; it must answer the verification POST with 2xx",
        # Checked by the service (400 with the reason), documented here.
        json_schema_extra={"format": "uri", "pattern": r"^https?://[^\s/?#@]+[^\s#]*$"},
    )
    secret: Secret | None = Field(
        default=None,
        description="Signing secret `whsec_<base64 of 24-64 bytes>`; generated when absent",
        json_schema_extra={"pattern": _SECRET_PATTERN},
    )


class EventsOut(BaseModel):
    events: list[EventName]


class SubscriptionOut(BaseModel):
    subscriptionId: str
    event: EventName
    endpoint: str
    status: SubscriptionStatus
    disabledReason: str | None
    created: Timestamp
    lastModified: Timestamp


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="The signing secret; shown only in this answer")


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class AttemptOut(BaseModel):
    attempt: int = Field(description="1 for the first attempt of the delivery")
    trigger: Literal["initial", "retry", "redelivery"]
    time: Timestamp
    durationMs: int
    statusCode: int | None = Field(description="The endpoint's HTTP status, when it answered")
    error: str | None = Field(description="Why there was no (2xx) answer")
    succeeded: bool
    nextRetry: Timestamp | None = Field(description="When the next attempt was scheduled after this one")


class DeliveryOut(BaseModel):
    deliveryId: str
    webhookId: str = Field(description="The `webhook-id` header: the same on every attempt")
    subscriptionId: str
    event: EventName
    jobId: str
    contextObjectId: int = Field(description="The test id")
    status: DeliveryStatus
    attemptCount: int
    created: Timestamp
    nextAttempt: Timestamp | None
    completed: Timestamp | None
    lastStatusCode: int | None
    lastError: str | None
    attempts: list[AttemptOut]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
