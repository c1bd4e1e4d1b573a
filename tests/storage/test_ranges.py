"""``parse_range``: the Range header read as RFC 9110 §14 says, for a file of 10 bytes unless told."""

from __future__ import annotations

import pytest

from examtrail.storage.ranges import MAX_RANGES, InvalidRange, RangeNotSatisfiable, Ranges, parse_range

HUGE = "9" * 5000  # int() refuses more than 4,300 digits


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", [(0, 1)]),
        ("bytes=0-9", [(0, 10)]),
        ("bytes=2-100", [(2, 10)]),  # cut at the end
        ("bytes=5-", [(5, 10)]),
        ("bytes=-5", [(5, 10)]),
        ("bytes=-100", [(0, 10)]),
        ("bytes=0-1,5-6", [(0, 2), (5, 7)]),
        ("bytes=5-6,0-1", [(5, 7), (0, 2)]),  # the order asked
        ("bytes=0-4,3-6", [(0, 7)]),  # overlapping: merged
        ("bytes=6-7,0-1,2-3", [(0, 4), (6, 8)]),  # touching: merged, in file order
        ("bytes=0-1,100-200", [(0, 2)]),  # an unsatisfiable range among good ones is dropped
        ("bytes=0-1,-0", [(0, 2)]),
        ("BYTES=0-1", [(0, 2)]),  # the unit is case-insensitive
        ("bytes = 0-1 , 3-4", [(0, 2), (3, 5)]),
        ("bytes=0-1,,", [(0, 2)]),  # empty list elements are ignored
        ("bytes=007-008", [(7, 9)]),
        (f"bytes=0-{HUGE}", [(0, 10)]),
        (f"bytes=-{HUGE}", [(0, 10)]),
        ("items=0-5", None),  # an unknown unit is ignored
        ("bytes=" + ",".join(["0-0"] * (MAX_RANGES + 1)), None),
    ],
)
def test_ranges(header: str, expected: Ranges | None) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes",
        "0-5",
        "bytes=",
        "bytes=,",
        "bytes=-",
        "bytes=abc",
        "bytes=5-3",  # ends before it starts
        "bytes=+1-2",
        "bytes=1_0-20",
        "bytes=--5",
        "bytes=0--1",
        "bytes=0-1,x",
        "bytes=0 - 1",
        "bytes=0-1-2",
        "by tes=0-1",
        "=0-1",
        f"bytes={HUGE}-1",
        f"bytes={'9' * 25}-{'9' * 21}",  # both past the end of any file, still backwards
        "bytes=0010-009",  # leading zeros do not change the order
    ],
)
def test_malformed_is_invalid_range(header: str) -> None:
    with pytest.raises(InvalidRange) as raised:
        parse_range(header, 10)
    assert raised.value.status_code == 400
    assert raised.value.code == "invalid_range"


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),
        ("bytes=10-20", 10),
        ("bytes=100-200,50-", 10),
        ("bytes=-0", 10),
        (f"bytes={HUGE}-", 10),
        ("bytes=0-0", 0),
        ("bytes=0-", 0),
        ("bytes=-0", 0),
    ],
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as raised:
        parse_range(header, size)
    assert raised.value.status_code == 416
    assert raised.value.code == "range_not_satisfiable"
    assert raised.value.headers == {"Content-Range": f"bytes */{size}"}


def test_a_suffix_of_an_empty_file_serves_it_whole() -> None:
    # Satisfiable (RFC 9110 §14.1.1), but no Content-Range can say "0 bytes of 0".
    assert parse_range("bytes=-5", 0) is None
    assert parse_range("bytes=0-0,-5", 0) is None
