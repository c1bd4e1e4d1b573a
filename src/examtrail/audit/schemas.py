from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from examtrail.core.schemas import Timestamp


class AuditEntryOut(BaseModel):
    """One audited action."""

    entryId: int = Field(description="Increasing with time within the log")
    time: Timestamp = Field(description="When the action was recorded (UTC)")
    clientId: str | None = Field(
        description="The API client that acted; `cli` for the command line; null for the service itself"
    )
    action: str = Field(description="What happened (see the `action` filter for the list)")
    objectType: str = Field(
        description="What it happened to: `client`, `test`, `candidate`, `attachment`, `export`, "
        "`subscription`, `delivery`, `erasure`, `signing_key`, `secret_key`"
    )
    objectId: str = Field(
        description="Its id (client id, testId, userId, contentItemId, jobId, subscriptionId, deliveryId, …)"
    )
    testId: int | None = Field(description="The test concerned, if any")
    requestId: str | None = Field(description="The request's `X-Request-ID` (null outside a request)")
    sourceIp: str | None = Field(description="The caller's address (null outside a request)")
    details: dict[str, Any] = Field(
        description="Counts and ids of the action; never secrets or event content"
    )


class AuditPage(BaseModel):
    entries: list[AuditEntryOut] = Field(description="Newest first")
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
