"""UTC timestamps as the export format wants them: RFC 3339, milliseconds, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_ms(value: datetime) -> int:
    delta = value.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def format_ms(ms: int) -> str:
    """Always a four-digit year (``strftime("%Y")`` drops the zeros before year 1000)."""
    seconds, millis = divmod(ms, 1000)
    t = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{millis:03d}Z"


def format_dt(value: datetime | None) -> str | None:
    if value is None:
        return None
    return format_ms(to_epoch_ms(value))
