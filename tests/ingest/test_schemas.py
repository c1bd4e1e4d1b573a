"""The OpenAPI schemas of ingest's inputs say what the server accepts."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from examtrail.ingest.schemas import FileName

NAMES = [
    "shot.png",
    ".hidden",
    "a.b.c",
    "ünïcödé 1.jpg",
    "x" * 255,
    ".",
    "..",
    "a..b",
    "a/b",
    "a\\b",
    "tab\there",
    "del\x7f",
    "c1\x85",
    "",
]


@pytest.mark.parametrize("name", NAMES)
def test_the_documented_file_name_pattern_matches_the_check(name: str) -> None:
    adapter = TypeAdapter(FileName)
    schema = adapter.json_schema()
    documented = bool(
        schema["minLength"] <= len(name) <= schema["maxLength"] and re.search(schema["pattern"], name)
    )
    try:
        adapter.validate_python(name)
        accepted = True
    except ValidationError:
        accepted = False
    assert documented == accepted
