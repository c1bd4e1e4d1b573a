"""Request and response bodies for ingestion. Strict: unknown fields and wrong types are errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NotRequired

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from typing_extensions import TypedDict

from examtrail.core.schemas import (
    CONTROL_CHARS,
    INT64_MAX,
    NO_CONTROL,
    NO_CONTROL_OR_EMPTY,
    Timestamp,
    has_control,
)
from examtrail.core.timeutil import to_epoch_ms


def _integral(value: object) -> object:
    # JSON Schema's "integer" includes 3.0: accept it as 3 (never 3.5, nor "3").
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# exclusiveMaximum 2**63 in the schema: exact as a float, unlike 2**63 - 1 (generators compare floats).
Int64 = Annotated[int, Field(ge=0, lt=INT64_MAX + 1), BeforeValidator(_integral)]
# Printable text: no control characters (they break CSV exports and log lines).
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL)]
ShortText = Annotated[str, StringConstraints(max_length=200, pattern=NO_CONTROL_OR_EMPTY)]
# Free text keeps tabs and line breaks; NUL and other control characters are refused
# everywhere (PostgreSQL cannot store NUL: both deployments answer 422 alike).
LongText = Annotated[
    str, StringConstraints(max_length=10_000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
]
Title = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]

# Event times are stored as UTC milliseconds and exported with four-digit years.
MIN_YEAR, MAX_YEAR = 1970, 2999


def _utc_in_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(f"the time must lie in the years {MIN_YEAR} to {MAX_YEAR} once converted to UTC")
    return utc


EventTime = Annotated[
    AwareDatetime,
    AfterValidator(_utc_in_range),
    Field(description=f"RFC 3339 with a zone; the years {MIN_YEAR} to {MAX_YEAR} once converted to UTC"),
]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


MAX_FILE_NAME_BYTES = 255


def check_file_name(value: str) -> str:
    """A file name, not a path: clear messages instead of a pattern dump."""
    if not value:
        raise ValueError("the file name is empty")
    if len(value.encode()) > MAX_FILE_NAME_BYTES:
        raise ValueError(f"the file name is longer than {MAX_FILE_NAME_BYTES} bytes (UTF-8)")
    if "/" in value or "\\" in value:
        raise ValueError("the file name cannot contain '/' or '\\' (a name, not a path)")
    if ".." in value or value == ".":
        raise ValueError("the file name cannot be '.' or contain '..'")
    if has_control(value):
        raise ValueError("the file name cannot contain control characters")
    return value


FileName = Annotated[
    str,
    AfterValidator(check_file_name),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_FILE_NAME_BYTES,
            "pattern": rf"^(?!\.$)(?!.*\.\.)[^/\\{CONTROL_CHARS}]+$",
            "description": "A file name of at most 255 bytes (UTF-8): "
            "not '.', and no '/', '\\', '..' or control characters",
        }
    ),
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


# Not blank, no control characters.
_TITLE = rf"^[^{CONTROL_CHARS}]*[^\s{CONTROL_CHARS}][^{CONTROL_CHARS}]*$"


class TestIn(StrictModel):
    __test__ = False
    title: Annotated[
        str,
        StringConstraints(min_length=1, max_length=500, pattern=_TITLE),
    ] = Field(description="The test's title: required, not blank, no control characters")


class TestOut(BaseModel):
    __test__ = False
    testId: int
    title: str
    candidates: int
    events: int
    created: Timestamp
    updated: Timestamp


class TestSummary(BaseModel):
    __test__ = False
    testId: int
    title: str
    candidates: int
    events: int
    flags: int = Field(description="Events carrying flaggingInfo")
    lastEvent: str | None = Field(description="timeStamp of the test's latest event")
    created: str
    updated: str


class TestsPage(BaseModel):
    tests: list[TestSummary]
    nextAfter: int | None = Field(
        description="Pass as `after` for the next page; null on the last page", default=None
    )


class CandidateIn(StrictModel):
    userId: Int64
    candidateId: Name


class CandidatesResult(BaseModel):
    received: int
    created: int
    updated: int


class ExtraInfo(StrictModel):
    type: ShortText
    value: LongText


class FlaggingInfo(StrictModel):
    flagType: Name
    flagSubTypes: Annotated[list[ShortText], Field(max_length=50)] = []
    comment: LongText | None = None
    severityLevel: ShortText | None = None


class EventIn(StrictModel):
    eventId: EventId | None = None
    event: Name
    timeStamp: EventTime
    extraInfo: ExtraInfo | None = None
    flaggingInfo: FlaggingInfo | None = None
    userId: Int64 | None = None


# --- the fast path of batch validation ------------------------------------------------------
#
# ``EventIn`` calls Python for every event (the UTC range check, int64 floats) and builds three
# model objects per event. A batch is first validated against the same rules in plain dicts with
# no Python validators; the range check then runs on the event times in milliseconds, which the
# insert needs anyway. The fast path accepts a subset of what ``EventIn`` accepts (an int64 sent
# as 3.0 is not in it) and yields the same values: whenever it refuses, the caller validates the
# body with ``EventIn`` again, whose answer (and 4xx) is the only one a client ever sees.

_STRICT_DICT = ConfigDict(extra="forbid", strict=True)
_StrictInt64 = Annotated[int, Field(ge=0, lt=INT64_MAX + 1)]
# The first instant outside MIN_YEAR..MAX_YEAR, in ms since the epoch (= MIN_YEAR).
_END_MS = to_epoch_ms(datetime(MAX_YEAR + 1, 1, 1, tzinfo=UTC))


class _ExtraInfoDict(TypedDict):
    __pydantic_config__ = _STRICT_DICT  # type: ignore[misc]
    type: ShortText
    value: LongText


class _FlaggingInfoDict(TypedDict):
    __pydantic_config__ = _STRICT_DICT  # type: ignore[misc]
    flagType: Name
    flagSubTypes: NotRequired[Annotated[list[ShortText], Field(max_length=50)]]
    comment: NotRequired[LongText | None]
    severityLevel: NotRequired[ShortText | None]


class EventDict(TypedDict):
    """An event of a batch as the fast path validated it (optional keys may be absent)."""

    __pydantic_config__ = _STRICT_DICT  # type: ignore[misc]
    eventId: NotRequired[EventId | None]
    event: Name
    timeStamp: AwareDatetime
    extraInfo: NotRequired[_ExtraInfoDict | None]
    flaggingInfo: NotRequired[_FlaggingInfoDict | None]
    userId: NotRequired[_StrictInt64 | None]


_fast_events = TypeAdapter(list[EventDict])


@dataclass(frozen=True, slots=True, repr=False)
class EventBatch:
    """Validated events as dicts, and each one's time in UTC milliseconds."""

    events: Sequence[EventDict]
    occurred_ms: Sequence[int]

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        # Never the events themselves: a batch is up to 10,000 of them (logs, asyncio task reprs).
        return f"EventBatch({len(self.events)} events)"

    @classmethod
    def of(cls, events: Sequence[EventIn]) -> EventBatch:
        """Events validated by ``EventIn`` in the same form."""
        dicts: list[Any] = [event.model_dump() for event in events]
        return cls(dicts, [to_epoch_ms(event.timeStamp) for event in events])


def parse_batch(raw: bytes, max_events: int) -> EventBatch | None:
    """A JSON array of 1 to ``max_events`` valid events, or None: then validate ``raw`` with
    ``EventIn`` for the answer (it may still be valid, or the precise errors)."""
    try:
        events = _fast_events.validate_json(raw)
    except ValidationError:
        return None
    if not 1 <= len(events) <= max_events:
        return None
    return _in_range(events)


_fast_event = TypeAdapter(EventDict)


def parse_event(raw: bytes) -> EventBatch | None:
    """One valid event (a JSON object) as a batch of one, or None: then validate ``raw`` with
    ``EventIn`` (as :func:`parse_batch`). Live exam clients send one event per request."""
    try:
        event = _fast_event.validate_json(raw)
    except ValidationError:
        return None
    return _in_range([event])


def _in_range(events: list[EventDict]) -> EventBatch | None:
    """The batch of ``events`` with their times in ms, or None if one lies outside the years."""
    occurred: list[int] = []
    append = occurred.append
    try:
        for event in events:
            ms = to_epoch_ms(event["timeStamp"])
            if not 0 <= ms < _END_MS:
                return None
            append(ms)
    except (OverflowError, ValueError):
        return None
    return EventBatch(events, occurred)


class EventsResult(BaseModel):
    received: int
    created: int
    duplicates: int
    eventIds: list[str]


class AttachmentOut(BaseModel):
    fileName: str
    contentItemId: int
    fileSize: int
    sha256: str
    contentType: str
