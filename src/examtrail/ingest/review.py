"""Reading a test for people: per-candidate summaries and one candidate's timeline.

The review pages (``examtrail.ui``) read ingest's tables only through these functions.
Every query is bounded: summaries are computed for one page of candidates at a time,
and a timeline is one candidate's events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from sqlalchemy import ColumnElement, Select, case, exists, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from examtrail.core.db import contains_folded
from examtrail.core.schemas import int64_of
from examtrail.ingest.models import Attachment, Candidate, Event, Test
from examtrail.ingest.read_model import AttachmentRef

NETWORK_LOST = "network_lost"
NETWORK_RESTORED = "network_restored"
SUBMITTED = "submitted"
PAGE_SIZE = 50

SortKey = Literal["userId", "candidateId", "events", "flags"]
SORT_KEYS: tuple[SortKey, ...] = ("userId", "candidateId", "events", "flags")


@dataclass(frozen=True, slots=True)
class Gap:
    """A network outage: ``network_lost`` until the next ``network_restored`` (None: never)."""

    start_ms: int
    end_ms: int | None

    @property
    def duration_ms(self) -> int | None:
        return None if self.end_ms is None else self.end_ms - self.start_ms


def network_gaps(events: Iterable[tuple[str, int]]) -> list[Gap]:
    """The outages in ``(event name, time ms)`` pairs given in time order."""
    gaps: list[Gap] = []
    opened: int | None = None
    for name, at in events:
        if name == NETWORK_LOST and opened is None:
            opened = at
        elif name == NETWORK_RESTORED and opened is not None:
            gaps.append(Gap(opened, at))
            opened = None
    if opened is not None:
        gaps.append(Gap(opened, None))
    return gaps


def severity_of(doc: dict[str, Any]) -> str | None:
    info = doc.get("flaggingInfo")
    if not isinstance(info, dict):
        return None
    level = info.get("severityLevel")
    return str(level) if level else None


@dataclass(slots=True)
class CandidateSummary:
    pk: int
    user_id: int
    candidate_id: str
    events: int = 0
    flags: int = 0
    submitted: bool = False
    severities: Counter[str] = field(default_factory=Counter)
    # The length of the gaps that ended; ``network_open``: the last one never did.
    network_lost_ms: int = 0
    gaps: int = 0
    network_open: bool = False


@dataclass(frozen=True, slots=True)
class CandidatesPage:
    total: int
    offset: int
    limit: int
    candidates: list[CandidateSummary]


@dataclass(frozen=True, slots=True)
class TestTotals:
    __test__ = False
    candidates: int
    events: int
    flags: int
    severities: Counter[str]
    event_names: list[str]


def test_totals(session: Session, test: Test) -> TestTotals:
    candidates = session.scalar(select(func.count()).where(Candidate.test_pk == test.id)) or 0
    names = session.execute(
        select(Event.event, func.count()).where(Event.test_pk == test.id).group_by(Event.event)
    ).all()
    severities: Counter[str] = Counter()
    flags = 0
    for (doc,) in session.execute(
        select(Event.doc).where(Event.test_pk == test.id, Event.flag_type.is_not(None))
    ):
        flags += 1
        severities[severity_of(orjson.loads(doc)) or "unspecified"] += 1
    return TestTotals(
        candidates=candidates,
        events=sum(count for _, count in names),
        flags=flags,
        severities=severities,
        event_names=sorted(name for name, _ in names),
    )


def _severity_marker(severity: str) -> str:
    # Stored docs are compact JSON: the pair appears verbatim only as the real field (a
    # comment quoting it would have its quotes escaped).
    return '"severityLevel":' + orjson.dumps(severity).decode()


def _holds(session: Session, column: InstrumentedAttribute[str], fragment: str) -> ColumnElement[bool]:
    """``fragment`` occurs in ``column`` exactly. SQLite's LIKE ignores the case of ASCII
    letters (PostgreSQL's does not): "high" would also find "High" there, so ``instr``."""
    if session.get_bind().dialect.name == "postgresql":
        return column.contains(fragment, autoescape=True)
    return func.instr(column, fragment) > 0


def candidates_page(
    session: Session,
    test: Test,
    *,
    sort: SortKey = "userId",
    descending: bool = False,
    flagged: bool = False,
    severity: str | None = None,
    event: str | None = None,
    candidate: str | None = None,
    offset: int = 0,
    limit: int = PAGE_SIZE,
) -> CandidatesPage:
    """One page of the test's candidates with their counts, filtered and sorted."""
    conditions: list[ColumnElement[bool]] = [Candidate.test_pk == test.id]
    if severity:
        conditions.append(
            exists().where(
                Event.candidate_pk == Candidate.id,
                Event.flag_type.is_not(None),
                _holds(session, Event.doc, _severity_marker(severity)),
            )
        )
    if event:
        conditions.append(exists().where(Event.candidate_pk == Candidate.id, Event.event == event))
    if candidate:
        match = contains_folded(Candidate.candidate_id, candidate)
        user_id = int64_of(candidate)
        if user_id is not None:
            match = match | (Candidate.user_id == user_id)
        conditions.append(match)
    if flagged:
        conditions.append(exists().where(Event.candidate_pk == Candidate.id, Event.flag_type.is_not(None)))

    total = session.scalar(select(func.count()).select_from(Candidate).where(*conditions)) or 0
    stmt: Select[int, int, str]
    if sort in ("events", "flags"):
        # Sorting by a count needs the counts of every candidate of the test.
        counts = (
            select(
                Event.candidate_pk.label("pk"),
                func.count().label("events"),
                func.count(Event.flag_type).label("flags"),
            )
            .where(Event.test_pk == test.id)
            .group_by(Event.candidate_pk)
            .subquery()
        )
        key = func.coalesce(counts.c.events if sort == "events" else counts.c.flags, 0)
        stmt = (
            select(Candidate.id, Candidate.user_id, Candidate.candidate_id)
            .outerjoin(counts, counts.c.pk == Candidate.id)
            .where(*conditions)
            .order_by(key.desc() if descending else key, Candidate.user_id)
        )
    else:
        column = Candidate.user_id if sort == "userId" else Candidate.candidate_id
        stmt = (
            select(Candidate.id, Candidate.user_id, Candidate.candidate_id)
            .where(*conditions)
            .order_by(column.desc() if descending else column, Candidate.user_id)
        )
    rows = session.execute(stmt.offset(offset).limit(limit)).all()
    summaries = [CandidateSummary(pk, user_id, candidate_id) for pk, user_id, candidate_id in rows]
    _fill_counts(session, summaries)
    return CandidatesPage(total=total, offset=offset, limit=limit, candidates=summaries)


def _fill_counts(session: Session, summaries: Sequence[CandidateSummary]) -> None:
    by_pk = {summary.pk: summary for summary in summaries}
    if not by_pk:
        return
    pks = list(by_pk)
    for pk, events, flags, submitted in session.execute(
        select(
            Event.candidate_pk,
            func.count(),
            func.count(Event.flag_type),
            func.max(case((Event.event == SUBMITTED, 1), else_=0)),
        )
        .where(Event.candidate_pk.in_(pks))
        .group_by(Event.candidate_pk)
    ):
        summary = by_pk[pk]
        summary.events, summary.flags, summary.submitted = events, flags, bool(submitted)
    for pk, doc in session.execute(
        select(Event.candidate_pk, Event.doc).where(Event.candidate_pk.in_(pks), Event.flag_type.is_not(None))
    ):
        by_pk[pk].severities[severity_of(orjson.loads(doc)) or "unspecified"] += 1
    network: dict[int, list[tuple[str, int]]] = {}
    for pk, name, at in session.execute(
        select(Event.candidate_pk, Event.event, Event.occurred_at_ms)
        .where(Event.candidate_pk.in_(pks), Event.event.in_((NETWORK_LOST, NETWORK_RESTORED)))
        .order_by(Event.candidate_pk, Event.occurred_at_ms, Event.event_id)
    ):
        network.setdefault(pk, []).append((name, at))
    for pk, pairs in network.items():
        gaps = network_gaps(pairs)
        by_pk[pk].gaps = len(gaps)
        by_pk[pk].network_lost_ms = sum(gap.duration_ms or 0 for gap in gaps)
        by_pk[pk].network_open = any(gap.end_ms is None for gap in gaps)


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    doc: dict[str, Any]
    occurred_at_ms: int
    files: list[AttachmentRef]
    # The server's receipt time (UTC ms); None for events stored without one.
    received_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Timeline:
    user_id: int
    candidate_id: str
    events: list[TimelineEvent]
    gaps: list[Gap]
    event_names: list[str]
    total: int


def candidate_timeline(
    session: Session, test: Test, user_id: int, *, event: str | None = None, flagged: bool = False
) -> Timeline | None:
    """Every event of one candidate in time order (then ``eventId``), with its files;
    None when the test has no such candidate. The network gaps come from every event,
    whatever the filters."""
    row = session.execute(
        select(Candidate.id, Candidate.candidate_id).where(
            Candidate.test_pk == test.id, Candidate.user_id == user_id
        )
    ).one_or_none()
    if row is None:
        return None
    candidate_pk, candidate_id = row
    files: dict[int, list[AttachmentRef]] = {}
    for event_pk, item_id, name, size, key, ctype in session.execute(
        select(
            Attachment.event_pk,
            Attachment.id,
            Attachment.file_name,
            Attachment.size,
            Attachment.storage_key,
            Attachment.content_type,
        )
        .join(Event, Event.id == Attachment.event_pk)
        .where(Event.candidate_pk == candidate_pk)
        .order_by(Attachment.file_name)
    ):
        files.setdefault(event_pk, []).append(AttachmentRef(item_id, name, size, key, ctype))
    rows = session.execute(
        select(Event.id, Event.event, Event.occurred_at_ms, Event.flag_type, Event.doc, Event.received_at)
        .where(Event.candidate_pk == candidate_pk)
        .order_by(Event.occurred_at_ms, Event.event_id)
    ).all()
    gaps = network_gaps((name, at) for _, name, at, _, _, _ in rows)
    names = sorted({name for _, name, _, _, _, _ in rows})
    events = [
        TimelineEvent(orjson.loads(doc), at, files.get(pk, []), received)
        for pk, name, at, flag_type, doc, received in rows
        if (event is None or name == event) and (not flagged or flag_type is not None)
    ]
    return Timeline(user_id, candidate_id, events, gaps, names, len(rows))
