"""The ``Range`` header of the local store's downloads, read as RFC 9110 §14 says.

Starlette's ``FileResponse`` parses ranges itself, loosely (``int()`` takes ``+5``, ``1_0`` and
non-ASCII digits; a range-set with one unsatisfiable range among good ones is a 416; an
unknown range unit is a 400, where the RFC says it MUST be ignored) and answers its errors in
``text/plain``. ``parse_range`` decides instead, and its errors are the API's JSON errors.
"""

from __future__ import annotations

import re

from examtrail.core.errors import AppError, BadRequest

# Past this many ranges the header is ignored and the whole file served (RFC 9110 §14.2 lets a
# server ignore a set of many small ranges; Starlette's own limit).
MAX_RANGES = 100
# First and last positions longer than this are past the end of any file (and int() refuses
# strings of more than 4,300 digits).
_MAX_DIGITS = 19
_BEYOND = 10**_MAX_DIGITS
_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_OWS = " \t"

Ranges = list[tuple[int, int]]


class InvalidRange(BadRequest):
    code = "invalid_range"


class RangeNotSatisfiable(AppError):
    status_code = 416
    code = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(
            f"No range of the Range header starts within the file ({size} bytes).",
            headers={"Content-Range": f"bytes */{size}"},
        )


def _magnitude(digits: str) -> tuple[int, str]:
    """Orders digit strings as the numbers they write, however long (no int() of them)."""
    digits = digits.lstrip("0") or "0"
    return len(digits), digits


def _position(digits: str) -> int:
    length, digits = _magnitude(digits)
    return int(digits) if length <= _MAX_DIGITS else _BEYOND


def parse_range(header: str, size: int) -> Ranges | None:
    """The byte ranges to serve of a file of ``size`` bytes, as ``(start, end)`` with ``end``
    exclusive; None to ignore the header and serve the whole file.

    A header that is not a ranges-specifier, or a ``bytes`` range-set with a range that is not
    ``first-last``, ``first-`` or ``-suffix`` (or whose last position is before its first), is
    an ``InvalidRange`` (400). RFC 9110 §14.2 lets a server ignore or reject an invalid one: it
    is rejected because a client sends Range to resume or split a download, and one whose
    header is broken is better told so than sent the whole file as a 200, which a client that
    only checks for errors would append to what it already has. A range unit other than
    ``bytes`` is ignored (the RFC's MUST). When no range starts within the file:
    ``RangeNotSatisfiable`` (416, ``Content-Range: bytes */size``).
    """
    unit, equals, range_set = header.partition("=")
    unit = unit.strip(_OWS)
    if not equals or not _TOKEN.fullmatch(unit):
        raise InvalidRange("The Range header is not of the form `bytes=first-last, ...`.")
    if unit.lower() != "bytes":
        return None
    # The list rule (RFC 9110 §5.6.1): whitespace around commas, empty elements ignored.
    specs = [spec for part in range_set.split(",") if (spec := part.strip(_OWS))]
    if not specs:
        raise InvalidRange("The Range header names no range.")
    if len(specs) > MAX_RANGES:
        return None
    ranges: Ranges = []
    suffix_of_empty = False
    for spec in specs:
        match = _SPEC.fullmatch(spec)
        if match is None or match.group(0) == "-":
            raise InvalidRange(f"The range {spec[:40]!r} is not `first-last`, `first-` or `-suffix`.")
        first, last = match.groups()
        if first:
            if last and _magnitude(last) < _magnitude(first):
                raise InvalidRange(f"The range {spec[:40]!r} ends before it starts.")
            start = _position(first)
            end = _position(last) + 1 if last else size
        else:
            suffix = _position(last)
            suffix_of_empty = suffix_of_empty or (suffix > 0 and size == 0)
            start = max(size - suffix, 0) if suffix > 0 else size
            end = size
        if start < size:
            ranges.append((start, min(end, size)))
    if not ranges:
        # An empty file's only satisfiable range is a non-empty suffix (RFC 9110 §14.1.1), which
        # no Content-Range can express: the whole (empty) file is served.
        if suffix_of_empty:
            return None
        raise RangeNotSatisfiable(size)
    return _coalesced(ranges)


def _coalesced(ranges: Ranges) -> Ranges:
    """The ranges in the order asked, unless some overlap or touch: then merged, in file order."""
    ordered = sorted(ranges)
    merged = [ordered[0]]
    for start, end in ordered[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    return ranges if len(merged) == len(ranges) else merged
