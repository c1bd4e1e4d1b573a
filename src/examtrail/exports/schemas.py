from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from examtrail.core.schemas import Timestamp
from examtrail.exports.models import JobStatus


class ExportError(BaseModel):
    code: str = Field(
        description="storage_unavailable | database_unavailable | too_many_attempts | "
        "pseudonym_key_unavailable | signing_unavailable | internal_error"
    )
    message: str


class ExportJobOut(BaseModel):
    """Status of an export job, as polled with ``GET /v1/test/{testId}/events?jobId=``."""

    jobId: str
    testId: int
    status: JobStatus = Field(
        description="queued | running | finished | failed | cancelled | expired (the file was deleted by "
        "retention, `EXAMTRAIL_EXPORT_RETENTION_DAYS`, or by the erasure of data it held: no `downloadUrl`)"
    )
    progress: int = Field(ge=0, le=100, description="Percentage of candidates written")
    candidatesTotal: int
    candidatesDone: int
    eventsWritten: int
    created: Timestamp
    started: Timestamp | None
    finished: Timestamp | None
    downloadUrl: str | None = Field(
        description="Present when finished (never when expired); expires with the caller's token"
    )
    downloadUrlExpires: Timestamp | None
    attachmentLinksExpire: Timestamp | None = Field(
        description="When finished and the file holds evidence-file links (`presignedUrl`): when "
        "those links expire. They were signed when the file was written, for the token that "
        "ordered it (or a later one that joined it); a newer token does not extend them: order "
        "a new export for fresh links",
    )
    fileSize: int | None
    sha256: str | None
    error: ExportError | None = Field(description="Why the export failed (only when `failed`)")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The job's normalised options (filters, format, compression, since, pseudonymize)",
    )
    format: Literal["json", "jsonl", "csv"] = Field(default="json", description="The file's format")
    compression: Literal["none", "gzip"] = Field(default="none", description="The file's compression")
    contentType: str = Field(default="application/json", description="Content-Type of the download")
    nextSince: str | None = Field(
        default=None,
        description="When finished: cursor for the next incremental export (pass it as `since`)",
    )
    signature: str | None = Field(
        default=None,
        description="When finished: a compact JWS (`alg` EdDSA, header `kid`) whose payload is "
        "`{jobId, testId, tenant, created, options, fileSize, sha256}` as shown here (`tenant`: "
        "the tenant's id). Verify it with the public keys at `/.well-known/jwks.json`, then "
        "compare the downloaded file's size and SHA-256 with the payload's.",
    )


class ExportJobList(BaseModel):
    """``GET /v1/test/{testId}/events/jobs``: newest first."""

    jobs: list[ExportJobOut]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


def export_file_schema() -> dict[str, object]:
    """The JSON Schema every export file validates against (shipped with the package)."""
    import json
    from importlib.resources import files

    loaded: dict[str, object] = json.loads(
        files("examtrail.exports").joinpath("export-file.schema.json").read_text()
    )
    return loaded
