"""Typed results returned by the clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ``expired``: the file was deleted (retention or erasure); the job will not change again.
TERMINAL_STATUSES = frozenset({"finished", "failed", "cancelled", "expired"})


@dataclass(frozen=True, slots=True)
class ExportJob:
    """One export job as the status call describes it (``GET /v1/test/{testId}/events?jobId=``)."""

    job_id: str
    test_id: int
    status: str
    progress: int = 0
    candidates_total: int = 0
    candidates_done: int = 0
    events_written: int = 0
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    download_url: str | None = None
    download_url_expires: str | None = None
    file_size: int | None = None
    sha256: str | None = None
    error: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> ExportJob:
        """Builds the job from the server's JSON status."""
        return cls(
            job_id=str(body["jobId"]),
            test_id=int(body.get("testId", 0)),
            status=str(body.get("status", "queued")),
            progress=int(body.get("progress") or 0),
            candidates_total=int(body.get("candidatesTotal") or 0),
            candidates_done=int(body.get("candidatesDone") or 0),
            events_written=int(body.get("eventsWritten") or 0),
            created=body.get("created"),
            started=body.get("started"),
            finished=body.get("finished"),
            download_url=body.get("downloadUrl"),
            download_url_expires=body.get("downloadUrlExpires"),
            file_size=body.get("fileSize"),
            sha256=body.get("sha256"),
            error=body.get("error"),
            raw=dict(body),
        )

    @property
    def done(self) -> bool:
        """True once the job has ended (finished, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """True when the job finished and its file can be downloaded."""
        return self.status == "finished"

    @property
    def next_since(self) -> str | None:
        """The cursor for the next incremental export (servers with export options only)."""
        value = self.raw.get("nextSince")
        return str(value) if value is not None else None

    @property
    def attachment_links_expire(self) -> str | None:
        """When the evidence-file links inside the finished file expire (None: it has none)."""
        value = self.raw.get("attachmentLinksExpire")
        return str(value) if value is not None else None

    @property
    def format(self) -> str:
        """The file format (``json`` unless the server supports and was asked for another)."""
        return str(self.raw.get("format") or "json")

    @property
    def compression(self) -> str:
        """``none`` or ``gzip``."""
        return str(self.raw.get("compression") or "none")

    def to_dict(self) -> dict[str, Any]:
        """The server's JSON body of this status."""
        return dict(self.raw)


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """A verified download: where it is, and what was checked."""

    job: ExportJob
    path: Path
    file_size: int
    sha256: str
    resumed: int = 0

    def summary(self) -> dict[str, Any]:
        """``{"jobId","testId","file","fileSize","sha256","candidates","events"}`` (the CLI's ``--json``)."""
        return {
            "jobId": self.job.job_id,
            "testId": self.job.test_id,
            "file": str(self.path),
            "fileSize": self.file_size,
            "sha256": self.sha256,
            "candidates": self.job.candidates_total,
            "events": self.job.events_written,
        }


@dataclass(frozen=True, slots=True)
class Candidate:
    """A candidate of an export file."""

    user_id: int
    candidate_id: str


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    """An input event the client or the server refused: where it was and why."""

    line: int
    message: str
    event_id: str | None = None

    def __str__(self) -> str:
        ident = f" (eventId {self.event_id})" if self.event_id else ""
        return f"line {self.line}{ident}: {self.message}"


@dataclass(slots=True)
class IngestProgress:
    """Counters of a running ingestion, passed to ``on_progress``."""

    read: int = 0
    sent: int = 0
    created: int = 0
    duplicates: int = 0
    rejected: int = 0
    candidates: int = 0
    bytes_read: int = 0
    bytes_total: int = 0


@dataclass(slots=True)
class IngestReport:
    """What an ingestion did: counts and every rejected input with its line number."""

    test_id: int
    read: int = 0
    created: int = 0
    duplicates: int = 0
    candidates: int = 0
    rejected: list[RejectedEvent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return not self.rejected
