"""Shared building blocks of request and response bodies."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

# Ids that clients choose (testId, userId) are JSON integers within int64.
INT64_MAX = 2**63 - 1


def is_ascii_digits(value: str) -> bool:
    """Whether ``value`` is one or more ASCII digits 0-9, nothing else.

    Not ``str.isdigit()`` alone: it also takes Unicode digits such as "³" or "①", which ``int()``
    refuses (a ValueError: a 500 when unguarded), and others (Arabic-Indic, fullwidth) that
    ``int()`` reads as numbers the client never wrote in ASCII."""
    return value.isascii() and value.isdigit()


def int64_of(value: str) -> int | None:
    """The int64 id that ``value`` writes in ASCII digits (leading zeros allowed: "0042" is 42),
    or None when it is not one (other characters, or over ``INT64_MAX``: compared as digits first,
    since ``int()`` refuses, a ValueError, past 4,300 digits)."""
    if not is_ascii_digits(value):
        return None
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(INT64_MAX)):
        return None
    number = int(digits)
    return number if number <= INT64_MAX else None


def _ascii_digits_only(value: object) -> object:
    # Pydantic's lax mode reads "1001.0", "+1001", "1_001" and " 1001" as 1001.
    if isinstance(value, str) and not is_ascii_digits(value):
        raise PydanticCustomError("int_parsing", "Input should be an integer written in ASCII digits only")
    return value


# An int64 id in a path or a query string (testId, userId): ASCII digits only, leading zeros
# allowed ("0042" is 42, as ``core.fastpath.int64_param`` reads it); anything else is a 422. Its
# JSON schema is an integer, minimum 0, exclusiveMaximum 2**63 (exact as a float, unlike 2**63 - 1).
# The bounds come before the validator: after it, pydantic would enforce them but write them into
# the schema as "ge"/"lt" instead of "minimum"/"exclusiveMaximum" (so Path/Query add none).
ASCII_DIGITS = BeforeValidator(_ascii_digits_only)
Int64Id = Annotated[int, Field(ge=0, lt=INT64_MAX + 1), ASCII_DIGITS]
# Any other integer in a query (page sizes, offsets, a link's expiry) is read alike, its bounds
# beside it: ``Annotated[int, Field(ge=1, le=200), ASCII_DIGITS, Query(...)]``.

# Ids and search text in paths and queries (job, subscription and delivery ids, `q`): no control
# characters. None is ever stored, and PostgreSQL cannot even compare a text holding NUL (a query
# with one fails instead of finding nothing): such input is a 422 before it reaches the database.
# The control characters every input check refuses, as a regex character-class body: C0 and DEL.
# The one definition behind ``NO_CONTROL``, the file-name check and the patterns in ingest.schemas
# (the OpenAPI patterns say exactly this). C1 (U+0080-U+009F) has always been accepted, so stored
# names and text may hold it: whatever signs or renders them must take it (storage.signing does).
CONTROL_CHARS = r"\x00-\x1f\x7f"
NO_CONTROL = rf"^[^{CONTROL_CHARS}]+$"
NO_CONTROL_OR_EMPTY = rf"^[^{CONTROL_CHARS}]*$"
# Where ``NO_CONTROL`` is checked by hand (a fast path, a validator with its own message).
has_control = re.compile(f"[{CONTROL_CHARS}]").search

# UTC RFC 3339 with milliseconds and ``Z`` (see ``core.timeutil.format_dt``), documented as such.
Timestamp = Annotated[
    str,
    Field(
        json_schema_extra={"format": "date-time"},
        examples=["2026-06-01T09:25:00.000Z"],
    ),
]


class ErrorDetail(BaseModel):
    """One problem with the request: which item (``index``) and ``field``, and what is wrong.

    Some errors add their own keys (``subscriptionId`` of the existing subscription, …)."""

    model_config = ConfigDict(extra="allow")

    message: str | None = None
    type: str | None = None
    index: int | None = Field(default=None, description="The item of a batch (0-based)")
    field: str | None = Field(default=None, description="The field, dotted for nested ones")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: a machine-readable code, a sentence, and the details."""

    error: str = Field(description="Machine-readable error code (see each response for the codes)")
    message: str = Field(description="What went wrong, for people")
    details: list[ErrorDetail] = Field(description="Per-item or per-field problems; may be empty")
