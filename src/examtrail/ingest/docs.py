"""The stored form of an event: its final export JSON, serialised once at ingestion.

Every stored doc holds the marker ``EMPTY_FILES`` exactly once; an export splices the
event's attachments in at its place (``with_attachments``). This module is the only
place that knows the doc's layout: exports and the benchmark generator call it.
"""

from __future__ import annotations

from typing import Any

import orjson

from examtrail.core.timeutil import format_ms

EMPTY_FILES = '"attachedFiles":[]'
_FILES_PREFIX = '"attachedFiles":'


class TimestampFormatter:
    """``format_ms`` with each minute's prefix cached: the same text at a fraction of the cost."""

    __slots__ = ("_limit", "_minutes")

    def __init__(self, limit: int = 100_000) -> None:
        self._minutes: dict[int, str] = {}
        self._limit = limit

    def __call__(self, ms: int) -> str:
        minute, rest = divmod(ms, 60_000)
        prefix = self._minutes.get(minute)
        if prefix is None:
            if len(self._minutes) >= self._limit:
                self._minutes.clear()
            prefix = self._minutes[minute] = format_ms(minute * 60_000)[:-7]
        seconds, millis = divmod(rest, 1000)
        return f"{prefix}{seconds:02d}.{millis:03d}Z"


_format_timestamp = TimestampFormatter()


def build_doc(
    event_id: str,
    event: str,
    occurred_at_ms: int,
    extra_info: dict[str, Any] | None,
    flagging_info: dict[str, Any] | None,
    user_id: int | None,
    *,
    timestamp: TimestampFormatter = _format_timestamp,
) -> str:
    """The event as the export file shows it (keys in the seed's order)."""
    return orjson.dumps(
        {
            "eventId": event_id,
            "event": event,
            "timeStamp": timestamp(occurred_at_ms),
            "extraInfo": extra_info,
            "flaggingInfo": flagging_info,
            "attachedFiles": [],
            "userId": user_id,
        }
    ).decode()


def with_attachments(doc: str, files_json: str) -> str:
    """``doc`` with its empty attachment list replaced by ``files_json`` (a JSON array)."""
    head, _, tail = doc.rpartition(EMPTY_FILES)
    return head + _FILES_PREFIX + files_json + tail
