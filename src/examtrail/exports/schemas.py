from __future__ import annotations

from pydantic import BaseModel, Field

from examtrail.core.schemas import Timestamp
from examtrail.exports.models import JobStatus


class ExportError(BaseModel):
    code: str = Field(
        description="storage_unavailable | database_unavailable | too_many_attempts | internal_error"
    )
    message: str


class ExportJobOut(BaseModel):
    """Status of an export job, as polled with ``GET /v1/test/{testId}/events?jobId=``."""

    jobId: str
    testId: int
    status: JobStatus
    progress: int = Field(ge=0, le=100, description="Percentage of candidates written")
    candidatesTotal: int
    candidatesDone: int
    eventsWritten: int
    created: Timestamp
    started: Timestamp | None
    finished: Timestamp | None
    downloadUrl: str | None = Field(description="Present when finished; expires with the caller's token")
    downloadUrlExpires: Timestamp | None
    fileSize: int | None
    sha256: str | None
    error: ExportError | None = Field(description="Why the export failed (only when `failed`)")


def export_file_schema() -> dict[str, object]:
    """The JSON Schema every export file validates against (shipped with the package)."""
    import json
    from importlib.resources import files

    loaded: dict[str, object] = json.loads(
        files("examtrail.exports").joinpath("export-file.schema.json").read_text()
    )
    return loaded
