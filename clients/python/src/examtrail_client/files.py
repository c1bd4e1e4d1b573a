"""Streaming readers for export files (seed JSON and JSON Lines), gzip-compressed or not.

Nothing here loads a whole file: the seed-format reader walks the document's structure and
decodes one event object at a time, so memory stays flat whatever the file's size.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from examtrail_client.models import Candidate

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"
_CHUNK = 1 << 16
MAX_VALUE_CHARS = 64 * 1024 * 1024  # one event (or other value) larger than this is refused


def open_text(path: str | Path) -> IO[str]:
    """Opens ``path`` as UTF-8 text (a BOM is skipped), transparently gunzipping ``.gz`` files."""
    with Path(path).open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return Path(path).open(encoding="utf-8-sig", newline="")


class _Scanner:
    """A pull tokenizer over a text stream: enough JSON structure to walk an export file."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.buf = ""
        self.pos = 0
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.stream.read(_CHUNK)
        if not data:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def peek(self) -> str:
        while True:
            buf, pos, end = self.buf, self.pos, len(self.buf)
            while pos < end and buf[pos] in _WHITESPACE:
                pos += 1
            self.pos = pos
            if pos < end:
                return buf[pos]
            if not self._fill():
                return ""

    def expect(self, chars: str) -> str:
        char = self.peek()
        if not char or char not in chars:
            found = repr(char) if char else "end of file"
            raise ValueError(f"not an export file: expected one of {chars!r}, found {found}")
        self.pos += 1
        return char

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if len(self.buf) - self.pos > MAX_VALUE_CHARS:
                    raise ValueError(f"not an export file: {exc.msg} (or a value over 64 MB)") from None
                if self._fill():
                    continue
                raise ValueError(f"not an export file: {exc.msg}") from None
            # A number may continue in the next chunk.
            if end == len(self.buf) and not self.eof and self._fill():
                continue
            self.pos = end
            return value


def iter_export(path: str | Path) -> Iterator[tuple[Candidate, dict[str, Any] | None]]:
    """Every candidate of a seed-format file: ``(candidate, None)`` once, then ``(candidate, event)``s."""
    with open_text(path) as stream:
        scan = _Scanner(stream)
        scan.expect("{")
        if scan.peek() == "}":
            return
        while True:
            key = scan.value()
            scan.expect(":")
            if key == "candidates":
                yield from _candidates(scan)
            else:
                scan.value()
            if scan.expect(",}") == "}":
                return


def _candidates(scan: _Scanner) -> Iterator[tuple[Candidate, dict[str, Any] | None]]:
    scan.expect("[")
    if scan.peek() == "]":
        scan.pos += 1
        return
    while True:
        yield from _candidate(scan)
        if scan.expect(",]") == "]":
            return


def _candidate(scan: _Scanner) -> Iterator[tuple[Candidate, dict[str, Any] | None]]:
    scan.expect("{")
    fields: dict[str, Any] = {}
    candidate: Candidate | None = None
    pending: list[dict[str, Any]] = []  # events seen before the candidate's ids (unusual key order)
    if scan.peek() == "}":
        scan.pos += 1
        raise ValueError("not an export file: a candidate without userId")
    while True:
        key = scan.value()
        scan.expect(":")
        if key == "events":
            scan.expect("[")
            if scan.peek() == "]":
                scan.pos += 1
            else:
                while True:
                    event = scan.value()
                    if candidate is None and "userId" in fields and "candidateId" in fields:
                        candidate = Candidate(int(fields["userId"]), str(fields["candidateId"]))
                        yield candidate, None
                    if candidate is None:
                        pending.append(event)
                    else:
                        yield candidate, event
                    if scan.expect(",]") == "]":
                        break
        else:
            fields[key] = scan.value()
        if scan.expect(",}") == "}":
            break
    if candidate is None:
        if "userId" not in fields:
            raise ValueError("not an export file: a candidate without userId")
        candidate = Candidate(int(fields["userId"]), str(fields.get("candidateId", "")))
        yield candidate, None
        for event in pending:
            yield candidate, event


def read_export(path: str | Path) -> Iterator[tuple[Candidate, dict[str, Any]]]:
    """Iterates ``(candidate, event)`` pairs of a seed-format export file of any size.

    The file is streamed (gzip-compressed files too): memory does not grow with its size.
    Candidates without events yield nothing.
    """
    for candidate, event in iter_export(path):
        if event is not None:
            yield candidate, event


@dataclass(slots=True)
class SourceEvent:
    """One event read from an input file, with where it came from (1-based line or ordinal)."""

    line: int
    candidate: Candidate | None
    event: dict[str, Any] | None
    problem: str | None = None


def is_jsonl(path: str | Path) -> bool:
    """True for a JSON Lines file (by extension, else by its first line carrying ``candidateUserId``)."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return True
    if name.endswith(".json"):
        return False
    with open_text(path) as stream:
        first = stream.readline()
    try:
        parsed = json.loads(first)
    except ValueError:
        return False
    return isinstance(parsed, dict) and "candidateUserId" in parsed


def _event_body(raw: dict[str, Any]) -> dict[str, Any]:
    """The event as the ingest API takes it: export-only fields dropped (``receivedAt`` too:
    the receiving server records its own receipt time)."""
    body = {
        key: value
        for key, value in raw.items()
        if key not in ("attachedFiles", "candidateUserId", "receivedAt")
    }
    body.pop("candidateId", None)
    return body


def iter_jsonl(path: str | Path) -> Iterator[SourceEvent]:
    """Events of a JSON Lines file (one event per line plus ``candidateUserId`` and ``candidateId``)."""
    with open_text(path) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                yield SourceEvent(number, None, None, f"not valid JSON: {exc.msg}")
                continue
            if not isinstance(raw, dict):
                yield SourceEvent(number, None, None, "not a JSON object")
                continue
            user_id, candidate_id = raw.get("candidateUserId"), raw.get("candidateId")
            if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id < 0:
                yield SourceEvent(number, None, raw, "candidateUserId: a non-negative integer is required")
                continue
            if not isinstance(candidate_id, str) or not candidate_id:
                yield SourceEvent(number, None, raw, "candidateId: a non-empty string is required")
                continue
            yield SourceEvent(number, Candidate(user_id, candidate_id), _event_body(raw))


def iter_seed_file(path: str | Path) -> Iterator[SourceEvent]:
    """Events of a seed-format export file; ``line`` is the event's ordinal in the file (1-based)."""
    number = 0
    for candidate, event in iter_export(path):
        if event is None:
            yield SourceEvent(0, candidate, None)
            continue
        number += 1
        if not isinstance(event, dict):
            yield SourceEvent(number, candidate, None, "not a JSON object")
            continue
        yield SourceEvent(number, candidate, _event_body(event))


def iter_source(path: str | Path) -> Iterator[SourceEvent]:
    """The events of ``path``, JSON Lines or seed-format JSON (detected)."""
    return iter_jsonl(path) if is_jsonl(path) else iter_seed_file(path)
