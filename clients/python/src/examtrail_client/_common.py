"""What the sync and async clients share: options, tokens, errors and the ingestion plan."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from examtrail_client.errors import (
    ExamtrailError,
    ServerUnreachableError,
    VerificationError,
    error_from_response,
)
from examtrail_client.files import SourceEvent
from examtrail_client.models import Candidate, RejectedEvent

TOKEN_PATH = "/api/authenticate/token/"  # noqa: S105 (a path, not a secret)
DEFAULT_BATCH_SIZE = 5000
# Python names (and the API's own names) of the export options -> query parameter.
OPTION_NAMES: dict[str, str] = {
    "user_id": "userId",
    "user_ids": "userId",
    "userId": "userId",
    "candidate_id": "candidateId",
    "candidate_ids": "candidateId",
    "candidateId": "candidateId",
    "event": "event",
    "events": "event",
    "flagged": "flagged",
    "severity": "severityLevel",
    "severity_level": "severityLevel",
    "severityLevel": "severityLevel",
    "from_": "from",
    "from": "from",
    "start": "from",
    "to": "to",
    "end": "to",
    "since": "since",
    "format": "format",
    "compression": "compression",
    "gzip": "compression",
    "pseudonymize": "pseudonymize",
}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetimes passed as export options must carry a time zone")
        text = value.astimezone(UTC).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")
    return str(value)


def export_params(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The order call's query parameters for ``options`` (lists repeat the parameter; None is left out).

    >>> export_params({"user_id": [1, 2], "flagged": True, "gzip": True})
    [('userId', '1'), ('userId', '2'), ('flagged', 'true'), ('compression', 'gzip')]
    """
    params: list[tuple[str, str]] = []
    for name, value in options.items():
        if value is None or (value is False and name in ("flagged", "gzip", "pseudonymize")):
            continue
        try:
            param = OPTION_NAMES[name]
        except KeyError:
            raise TypeError(f"unknown export option {name!r}") from None
        if name == "gzip":
            params.append(("compression", "gzip"))
            continue
        values = value if isinstance(value, list | tuple | set | frozenset) else [value]
        params.extend((param, _scalar(item)) for item in values)
    return params


@dataclass(slots=True)
class TokenState:
    """The current access token and when to renew it (before it expires, with a margin)."""

    value: str | None = None
    renew_at: float = 0.0

    def fresh(self) -> bool:
        return self.value is not None and time.monotonic() < self.renew_at

    def set(self, body: Any) -> str:
        if not isinstance(body, dict) or not body.get("access_token"):
            raise ExamtrailError("The token answer holds no access_token.", code="invalid_token_response")
        ttl = float(body.get("expires_in") or 3600)
        margin = min(60.0, max(0.5, ttl * 0.25))
        self.value = str(body["access_token"])
        self.renew_at = time.monotonic() + ttl - margin
        return self.value

    def clear(self) -> None:
        self.value = None
        self.renew_at = 0.0


def token_request(client_id: str, api_key: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """Path, query and headers of the Inspera-style token call."""
    return (
        TOKEN_PATH,
        {"grant_type": "authorization_code", "client_id": client_id},
        {"code": api_key, "content-type": "application/x-www-form-urlencoded"},
    )


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def raise_for_error(response: httpx.Response) -> None:
    """Raises the typed error of an error answer."""
    if response.status_code < 400:
        return
    fallback = f"{response.request.method} {response.request.url.path} answered {response.status_code}"
    raise error_from_response(response.status_code, json_or_none(response), fallback)


def token_expired(response: httpx.Response) -> bool:
    """A 401 that a new token can fix (rather than a refused client)."""
    return response.status_code == 401


def unreachable(exc: httpx.TransportError, url: str) -> ServerUnreachableError:
    return ServerUnreachableError(f"cannot reach {url}: {exc or type(exc).__name__}", code="unreachable")


RETRY_DELAYS = (0.2, 0.5, 1.0)
# A restarting server or proxy (502/503/504) and "slow down" (429): retried.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A Retry-After is honoured up to this many seconds per retry.
MAX_RETRY_AFTER = 30.0


def retry_delay(response: httpx.Response, default: float) -> float:
    """Seconds to wait before retrying ``response``: its ``Retry-After`` (delta-seconds or an
    HTTP date) when it asks for longer than ``default``, at most ``MAX_RETRY_AFTER``."""
    value = response.headers.get("retry-after", "").strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    return min(MAX_RETRY_AFTER, max(default, seconds))


def segment(value: object) -> str:
    """``value`` as one URL path segment: every reserved character percent-encoded (``photo
    #1.jpg`` -> ``photo%20%231.jpg``, ``a/b`` -> ``a%2Fb``), and ``.`` or ``..`` escaped so
    that no URL normalisation drops them."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def test_path(test_id: int, *parts: object) -> str:
    """``/v1/test/{testId}/...`` with every segment encoded:
    ``test_path(7, "candidates", 1, "events", "e1", "files", "photo #1.jpg")``."""
    return "/v1/test/" + "/".join(segment(part) for part in (test_id, *parts))


# The server's largest page of export jobs.
MAX_JOBS_PAGE = 200


def jobs_query(status: str | None, limit: int | None, cursor: str | None, have: int) -> dict[str, Any]:
    """The query of the next page of a job list that already holds ``have`` of ``limit`` jobs
    (a page asks for at most ``MAX_JOBS_PAGE``)."""
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    page = None if limit is None else min(limit - have, MAX_JOBS_PAGE)
    return {k: v for k, v in {"status": status, "limit": page, "cursor": cursor}.items() if v}


_UPLOAD_CHUNK = 1 << 16
_SPOOL_IN_MEMORY = 8 << 20


class UploadBody:
    """An upload's body that every attempt sends whole, from its first byte: a path is
    reopened, a seekable stream rewound and bytes sent again (a stream that cannot seek is
    first copied to a temporary file). What an attempt sent is hashed, so that :meth:`check`
    can compare it with the ``fileSize`` and ``sha256`` the server stored."""

    def __init__(self, source: str | Path | bytes | IO[bytes]) -> None:
        self._data: bytes | None = None
        self._path: Path | None = None
        self._stream: IO[bytes] | None = None
        self._spool: IO[bytes] | None = None
        self._start = 0
        self.size = -1  # of the last attempt, once all of it was sent
        self.sha256 = ""
        if isinstance(source, bytes):
            self._data, self.size, self.sha256 = source, len(source), hashlib.sha256(source).hexdigest()
        elif isinstance(source, str | Path):
            self._path = Path(source)
            self._path.open("rb").close()  # a missing or unreadable file fails here, before any request
        elif _seekable(source):
            self._stream, self._start = source, source.tell()
        else:
            spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
            shutil.copyfileobj(source, spool, _UPLOAD_CHUNK)
            self._stream = self._spool = spool

    def __enter__(self) -> UploadBody:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._spool is not None:
            self._spool.close()

    def _open(self) -> AbstractContextManager[IO[bytes]]:
        if self._path is not None:
            return self._path.open("rb")
        assert self._stream is not None
        self._stream.seek(self._start)
        return nullcontext(self._stream)

    def _chunks(self) -> Generator[bytes]:
        self.size, self.sha256 = -1, ""
        digest, size = hashlib.sha256(), 0
        with self._open() as stream:
            while chunk := stream.read(_UPLOAD_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                yield chunk
        self.size, self.sha256 = size, digest.hexdigest()

    def content(self) -> bytes | Iterator[bytes]:
        """A fresh body for one attempt (sync client)."""
        return self._data if self._data is not None else self._chunks()

    def acontent(self) -> bytes | AsyncIterator[bytes]:
        """A fresh body for one attempt (async client; files are read in a thread)."""
        return self._data if self._data is not None else self._achunks()

    async def _achunks(self) -> AsyncIterator[bytes]:
        chunks = self._chunks()
        try:
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            chunks.close()

    def check(self, answer: Any) -> None:
        """``VerificationError`` unless the server stored exactly the bytes the client sent."""
        stored = answer if isinstance(answer, dict) else {}
        size, sha256 = stored.get("fileSize"), str(stored.get("sha256") or "").lower()
        if self.size < 0 or size != self.size or sha256 != self.sha256:
            raise VerificationError(
                f"the server stored {size} bytes with SHA-256 {sha256 or '(none)'}, the client sent "
                f"{max(self.size, 0)} bytes with SHA-256 {self.sha256 or '(unfinished)'}",
                code="upload_mismatch",
            )


def upload_request(
    test_id: int,
    user_id: int,
    event_id: str,
    file: str | Path | bytes | IO[bytes],
    file_name: str | None,
    content_type: str,
) -> tuple[str, UploadBody, dict[str, str]]:
    """Path, body and headers of an evidence file's upload (a path's name unless ``file_name``)."""
    if isinstance(file, str | Path):
        file_name = file_name or Path(file).name
    if not file_name:
        raise ValueError("file_name is required for bytes or a stream")
    path = test_path(test_id, "candidates", user_id, "events", event_id, "files", file_name)
    return path, UploadBody(file), {"content-type": content_type}


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def replayable(content: Any) -> bool:
    """True for a body that can be sent again after a dropped connection or a 401."""
    return content is None or isinstance(content, bytes | UploadBody)


def link_is_stale(expires: str | None, margin: float = 2.0) -> bool:
    """True when a download link expires within ``margin`` seconds (or its expiry is unknown)."""
    if not expires:
        return True
    try:
        when = datetime.fromisoformat(expires.replace("Z", "+00:00"))
    except ValueError:
        return True
    return when.timestamp() - time.time() < margin


# --- ingestion plan -------------------------------------------------------------------------


@dataclass(slots=True)
class RegisterCandidates:
    """Step: ``PUT /v1/test/{testId}/candidates`` with these candidates."""

    candidates: list[Candidate]


@dataclass(slots=True)
class SendEvents:
    """Step: ``POST`` these events on one candidate."""

    user_id: int
    items: list[SourceEvent]


@dataclass(slots=True)
class Reject:
    """Step: an input the client refuses before sending it."""

    rejected: RejectedEvent


Step = RegisterCandidates | SendEvents | Reject


def plan_ingest(
    source: Iterable[SourceEvent], batch_size: int, max_buffered: int | None = None
) -> Iterator[Step]:
    """Turns a stream of events into steps: candidates registered before their first batch,
    events grouped per candidate in batches of at most ``batch_size``, memory bounded by
    ``max_buffered`` events."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    limit = max_buffered or max(batch_size * 4, 20_000)
    known: dict[int, str] = {}
    unregistered: list[Candidate] = []
    buffers: dict[int, list[SourceEvent]] = {}
    buffered = 0

    def flush(user_ids: list[int]) -> Iterator[Step]:
        nonlocal buffered
        if unregistered:
            yield RegisterCandidates(list(unregistered))
            unregistered.clear()
        for user_id in user_ids:
            items = buffers.pop(user_id, [])
            buffered -= len(items)
            if items:
                yield SendEvents(user_id, items)

    for item in source:
        if item.problem is not None or item.candidate is None:
            yield Reject(RejectedEvent(item.line, item.problem or "no candidate", _event_id(item.event)))
            continue
        candidate = item.candidate
        previous = known.get(candidate.user_id)
        if previous is None:
            known[candidate.user_id] = candidate.candidate_id
            unregistered.append(candidate)
            if len(unregistered) >= 10_000:
                yield RegisterCandidates(list(unregistered))
                unregistered.clear()
        elif previous != candidate.candidate_id:
            yield Reject(
                RejectedEvent(
                    item.line,
                    f"candidateUserId {candidate.user_id} was given candidateId {previous!r} before, "
                    f"not {candidate.candidate_id!r}",
                    _event_id(item.event),
                )
            )
            continue
        if item.event is None:
            continue
        buffer = buffers.setdefault(candidate.user_id, [])
        buffer.append(item)
        buffered += 1
        if len(buffer) >= batch_size:
            yield from flush([candidate.user_id])
        elif buffered >= limit:
            yield from flush(list(buffers))
    yield from flush(list(buffers))


def _event_id(event: dict[str, Any] | None) -> str | None:
    value = event.get("eventId") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


def split_rejected(
    items: list[SourceEvent], error: ExamtrailError
) -> tuple[list[RejectedEvent], list[SourceEvent]]:
    """A refused batch: the items the server named (with its message) and the ones to send again.

    When the server named no item, the whole batch is rejected with its message.
    """
    named: dict[int, list[str]] = {}
    for detail in error.details:
        index = detail.get("index")
        if isinstance(index, int) and 0 <= index < len(items):
            field = detail.get("field")
            text = str(detail.get("message") or error.message)
            named.setdefault(index, []).append(f"{field}: {text}" if field else text)
    if not named:
        return [RejectedEvent(item.line, error.message, _event_id(item.event)) for item in items], []
    rejected = [
        RejectedEvent(items[index].line, "; ".join(messages), _event_id(items[index].event))
        for index, messages in sorted(named.items())
    ]
    return rejected, [item for index, item in enumerate(items) if index not in named]
