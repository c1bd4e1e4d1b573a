from __future__ import annotations

from pydantic import BaseModel, Field


class ExportJobOut(BaseModel):
    """Status of an export job, as polled with ``GET /v1/test/{testId}/events?jobId=``."""

    jobId: str
    testId: int
    status: str = Field(description="queued | running | finished | failed | cancelled")
    progress: int = Field(ge=0, le=100, description="Percentage of candidates written")
    candidatesTotal: int
    candidatesDone: int
    eventsWritten: int
    created: str
    started: str | None
    finished: str | None
    downloadUrl: str | None = Field(description="Present when finished; expires with the caller's token")
    downloadUrlExpires: str | None
    fileSize: int | None
    sha256: str | None
    error: dict[str, str] | None = Field(description='{"code", "message"} when failed')


def export_file_schema() -> dict[str, object]:
    """The JSON Schema every export file validates against (shipped with the package)."""
    import json
    from importlib.resources import files

    loaded: dict[str, object] = json.loads(
        files("examtrail.exports").joinpath("export-file.schema.json").read_text()
    )
    return loaded
