"""Export options: what an order asks for (filters, format, compression, ``since``).

Parsed from the order's query parameters (``exports.options``, the FastAPI side) into
:class:`ExportOptions`, normalised (sorted,
de-duplicated lists, UTC millisecond times) so that equal requests give equal canonical
JSON, stored on the job (``ExportJob.options``) and turned into the ingest read model's
``EventFilter`` when the job runs.

``since`` / ``nextSince`` cursors are opaque to clients: ``v1.`` + base64url of a small
JSON object naming the test and the snapshot's change mark (``ingest.read_model.ChangeMark``).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from examtrail.core.errors import Unprocessable
from examtrail.core.schemas import INT64_MAX, NO_CONTROL, Int64Id
from examtrail.core.timeutil import format_ms, to_epoch_ms
from examtrail.ingest.read_model import ChangeMark, EventFilter

_Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL)]
_MAX_VALUES = 1000
_CURSOR_PREFIX = "v1."
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


class ExportFormat(StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"


CONTENT_TYPES = {
    ExportFormat.JSON: "application/json",
    ExportFormat.JSONL: "application/x-ndjson",
    ExportFormat.CSV: "text/csv; charset=utf-8",
}
GZIP_CONTENT_TYPE = "application/gzip"


def content_type(fmt: str, compression: str) -> str:
    if compression == Compression.GZIP:
        return GZIP_CONTENT_TYPE
    return CONTENT_TYPES[ExportFormat(fmt)]


def file_suffix(fmt: str, compression: str) -> str:
    """``.json``, ``.jsonl``, ``.csv``, plus ``.gz`` when compressed."""
    return f".{fmt}" + (".gz" if compression == Compression.GZIP else "")


class ExportOptions(BaseModel):
    """The normalised options of an export (every field optional; none = the whole test as JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    userId: Annotated[list[Int64Id], Field(max_length=_MAX_VALUES)] = []
    candidateId: Annotated[list[_Text], Field(max_length=_MAX_VALUES)] = []
    event: Annotated[list[_Text], Field(max_length=_MAX_VALUES)] = []
    flagged: bool = False
    severityLevel: Annotated[list[_Text], Field(max_length=_MAX_VALUES)] = []
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    since: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    format: ExportFormat = ExportFormat.JSON
    compression: Compression = Compression.NONE
    pseudonymize: bool = False

    @field_validator("userId", "candidateId", "event", "severityLevel")
    @classmethod
    def _sorted_unique(cls, values: list[Any]) -> list[Any]:
        return sorted(set(values))

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        # Pydantic would also read "0.5" or "1700000000" as Unix times: only RFC 3339 with a zone.
        if isinstance(value, str) and not _RFC3339.match(value):
            raise ValueError("must be an RFC 3339 date-time with a zone, e.g. 2026-06-01T08:00:00Z")
        return value

    @field_validator("from_", "to")
    @classmethod
    def _utc_ms(cls, value: datetime | None) -> datetime | None:
        # Compared in UTC at the millisecond events are stored with, rounded up: an event at
        # .123 lies before from=.1235 (inclusive, so left out) and before to=.1235 (exclusive,
        # so kept).
        if value is None:
            return None
        try:
            utc = value.astimezone(UTC)
            rest = utc.microsecond % 1000
            return utc + timedelta(microseconds=1000 - rest) if rest else utc
        except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00: past year 9999 in UTC
            raise ValueError("out of range: the years 0001 to 9999 once converted to UTC") from None

    @model_validator(mode="after")
    def _window(self) -> ExportOptions:
        if self.from_ is not None and self.to is not None and self.from_ >= self.to:
            raise ValueError("'from' must be before 'to' (in whole milliseconds, as events are timed)")
        return self

    def public(self) -> dict[str, Any]:
        """The options as the status shows them (and as they are stored)."""
        return {
            "userId": list(self.userId),
            "candidateId": list(self.candidateId),
            "event": list(self.event),
            "flagged": self.flagged,
            "severityLevel": list(self.severityLevel),
            "from": format_ms(to_epoch_ms(self.from_)) if self.from_ else None,
            "to": format_ms(to_epoch_ms(self.to)) if self.to else None,
            "since": self.since,
            "format": self.format.value,
            "compression": self.compression.value,
            "pseudonymize": self.pseudonymize,
        }

    def canonical(self) -> str:
        """Canonical JSON: equal options give equal text (the job's ``options`` column).
        ``pseudonymize`` only when true: jobs stored before it existed keep matching."""
        public = self.public()
        if not self.pseudonymize:
            del public["pseudonymize"]
        return orjson.dumps(public, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_stored(cls, stored: str) -> ExportOptions:
        """The options of a stored job (``{}`` for jobs from before options existed)."""
        return cls.model_validate(orjson.loads(stored or "{}"))

    def event_filter(self, test_id: int) -> EventFilter:
        return EventFilter(
            user_ids=tuple(self.userId),
            candidate_ids=tuple(self.candidateId),
            events=tuple(self.event),
            flagged=self.flagged,
            severity_levels=tuple(self.severityLevel),
            from_ms=to_epoch_ms(self.from_) if self.from_ else None,
            to_ms=to_epoch_ms(self.to) if self.to else None,
            since=since_mark(self.since, test_id) if self.since else None,
        )


# --- cursors --------------------------------------------------------------------------


def encode_cursor(test_id: int, mark: ChangeMark) -> str:
    body: dict[str, Any] = {"t": test_id}
    if mark.seq is not None:
        body["s"] = mark.seq
    else:
        body["x"] = [mark.xmin, mark.xmax, list(mark.xip)]
    raw = base64.urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=").decode()
    return _CURSOR_PREFIX + raw


def decode_cursor(cursor: str) -> tuple[int, ChangeMark]:
    """``(testId, mark)`` of a cursor; ValueError when it is not one of ours."""
    if not cursor.startswith(_CURSOR_PREFIX):
        raise ValueError("not a cursor from an export's nextSince")
    raw = cursor[len(_CURSOR_PREFIX) :]
    try:
        body = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise ValueError("not a cursor from an export's nextSince") from None
    if not isinstance(body, dict) or not _is_int(body.get("t")):
        raise ValueError("not a cursor from an export's nextSince")
    if "s" in body and _is_int(body["s"]):
        return body["t"], ChangeMark(seq=body["s"])
    snap = body.get("x")
    if (
        isinstance(snap, list)
        and len(snap) == 3
        and _is_int(snap[0])
        and _is_int(snap[1])
        and isinstance(snap[2], list)
        and all(_is_int(x) for x in snap[2])
    ):
        return body["t"], ChangeMark(xmin=snap[0], xmax=snap[1], xip=tuple(snap[2]))
    raise ValueError("not a cursor from an export's nextSince")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT64_MAX


def since_mark(cursor: str, test_id: int) -> ChangeMark:
    """The mark of a ``since`` cursor of test ``test_id`` (422 naming ``since`` otherwise)."""
    try:
        cursor_test, mark = decode_cursor(cursor)
    except ValueError as exc:
        raise _since_error(str(exc)) from None
    if cursor_test != test_id:
        raise _since_error("the cursor belongs to another test")
    return mark


def check_since_dialect(mark: ChangeMark, dialect: str) -> None:
    """A cursor from a SQLite deployment means nothing to PostgreSQL, and back."""
    if (mark.seq is None) != (dialect == "postgresql"):
        raise _since_error("the cursor comes from another deployment")


def _since_error(message: str) -> Unprocessable:
    return Unprocessable(
        "The request is not valid.", details=[{"field": "since", "message": message, "type": "value_error"}]
    )


# --- query parameters -------------------------------------------------------------------

__all__ = [
    "CONTENT_TYPES",
    "Compression",
    "ExportFormat",
    "ExportOptions",
    "check_since_dialect",
    "content_type",
    "decode_cursor",
    "encode_cursor",
    "file_suffix",
    "since_mark",
]
