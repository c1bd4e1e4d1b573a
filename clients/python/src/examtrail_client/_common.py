"""What the sync and async clients share: options, tokens, errors and the ingestion plan."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from examtrail_client.errors import ExamtrailError, ServerUnreachableError, error_from_response
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
RETRY_STATUSES = frozenset({502, 503, 504})


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
