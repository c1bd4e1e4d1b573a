"""Output formats other than the seed's JSON file, and gzip compression.

- JSON Lines: one line per event, the event object (as in the JSON file) plus
  ``candidateUserId``, ``candidateId`` and ``receivedAt`` (the server's receipt time,
  RFC 3339 UTC with milliseconds; null for events stored without one).
- CSV: UTF-8 with BOM, RFC 4180 (CRLF, quotes doubled, fields with ``, " CR LF`` quoted),
  one row per event with flattened columns (``CSV_COLUMNS``; ``receivedAt`` follows
  ``timeStamp``); list values joined with ``;``; text cells starting with ``= + - @``
  (or tab / CR) are prefixed with ``'`` against formula injection.
- gzip: a writer wrapper that compresses on the way to the object store, so the stored
  object (and its size and SHA-256) is the compressed stream.

Everything streams: a row goes out as soon as it is formatted, memory stays flat.
"""

from __future__ import annotations

import csv
import io
import zlib
from typing import Any

import orjson

from examtrail.core.timeutil import format_ms
from examtrail.storage.base import ObjectWriter, StoredObject

BOM = b"\xef\xbb\xbf"

CSV_COLUMNS = (
    "candidateUserId",
    "candidateId",
    "eventId",
    "event",
    "timeStamp",
    "receivedAt",
    "userId",
    "extraInfo.type",
    "extraInfo.value",
    "flaggingInfo.flagType",
    "flaggingInfo.flagSubTypes",
    "flaggingInfo.comment",
    "flaggingInfo.severityLevel",
    "attachedFiles.fileName",
    "attachedFiles.contentItemId",
    "attachedFiles.fileSize",
    "attachedFiles.presignedUrl",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def jsonl_line(user_id: int | str, candidate_id: str, doc: str, received_at: int | None) -> bytes:
    """The event ``doc`` (a JSON object) with the candidate's ids and the receipt time
    added, and a newline (``user_id`` is a string in pseudonymised exports)."""
    head = doc.encode()
    assert head.endswith(b"}")
    received = b"null" if received_at is None else b'"%b"' % format_ms(received_at).encode()
    return b'%b,"candidateUserId":%b,"candidateId":%b,"receivedAt":%b}\n' % (
        head[:-1],
        orjson.dumps(user_id),
        orjson.dumps(candidate_id),
        received,
    )


def neutralise(cell: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _text(value: Any) -> str:
    return "" if value is None else neutralise(str(value))


def csv_row(user_id: int | str, candidate_id: str, doc: str | bytes, received_at: int | None) -> list[str]:
    """The CSV row of one event doc (the event object of the JSON file)."""
    received = "" if received_at is None else format_ms(received_at)
    return _row(user_id, candidate_id, orjson.loads(doc), received)


def csv_row_from_line(line: bytes) -> list[str]:
    """The CSV row of one JSON Lines object (event plus ``candidateUserId``, ``candidateId``,
    ``receivedAt``)."""
    event = orjson.loads(line)
    received = event.pop("receivedAt", None)
    return _row(event.pop("candidateUserId"), event.pop("candidateId"), event, received or "")


def _row(user_id: int | str, candidate_id: str, event: dict[str, Any], received_at: str) -> list[str]:
    extra = event.get("extraInfo") or {}
    flag = event.get("flaggingInfo") or {}
    files = event.get("attachedFiles") or []
    creator = event.get("userId")
    return [
        str(user_id),
        _text(candidate_id),
        _text(event.get("eventId")),
        _text(event.get("event")),
        str(event.get("timeStamp") or ""),
        received_at,
        "" if creator is None else _text(creator),
        _text(extra.get("type")),
        _text(extra.get("value")),
        _text(flag.get("flagType")),
        _text(";".join(flag.get("flagSubTypes") or [])) if flag else "",
        _text(flag.get("comment")),
        _text(flag.get("severityLevel")),
        _text(";".join(f["fileName"] for f in files)),
        ";".join(str(f["contentItemId"]) for f in files),
        ";".join(str(f["fileSize"]) for f in files),
        ";".join(f["presignedUrl"] for f in files),
    ]


class CsvEncoder:
    """Formats rows as RFC 4180 CSV text, handing back bytes in pieces."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)

    def header(self) -> bytes:
        self._writer.writerow(CSV_COLUMNS)
        return BOM + self.take()

    def add(self, row: list[str]) -> None:
        self._writer.writerow(row)

    def take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode()


class CsvFromLines:
    """Takes JSON Lines in arbitrary pieces, hands CSV bytes to ``out`` (header first).
    A JSON line never holds a raw newline, so splitting on it is exact."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._encoder = CsvEncoder()
        self._partial = b""
        self._pending = 0
        out.add(self._encoder.header())

    def add(self, data: bytes | memoryview) -> None:
        chunk = self._partial + bytes(data)
        *complete, self._partial = chunk.split(b"\n")
        for line in complete:
            if line:
                self._encoder.add(csv_row_from_line(line))
                self._pending += 1
        if self._pending >= 1000:
            self._out.add(self._encoder.take())
            self._pending = 0

    def finish(self) -> None:
        if self._partial.strip():
            self._encoder.add(csv_row_from_line(self._partial))
        self._partial = b""
        self._out.add(self._encoder.take())


class GzipWriter:
    """An :class:`ObjectWriter` that gzip-compresses into another one (deterministic
    header: no name, mtime 0, so equal content gives equal bytes)."""

    def __init__(self, inner: ObjectWriter, level: int = 6) -> None:
        self._inner = inner
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31)

    def write(self, data: bytes) -> None:
        out = self._compressor.compress(data)
        if out:
            self._inner.write(out)

    def commit(self) -> StoredObject:
        tail = self._compressor.flush()
        if tail:
            self._inner.write(tail)
        return self._inner.commit()

    def abort(self) -> None:
        self._inner.abort()
