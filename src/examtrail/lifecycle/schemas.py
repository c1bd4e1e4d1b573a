from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from examtrail.core.schemas import Timestamp
from examtrail.lifecycle.models import ErasureStatus


class ErasureError(BaseModel):
    code: str = Field(
        description="storage_unavailable | database_unavailable | too_many_attempts | internal_error"
    )
    message: str


class ErasureJobOut(BaseModel):
    """An erasure: answered by the `DELETE` that requested it and by `GET /v1/erasures/{jobId}`.

    Whatever its status, the erased data is already out of every read and export; `finished`
    means the rows and stored objects are gone too."""

    jobId: str
    kind: Literal["candidate", "test"] = Field(description="What is erased: one candidate or a whole test")
    testId: int
    userId: int | None = Field(description="The erased candidate (null when the whole test is erased)")
    status: ErasureStatus
    eventsTotal: int = Field(description="Events to delete, counted when the erasure was accepted")
    eventsDeleted: int
    filesDeleted: int = Field(description="Evidence files (attachments) deleted from the object store")
    exportsExpired: int = Field(description="Export jobs whose file held the erased data (now `expired`)")
    created: Timestamp
    started: Timestamp | None
    finished: Timestamp | None
    error: ErasureError | None = Field(description="Why the erasure failed (only when `failed`)")


class HoldOut(BaseModel):
    """A test's legal hold: while `held`, neither erasure nor retention deletes anything of it."""

    testId: int
    held: bool
    since: Timestamp | None = Field(description="When the hold was set")
    setBy: str | None = Field(description="The API client that set it")
