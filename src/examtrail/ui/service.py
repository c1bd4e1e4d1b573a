"""What the review pages show, read through ingest's public functions.

Pages are shells; their content comes as HTML fragments rendered here with the caller's
bearer token, so a tenant sees only its own tests (the same 404 as the API).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from examtrail.audit import actions
from examtrail.audit.service import become_writer, record_by
from examtrail.core.security import Principal
from examtrail.core.timeutil import format_dt, format_ms
from examtrail.ingest import review
from examtrail.ingest import service as ingest
from examtrail.ingest.read_model import AttachmentRef
from examtrail.ingest.schemas import TestsPage
from examtrail.storage.base import ObjectStore

# Severity words that get their own colour; any other value is shown as text, uncoloured.
SEVERITIES = ("critical", "high", "medium", "low")
MAX_TEXT = 200


def severity_class(level: str | None) -> str:
    if level is None:
        return "sev-none"
    lowered = level.lower()
    return f"sev-{lowered}" if lowered in SEVERITIES else "sev-other"


def severity_order(levels: Mapping[str, int]) -> list[tuple[str, int]]:
    """Known severities first (most severe first), then the others by name."""
    known = [(level, levels[level]) for level in SEVERITIES if levels.get(level)]
    others = sorted((level, n) for level, n in levels.items() if level not in SEVERITIES and n)
    return known + others


def utc_text(iso: str) -> str:
    """``2026-06-01T09:25:00.000Z`` as ``2026-06-01 09:25:00.000 UTC``."""
    return iso.replace("T", " ").removesuffix("Z") + " UTC"


def duration_text(ms: int | None) -> str:
    if ms is None:
        return "not restored"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:g} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes:
        parts.append(f"{minutes} min")
    if secs:
        parts.append(f"{secs} s")
    return " ".join(parts)


def size_text(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def tests_list(session: Session, principal: Principal, query: str | None, after: int | None) -> TestsPage:
    return ingest.list_tests(session, principal.tenant_id, after=after, limit=50, query=query)


@dataclass(frozen=True, slots=True)
class CandidateFilters:
    sort: review.SortKey = "userId"
    descending: bool = False
    flagged: bool = False
    severity: str | None = None
    event: str | None = None
    candidate: str | None = None
    offset: int = 0

    def query(self, **changes: Any) -> str:
        """The page's query string with ``changes`` applied (empty values left out)."""
        values: dict[str, Any] = {
            "sort": self.sort,
            "dir": "desc" if self.descending else "asc",
            "flagged": "1" if self.flagged else None,
            "severity": self.severity,
            "event": self.event,
            "candidate": self.candidate,
            "offset": self.offset or None,
        }
        values.update(changes)
        kept = {k: v for k, v in values.items() if v not in (None, "", 0)}
        if kept.get("sort") == "userId":
            kept.pop("sort")
        if kept.get("dir") == "asc":
            kept.pop("dir")
        return urlencode(kept)


@dataclass(frozen=True, slots=True)
class TestView:
    __test__ = False
    test_id: int
    title: str
    totals: review.TestTotals
    page: review.CandidatesPage
    filters: CandidateFilters


def test_view(session: Session, principal: Principal, test_id: int, filters: CandidateFilters) -> TestView:
    test = ingest.require_test(session, principal.tenant_id, test_id)
    totals = review.test_totals(session, test)
    page = review.candidates_page(
        session,
        test,
        sort=filters.sort,
        descending=filters.descending,
        flagged=filters.flagged,
        severity=filters.severity,
        event=filters.event,
        candidate=filters.candidate,
        offset=filters.offset,
    )
    return TestView(test.external_id, test.title, totals, page, filters)


@dataclass(frozen=True, slots=True)
class FileView:
    name: str
    size: int
    content_type: str
    url: str

    @property
    def is_image(self) -> bool:
        return self.content_type.lower().startswith("image/")


@dataclass(frozen=True, slots=True)
class EventView:
    event_id: str
    name: str
    time: str
    invigilator: bool
    by_user: int | None
    extra: dict[str, Any] | None
    flag: dict[str, Any] | None
    severity: str | None
    files: list[FileView]
    in_gap: bool = False
    # When the server received it (kept apart from the client's claimed ``time``).
    received: str | None = None


@dataclass(slots=True)
class Block:
    """One entry of the timeline: an event, or a network gap holding the events inside it."""

    event: EventView | None = None
    gap: review.Gap | None = None
    gap_events: list[EventView] = field(default_factory=list)

    @property
    def gap_start(self) -> str:
        assert self.gap is not None
        return format_ms(self.gap.start_ms)

    @property
    def gap_end(self) -> str | None:
        assert self.gap is not None
        return format_ms(self.gap.end_ms) if self.gap.end_ms is not None else None


@dataclass(frozen=True, slots=True)
class TimelineView:
    test_id: int
    title: str
    user_id: int
    candidate_id: str
    blocks: list[Block]
    shown: int
    total: int
    gaps: list[review.Gap]
    event_names: list[str]
    event: str | None
    flagged: bool
    flags: int
    severities: list[tuple[str, int]]


def _file_view(store: ObjectStore, ref: AttachmentRef, expires_at: datetime) -> FileView:
    url = store.presigned_get_url(
        ref.storage_key, expires_at=expires_at, filename=ref.file_name, content_type=ref.content_type
    )
    return FileView(ref.file_name, ref.size, ref.content_type, url)


def _record_links(
    session: Session, principal: Principal, test_id: int, user_id: int, events: list[review.TimelineEvent]
) -> None:
    """One ``attachment.link_issued`` entry for the evidence links of a rendered timeline
    (on S3 the store serves them itself: the issued link is the record). Uncommitted: the
    caller commits before the links leave."""
    attachment_ids = sorted({ref.content_item_id for item in events for ref in item.files})
    if not attachment_ids:
        return
    become_writer(session)
    details = {"userId": user_id, "attachmentIds": attachment_ids, "expires": format_dt(principal.expires_at)}
    record_by(
        session,
        principal,
        actions.ATTACHMENT_LINK_ISSUED,
        actions.OBJECT_CANDIDATE,
        user_id,
        test_id,
        details,
    )


def timeline_view(
    session: Session,
    store: ObjectStore,
    principal: Principal,
    test_id: int,
    user_id: int,
    *,
    event: str | None,
    flagged: bool,
) -> TimelineView:
    test = ingest.require_test(session, principal.tenant_id, test_id)
    timeline = review.candidate_timeline(session, test, user_id, event=event, flagged=flagged)
    if timeline is None:
        raise ingest.candidate_not_found(test_id, user_id)
    blocks: list[Block] = []
    gaps = iter(timeline.gaps)
    gap = next(gaps, None)
    current: Block | None = None
    flags = 0
    severities: dict[str, int] = {}
    for item in timeline.events:
        doc = item.doc
        flag = doc.get("flaggingInfo")
        level = review.severity_of(doc)
        if flag is not None:
            flags += 1
            severities[level or "unspecified"] = severities.get(level or "unspecified", 0) + 1
        # Gaps that ended before this event: close them (shown even when no event is inside).
        while gap is not None and gap.end_ms is not None and gap.end_ms < item.occurred_at_ms:
            if current is None:
                blocks.append(Block(gap=gap))
            current = None
            gap = next(gaps, None)
        inside = gap is not None and gap.start_ms <= item.occurred_at_ms
        view = EventView(
            event_id=str(doc["eventId"]),
            name=str(doc["event"]),
            time=str(doc["timeStamp"]),
            invigilator=doc.get("userId") is not None,
            by_user=doc.get("userId"),
            extra=doc.get("extraInfo"),
            flag=flag,
            severity=level,
            files=[_file_view(store, ref, principal.expires_at) for ref in item.files],
            in_gap=inside,
            received=format_ms(item.received_at_ms) if item.received_at_ms is not None else None,
        )
        if inside:
            if current is None:
                current = Block(gap=gap)
                blocks.append(current)
            current.gap_events.append(view)
        else:
            blocks.append(Block(event=view))
    while gap is not None:
        if current is None:
            blocks.append(Block(gap=gap))
        current = None
        gap = next(gaps, None)
    _record_links(session, principal, test.external_id, user_id, timeline.events)
    return TimelineView(
        test_id=test.external_id,
        title=test.title,
        user_id=user_id,
        candidate_id=timeline.candidate_id,
        blocks=blocks,
        shown=len(timeline.events),
        total=timeline.total,
        gaps=timeline.gaps,
        event_names=timeline.event_names,
        event=event,
        flagged=flagged,
        flags=flags,
        severities=severity_order(severities),
    )
