"""``is_ascii_digits``: integers written in ASCII digits, nothing looser."""

from __future__ import annotations

import pytest

from examtrail.core.schemas import is_ascii_digits

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
