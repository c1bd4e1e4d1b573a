"""One size limit for every request body (``core.body.BodyLimit``): JSON-body routes, the token
forms (a smaller cap, before any credential is checked), chunked bodies and declared lengths;
the evidence-file upload keeps its own limit and a route that reads no body is not refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.types import Message, Receive, Scope, Send

from examtrail.audit.models import AuditEntry
from examtrail.auth.api import TOKEN_MAX_BODY_BYTES
from examtrail.core.body import BodyLimit, declares_more_than
from examtrail.ingest.models import Candidate, Test
from examtrail.runtime import Runtime
from tests.support.api import create_client, seed_test

LIMIT = 4096
JSON = {"Content-Type": "application/json"}


def _rows(runtime: Runtime, model: Any) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _tokens_issued(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        stmt = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "token.issued")
        return int(session.scalar(stmt) or 0)


def _is_413(response: Any) -> None:
    assert response.status_code == 413, response.text
    assert response.json() == {
        "error": "payload_too_large",
        "message": response.json()["message"],
        "details": [],
    }


def _chunks(total: int) -> Iterator[bytes]:  # no Content-Length: sent chunked
    yield b'{"title": "'
    for _ in range(total // 1024):
        yield b"x" * 1024
    yield b'"}'


@pytest.mark.settings(max_request_bytes=LIMIT)
def test_json_bodies_over_the_limit_are_413_and_store_nothing(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    big = b'{"title": "' + b"x" * 5_000_000 + b'"}'
    _is_413(http.put("/v1/test/1", content=big, headers={**headers, **JSON}))
    _is_413(http.put("/v1/test/1", content=_chunks(LIMIT * 4), headers={**headers, **JSON}))
    assert _rows(runtime, Test) == 0
    assert http.put("/v1/test/1", json={"title": "t"}, headers=headers).status_code in (200, 201)
    people = b"[" + b",".join(b'{"userId": %d, "candidateId": "c%d"}' % (n, n) for n in range(1000)) + b"]"
    _is_413(http.put("/v1/test/1/candidates", content=people, headers={**headers, **JSON}))
    assert _rows(runtime, Candidate) == 0
    subscription = b'{"event": "' + b"a" * 3_000_000 + b'"}'
    _is_413(http.post("/v1/subscription", content=subscription, headers={**headers, **JSON}))
    # At the limit exactly: read and answered by the route.
    body = b'{"title": "t"' + b" " * (LIMIT - 14) + b"}"
    assert len(body) == LIMIT
    assert http.put("/v1/test/2", content=body, headers={**headers, **JSON}).status_code in (200, 201)


@pytest.mark.settings(max_request_bytes=LIMIT)
def test_events_and_body_less_routes(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=42, candidates=1, events_per_candidate=0)
    events = "/v1/test/42/candidates/100/events"
    big = b'{"eventId": "e", "event": "' + b"x" * LIMIT + b'", "timeStamp": "2026-06-01T10:00:00Z"}'
    _is_413(http.post(events, content=big, headers={**headers, **JSON}))
    small = {"eventId": "e", "event": "x", "timeStamp": "2026-06-01T10:00:00Z"}
    assert http.post(events, json=small, headers=headers).status_code == 201
    # A route that reads no body answers whatever body came with the request.
    response = http.request("GET", "/v1/test/42", content=b"x" * (LIMIT * 2), headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.settings(max_request_bytes=LIMIT, max_file_bytes=LIMIT * 4)
def test_evidence_files_keep_their_own_limit(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=42, candidates=1, events_per_candidate=0)
    event = {"eventId": "ev-1", "event": "phone_seen", "timeStamp": "2026-06-01T10:00:00Z"}
    assert http.post("/v1/test/42/candidates/100/events", json=event, headers=headers).status_code == 201
    url = "/v1/test/42/candidates/100/events/ev-1/files/{}"
    octets = {**headers, "Content-Type": "application/octet-stream"}
    response = http.put(url.format("a.bin"), content=b"z" * (LIMIT * 3), headers=octets)
    assert response.status_code == 201, response.text
    response = http.put(url.format("b.bin"), content=b"z" * (LIMIT * 5), headers=octets)
    assert response.status_code == 413 and response.json()["error"] == "file_too_large"


def test_token_forms_are_capped_before_credentials_are_checked(http: TestClient, runtime: Runtime) -> None:
    client_id, key = create_client(runtime, "uni-a")
    issued = _tokens_issued(runtime)
    # Unauthenticated multipart and a form over the cap: refused, not parsed.
    files = {"upload": ("big.bin", b"y" * 2_000_000, "application/octet-stream")}
    _is_413(http.post("/api/authenticate/token/?client_id=x", files=files, data={"code": "k"}))
    padding = "x=" + "a" * TOKEN_MAX_BODY_BYTES
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # Valid credentials in the header and query do not make an oversized form acceptable.
    response = http.post(
        f"/api/authenticate/token/?client_id={client_id}", content=padding, headers={**form, "code": key}
    )
    _is_413(response)
    oauth = f"grant_type=client_credentials&client_id={client_id}&client_secret={key}&{padding}"
    _is_413(http.post("/oauth/token", content=oauth, headers=form))
    assert _tokens_issued(runtime) == issued
    # A token request of ordinary size still works.
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": key},
    )
    assert response.status_code == 200, response.text


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    reads: list[Message] = []
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the route reads its body
        raise AssertionError("not reached")

    async def receive() -> Message:
        message: Message = {"type": "http.request", "body": b"x", "more_body": True}
        reads.append(message)
        return message

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "PUT", "path": "/", "headers": [(b"content-length", b"2048")]}
    anyio.run(BodyLimit(app, limit=1024), scope, receive, send)
    assert reads == []
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert b"payload_too_large" in sent[1]["body"]


def test_declared_lengths_are_compared_as_digits() -> None:
    assert not declares_more_than({"content-length": "0" * 5000 + "1024"}, 1024)
    assert declares_more_than({"content-length": "0" * 5000 + "1025"}, 1024)
    assert declares_more_than({"content-length": "9" * 5000}, 1024)
    assert not declares_more_than({"content-length": "0" * 5000}, 1024)
    assert not declares_more_than({}, 1024)
    # Not a length (the HTTP server refuses these itself): the body is counted as it streams.
    for malformed in ("", "+1", "1,1", "-1", "1e9", "\u0661"):
        assert not declares_more_than({"content-length": malformed}, 1024), malformed


@pytest.mark.settings(max_request_bytes=LIMIT, max_file_bytes=LIMIT)
def test_a_length_with_thousands_of_leading_zeros_is_its_value(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    # int() refuses more than 4,300 digits: a 500 on the events and file calls, a misleading
    # 400 http_error on the others. The HTTP parsers take the zeros: the length is the value.
    seed_test(http, headers, test_id=42, candidates=1, events_per_candidate=0)

    def padded(body: bytes, kind: str = "application/json", zeros: int = 4300) -> dict[str, str]:
        return {**headers, "Content-Type": kind, "Content-Length": "0" * zeros + str(len(body))}

    event = b'{"eventId": "e1", "event": "x", "timeStamp": "2026-06-01T10:00:00Z"}'
    events = "/v1/test/42/candidates/100/events"
    response = http.post(events, content=event, headers=padded(event))
    assert response.status_code == 201, response.text
    octets = "application/octet-stream"
    response = http.put(f"{events}/e1/files/a.bin", content=b"z", headers=padded(b"z", octets))
    assert response.status_code == 201, response.text
    people = b'[{"userId": 100, "candidateId": "renamed"}]'
    response = http.put("/v1/test/42/candidates", content=people, headers=padded(people))
    assert response.status_code == 200, response.text
    title = b'{"title": "t"}'
    assert http.put("/v1/test/42", content=title, headers=padded(title)).status_code == 200
    client_id, key = create_client(runtime, "uni-a")
    form = f"grant_type=client_credentials&client_id={client_id}&client_secret={key}".encode()
    kind = "application/x-www-form-urlencoded"
    token = http.post(
        "/oauth/token",
        content=form,
        headers={"Content-Length": "0" * 4300 + str(len(form)), "Content-Type": kind},
    )
    assert token.status_code == 200, token.text
    # Over the limit, however it is written: refused unread.
    big = b"z" * (LIMIT + 1)
    response = http.put(f"{events}/e1/files/b.bin", content=big, headers=padded(big, octets))
    assert response.status_code == 413 and response.json()["error"] == "file_too_large"
    big_event = b'{"event": "' + b"x" * LIMIT + b'"}'
    _is_413(http.post(events, content=big_event, headers=padded(big_event)))
