"""``is_ascii_digits`` and ``Int64Id``: integers written in ASCII digits, nothing looser."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from examtrail.core.schemas import INT64_MAX, Int64Id, int64_of, is_ascii_digits

# str.isdigit() takes each of these: superscripts and circled digits (int() refuses them) and
# Arabic-Indic or fullwidth digits (int() reads them as 12).
UNICODE_DIGITS = ["\u00b3", "\u2460", "1\u00b3", "\u0661\u0662", "\uff11\uff12"]
# Pydantic's lax mode reads each as 1001.
LOOSE = ["1001.0", "+1001", "1_001", " 1001", "1001 ", "1001\n", "1e3", "0x3e9", "-0"]


@pytest.mark.parametrize("text", ["0", "7", "1001", "0042", "9" * 30])
def test_ascii_digits(text: str) -> None:
    assert is_ascii_digits(text)


@pytest.mark.parametrize("text", UNICODE_DIGITS)
def test_digits_that_str_isdigit_takes_but_are_not_ascii_are_not(text: str) -> None:
    assert text.isdigit()
    assert not is_ascii_digits(text)


@pytest.mark.parametrize("text", ["", "-1", "a1", *LOOSE])
def test_anything_else_is_not(text: str) -> None:
    assert not is_ascii_digits(text)


INT64_ID = TypeAdapter(Int64Id)


@pytest.mark.parametrize(
    ("raw", "value"), [("1001", 1001), ("0042", 42), ("0", 0), (str(INT64_MAX), INT64_MAX), (1001, 1001)]
)
def test_an_int64_id_is_read_from_ascii_digits(raw: str | int, value: int) -> None:
    assert INT64_ID.validate_python(raw) == value


@pytest.mark.parametrize("raw", [*LOOSE, *UNICODE_DIGITS, "", "abc"])
def test_other_spellings_of_an_id_are_refused(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        INT64_ID.validate_python(raw)
    (error,) = caught.value.errors()
    assert error["type"] == "int_parsing"
    assert error["msg"] == "Input should be an integer written in ASCII digits only"


@pytest.mark.parametrize("raw", ["-1", str(INT64_MAX + 1), "9" * 5000])
def test_ids_outside_int64_are_refused(raw: str) -> None:
    with pytest.raises(ValidationError):
        INT64_ID.validate_python(raw)


def test_the_json_schema_is_a_bounded_integer() -> None:
    # The bounds are written as JSON Schema keywords (not pydantic's "ge"/"lt").
    assert INT64_ID.json_schema() == {"type": "integer", "minimum": 0, "exclusiveMaximum": 2**63}


def test_int64_of_reads_any_digits_within_int64() -> None:
    assert int64_of("0") == 0
    assert int64_of("0042") == 42
    assert int64_of(str(INT64_MAX)) == INT64_MAX
    assert int64_of("0" * 5000 + str(INT64_MAX)) == INT64_MAX  # int() refuses past 4,300 digits
    assert int64_of(str(INT64_MAX + 1)) is None
    assert int64_of("9" * 19) is None
    assert int64_of("9" * 5000) is None
    for text in ["", "-1", "1.0", *UNICODE_DIGITS]:
        assert int64_of(text) is None, text
