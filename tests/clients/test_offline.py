"""The client without a server: query construction, tokens, errors, ingestion plans and
webhook signatures, on httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from examtrail_client import (
    AsyncExamtrailClient,
    AuthenticationError,
    ExamtrailClient,
    ExportFailedError,
    NotFoundError,
    ServerUnreachableError,
    VerificationError,
    export_params,
    verify_webhook,
)
from examtrail_client._common import RegisterCandidates, Reject, SendEvents, plan_ingest
from examtrail_client.cli import main
from examtrail_client.files import SourceEvent
from examtrail_client.models import Candidate

JOB = {
    "jobId": "job-1",
    "testId": 7,
    "status": "queued",
    "progress": 0,
    "candidatesTotal": 0,
    "candidatesDone": 0,
    "eventsWritten": 0,
    "created": "2026-06-01T09:00:00.000Z",
    "started": None,
    "finished": None,
    "downloadUrl": None,
    "downloadUrlExpires": None,
    "fileSize": None,
    "sha256": None,
    "error": None,
}


class FakeServer:
    """A scripted Examtrail: records every request, answers from ``routes``."""

    def __init__(self, ttl: int = 3600) -> None:
        self.requests: list[httpx.Request] = []
        self.tokens = 0
        self.ttl = ttl
        self.valid: set[str] = set()
        self.routes: dict[tuple[str, str], Any] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/authenticate/token/":
            if request.headers.get("code") != "key":
                return httpx.Response(401, json={"error": "invalid_grant", "message": "Wrong key."})
            self.tokens += 1
            token = f"t{self.tokens}"
            self.valid.add(token)
            return httpx.Response(
                200, json={"access_token": token, "token_type": "Bearer", "expires_in": self.ttl}
            )
        signed_link = request.url.path.startswith("/files/")  # a pre-signed link: no Authorization
        if (
            not signed_link
            and request.headers.get("authorization", "").removeprefix("Bearer ") not in self.valid
        ):
            request.read()  # as over HTTP: the body was sent before the answer came
            return httpx.Response(401, json={"error": "invalid_token", "message": "Expired."})
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"error": "not_found", "message": "Not found."})
        response: httpx.Response = answer(request) if callable(answer) else answer
        return response

    def client(self) -> ExamtrailClient:
        return ExamtrailClient(
            "http://et.test", "cid", "key", transport=httpx.MockTransport(self), poll_interval=0.01
        )


def test_export_params_repeat_lists_and_name_every_option() -> None:
    params = export_params(
        {
            "user_id": [1, 2],
            "candidate_id": "A",
            "event": ["flag", "unflag"],
            "flagged": True,
            "severity_level": ["high"],
            "from_": datetime(2026, 6, 1, 11, 0, tzinfo=timezone(timedelta(hours=2))),
            "to": "2026-06-02T00:00:00Z",
            "since": "cursor-1",
            "format": "jsonl",
            "gzip": True,
        }
    )
    assert params == [
        ("userId", "1"),
        ("userId", "2"),
        ("candidateId", "A"),
        ("event", "flag"),
        ("event", "unflag"),
        ("flagged", "true"),
        ("severityLevel", "high"),
        ("from", "2026-06-01T09:00:00.000Z"),
        ("to", "2026-06-02T00:00:00Z"),
        ("since", "cursor-1"),
        ("format", "jsonl"),
        ("compression", "gzip"),
    ]
    assert export_params({"flagged": False, "gzip": False, "since": None}) == []
    assert export_params({"compression": "none", "from": "x"}) == [("compression", "none"), ("from", "x")]
    with pytest.raises(TypeError, match="colour"):
        export_params({"colour": "red"})
    with pytest.raises(ValueError, match="time zone"):
        export_params({"from_": datetime(2026, 6, 1)})


def test_cli_flags_become_query_parameters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = FakeServer()
    server.routes[("POST", "/v1/test/7/events")] = httpx.Response(202, json=JOB)
    real = httpx.Client.__init__

    def patched(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
        kwargs["transport"] = httpx.MockTransport(server)
        real(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", patched)
    code = main(
        [
            "export", "7", "--no-wait", "--url", "http://et.test", "--client-id", "cid", "--api-key", "key",
            "--user-id", "1", "--user-id", "2", "--candidate-id", "A", "--event", "flag", "--flagged",
            "--severity", "high", "--severity", "low", "--from", "2026-06-01T09:00:00Z",
            "--to", "2026-06-01T10:00:00Z", "--since", "abc", "--format", "csv", "--gzip",
        ]
    )  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out.strip() == "job-1"
    (order,) = [r for r in server.requests if r.url.path == "/v1/test/7/events"]
    assert order.method == "POST"
    assert order.url.params.multi_items() == [
        ("userId", "1"),
        ("userId", "2"),
        ("candidateId", "A"),
        ("event", "flag"),
        ("flagged", "true"),
        ("severityLevel", "high"),
        ("severityLevel", "low"),
        ("from", "2026-06-01T09:00:00Z"),
        ("to", "2026-06-01T10:00:00Z"),
        ("since", "abc"),
        ("format", "csv"),
        ("compression", "gzip"),
    ]
    # No option: no query string, today's export byte for byte.
    code = main(
        ["export", "7", "--no-wait", "--url", "http://et.test", "--client-id", "cid", "--api-key", "key"]
    )
    assert code == 0 and server.requests[-1].url.query == b""


def test_token_is_reused_renewed_before_expiry_and_after_a_401() -> None:
    server = FakeServer(ttl=3600)
    server.routes[("GET", "/v1/test/7/events")] = httpx.Response(200, json={**JOB, "status": "running"})
    with server.client() as client:
        for _ in range(3):
            client.get_job(7, "job-1")
        assert server.tokens == 1
        server.valid.clear()  # the server forgot the token (restart, rotation): one retry with a new one
        assert client.get_job(7, "job-1").status == "running"
        assert server.tokens == 2
    short = FakeServer(ttl=1)
    short.routes[("GET", "/v1/test/7/events")] = httpx.Response(200, json=JOB)
    with short.client() as client:
        client.get_job(7, "job-1")
        time.sleep(0.8)  # past the renewal margin: a new token before the old one expires
        client.get_job(7, "job-1")
    assert short.tokens == 2
    assert all(r.headers.get("authorization") != "Bearer t1" for r in short.requests[-1:])


def test_errors_are_typed_with_the_server_code_and_message() -> None:
    server = FakeServer()
    server.routes[("DELETE", "/v1/test/7/events")] = httpx.Response(
        409, json={"error": "job_not_cancellable", "message": "Already finished."}
    )
    with server.client() as client:
        with pytest.raises(NotFoundError) as missing:
            client.get_job(7, "nope")
        assert missing.value.code == "not_found" and missing.value.status == 404
        with pytest.raises(Exception, match="Already finished") as conflict:
            client.cancel(7, "job-1")
        assert getattr(conflict.value, "code", None) == "job_not_cancellable"
    wrong = ExamtrailClient("http://et.test", "cid", "bad", transport=httpx.MockTransport(server))
    with pytest.raises(AuthenticationError) as refused:
        wrong.get_job(7, "job-1")
    assert refused.value.code == "invalid_grant" and refused.value.exit_code == 3


def test_failed_export_raises_with_the_job() -> None:
    server = FakeServer()
    server.routes[("POST", "/v1/test/7/events")] = httpx.Response(202, json=JOB)
    failed = {**JOB, "status": "failed", "error": {"code": "storage_error", "message": "Disk full."}}
    server.routes[("GET", "/v1/test/7/events")] = httpx.Response(200, json=failed)
    with server.client() as client, pytest.raises(ExportFailedError, match="Disk full") as raised:
        client.export(7, "never.json")
    assert raised.value.job.status == "failed" and raised.value.exit_code == 1


def test_download_restarts_when_range_is_ignored_and_checks_the_size(tmp_path: Path) -> None:
    body = b'{"created": "x", "candidates": []}' * 1000
    digest = hashlib.sha256(body).hexdigest()
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    calls: list[str | None] = []

    def file(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("range"))
        if len(calls) == 1:
            return httpx.Response(200, content=body[:1000], headers={"content-length": str(len(body[:1000]))})
        return httpx.Response(200, content=body)  # ignores Range: the client starts over

    server = FakeServer()
    server.routes[("GET", "/files/x")] = file
    link = {"downloadUrl": "http://et.test/files/x", "downloadUrlExpires": expires}
    job = {**JOB, "status": "finished", **link, "fileSize": len(body), "sha256": digest}
    server.routes[("GET", "/v1/test/7/events")] = httpx.Response(200, json=job)
    with server.client() as client:
        result = client.download(client.get_job(7, "job-1"), tmp_path / "f.json")
    assert calls == [None, "bytes=1000-"]
    assert result.path.read_bytes() == body and result.sha256 == digest
    server.routes[("GET", "/files/x")] = httpx.Response(200, content=body + b"!")
    with server.client() as client, pytest.raises(VerificationError, match="published"):
        client.download(client.get_job(7, "job-1"), tmp_path / "g.json")
    assert not (tmp_path / "g.json").exists() and not (tmp_path / "g.json.part").exists()


def _source(rows: list[tuple[int, int, str]]) -> list[SourceEvent]:
    return [SourceEvent(line, Candidate(user, f"C{user}"), {"eventId": eid}) for line, user, eid in rows]


def test_plan_registers_candidates_first_and_batches_per_candidate() -> None:
    rows = [(n + 1, 1 + n % 2, f"e{n}") for n in range(7)]
    items = [*_source(rows), SourceEvent(8, None, {"eventId": "x"}, "candidateId: required")]
    items.append(SourceEvent(9, Candidate(3, "C3"), None))  # a candidate without events
    items.append(SourceEvent(10, Candidate(1, "other"), {"eventId": "y"}))
    steps = list(plan_ingest(items, batch_size=2))
    kinds = [type(step).__name__ for step in steps]
    assert kinds[0] == "RegisterCandidates"
    first = steps[0]
    assert isinstance(first, RegisterCandidates) and [c.user_id for c in first.candidates] == [1, 2]
    sends = [s for s in steps if isinstance(s, SendEvents)]
    assert all(len(s.items) <= 2 for s in sends)
    assert sorted(i.line for s in sends for i in s.items) == list(range(1, 8))
    rejects = [s.rejected for s in steps if isinstance(s, Reject)]
    assert [(r.line, r.event_id) for r in rejects] == [(8, "x"), (10, "y")]
    assert "candidateId" in rejects[1].message
    registered = [c.user_id for s in steps if isinstance(s, RegisterCandidates) for c in s.candidates]
    assert registered == [1, 2, 3]


def test_ingest_sets_aside_what_the_server_names_and_sends_the_rest(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    rows = [{"candidateUserId": 5, "candidateId": "E", "eventId": f"e{n}", "event": "x",
             "timeStamp": "2026-06-01T09:00:00Z"} for n in range(6)]  # fmt: skip
    rows[2]["timeStamp"] = "2026-06-01T09:00:00"
    rows[4]["eventId"] = "e0"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    server = FakeServer()
    server.routes[("GET", "/v1/test/7")] = httpx.Response(404, json={"error": "not_found", "message": "No."})
    server.routes[("PUT", "/v1/test/7")] = httpx.Response(201, json={"testId": 7})
    server.routes[("PUT", "/v1/test/7/candidates")] = httpx.Response(200, json={"received": 1})
    bodies: list[list[dict[str, Any]]] = []

    def events(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if any(e["timeStamp"].endswith(":00") for e in body):
            index = next(i for i, e in enumerate(body) if e["timeStamp"].endswith(":00"))
            detail = {"index": index, "field": "timeStamp", "message": "Input should have timezone info"}
            return httpx.Response(
                422, json={"error": "validation_error", "message": "Bad.", "details": [detail]}
            )
        if sum(e["eventId"] == "e0" for e in body) > 1:
            index = [i for i, e in enumerate(body) if e["eventId"] == "e0"][1]
            detail = {"index": index, "field": "eventId", "message": "eventId e0 repeated with other content"}
            return httpx.Response(
                409, json={"error": "event_conflict", "message": "Conflict.", "details": [detail]}
            )
        return httpx.Response(201, json={"received": len(body), "created": len(body), "duplicates": 0})

    server.routes[("POST", "/v1/test/7/candidates/5/events")] = events
    with server.client() as client:
        report = client.ingest(7, source, batch_size=100)
    assert [(r.line, r.event_id) for r in report.rejected] == [(3, "e2"), (5, "e0")]
    assert "timeStamp: Input should have timezone info" in str(report.rejected[0])
    assert report.created == 4 and report.read == 6 and not report.ok
    assert all("candidateUserId" not in e and "candidateId" not in e for e in bodies[-1])
    assert [e["eventId"] for e in bodies[-1]] == ["e0", "e1", "e3", "e5"]
    put = next(r for r in server.requests if r.method == "PUT" and r.url.path == "/v1/test/7/candidates")
    assert json.loads(put.content) == [{"userId": 5, "candidateId": "E"}]


def test_async_client_orders_waits_and_downloads(tmp_path: Path) -> None:
    body = b'{"created": "2026-06-01T09:00:00.000Z", "candidates": []}'
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    polls = iter(["running", "finished"])

    def status(request: httpx.Request) -> httpx.Response:
        state = next(polls)
        link = {"downloadUrl": "http://et.test/files/x", "downloadUrlExpires": expires}
        extra = {**link, "fileSize": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        extra = extra if state == "finished" else {}
        return httpx.Response(200, json={**JOB, "status": state, "progress": 100 if extra else 50, **extra})

    server = FakeServer()
    server.routes[("POST", "/v1/test/7/events")] = httpx.Response(202, json=JOB)
    server.routes[("GET", "/v1/test/7/events")] = status
    server.routes[("GET", "/files/x")] = httpx.Response(200, content=body)

    async def run() -> Any:
        async with AsyncExamtrailClient(
            "http://et.test", "cid", "key", transport=httpx.MockTransport(server), poll_interval=0.01
        ) as client:
            seen: list[int] = []
            target = tmp_path / "a.json"
            result = await client.export(
                7, target, on_progress=lambda j: seen.append(j.progress), flagged=True
            )
            return result, seen

    result, seen = asyncio.run(run())
    assert seen == [0, 50, 100]
    assert result.path.read_bytes() == body
    order = next(r for r in server.requests if r.method == "POST" and r.url.path == "/v1/test/7/events")
    assert order.url.params.multi_items() == [("flagged", "true")]


def _standard(secret: str, msg_id: str, stamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_verify_webhook_checks_both_signatures() -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    body = b'{"event":"event_by_candidates_export_finished","jobId":"j"}'
    stamp = int(time.time())
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(stamp),
        "Webhook-Signature": "v1,bm90IGl0 " + _standard(secret, "msg_1", stamp, body),
        "X-Inspera-Signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
    }
    assert verify_webhook(headers, body, secret)["jobId"] == "j"
    with pytest.raises(VerificationError):
        verify_webhook(headers, body + b" ", secret)
    with pytest.raises(VerificationError, match="X-Inspera"):
        verify_webhook({**headers, "X-Inspera-Signature": "00"}, body, secret)
    with pytest.raises(VerificationError, match="too far"):
        verify_webhook(headers, body, secret, now=stamp + 3600)
    inspera_only = {"X-Inspera-Signature": headers["X-Inspera-Signature"]}
    with pytest.raises(VerificationError, match="missing"):
        verify_webhook(inspera_only, body, secret)
    assert verify_webhook(inspera_only, body, secret, require_both=False)["event"].startswith("event_by")


def test_verify_webhook_matches_the_server_signer() -> None:
    sender = pytest.importorskip("examtrail.webhooks.sender")
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = b'{"event":"event_by_candidates_export_failed"}'
    headers = sender.signed_headers(secret, "msg_2", datetime.now(UTC), body)
    assert verify_webhook(headers, body, secret)["event"] == "event_by_candidates_export_failed"


def test_a_restarting_server_is_retried_and_an_absent_one_is_unreachable() -> None:
    server = FakeServer()
    answers = iter([httpx.Response(503, json={"error": "unavailable", "message": "Starting."})])

    def status(request: httpx.Request) -> httpx.Response:
        return next(answers, httpx.Response(200, json=JOB))

    server.routes[("GET", "/v1/test/7/events")] = status
    with server.client() as client:
        assert client.get_job(7, "job-1").job_id == "job-1"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    down = ExamtrailClient("http://et.test", "cid", "key", transport=httpx.MockTransport(refuse))
    with pytest.raises(ServerUnreachableError, match="Connection refused") as raised:
        down.get_job(7, "job-1")
    assert raised.value.exit_code == 5


def test_the_client_imports_nothing_of_the_server() -> None:
    package = Path(__file__).resolve().parents[2] / "clients" / "python" / "src" / "examtrail_client"
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "from examtrail." not in text and "import examtrail\n" not in text, source
        for heavy in ("pydantic", "fastapi", "sqlalchemy", "boto3"):
            assert f"import {heavy}" not in text, (source, heavy)


def test_pseudonymize_option_is_sent_only_when_true() -> None:
    from examtrail_client._common import export_params

    assert export_params({"pseudonymize": True, "format": "csv"}) == [
        ("pseudonymize", "true"),
        ("format", "csv"),
    ]
    assert export_params({"pseudonymize": False}) == []


def test_jsonl_export_lines_reingest_without_export_only_fields(tmp_path: Path) -> None:
    from examtrail_client.files import iter_jsonl

    source = tmp_path / "export.jsonl"
    line: dict[str, Any] = {
        "eventId": "e1",
        "event": "x",
        "timeStamp": "2026-06-01T09:00:00.000Z",
        "extraInfo": None,
        "flaggingInfo": None,
        "attachedFiles": [],
        "userId": None,
        "candidateUserId": 5,
        "candidateId": "E",
        "receivedAt": "2026-06-01T09:00:01.250Z",
    }
    source.write_text(json.dumps(line) + "\n")
    [event] = list(iter_jsonl(source))
    assert event.event == {"eventId": "e1", "event": "x", "timeStamp": "2026-06-01T09:00:00.000Z",
                          "extraInfo": None, "flaggingInfo": None, "userId": None}  # fmt: skip


def _stored(request: httpx.Request) -> httpx.Response:
    """The server's answer to an upload: what it received, as it would store it."""
    body = request.read()
    name = request.url.path.rsplit("/", 1)[1]
    answer = {"fileName": name, "contentItemId": 1, "fileSize": len(body)}
    return httpx.Response(201, json={**answer, "sha256": hashlib.sha256(body).hexdigest()})


class DropFirstUpload(httpx.BaseTransport):
    """Drops the first upload's connection once its body's first chunk was sent (MockTransport
    reads a body whole before its handler sees it)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.sent: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not self.sent:
            assert isinstance(request.stream, httpx.SyncByteStream)
            self.sent.append(len(next(iter(request.stream))))
            raise httpx.WriteError("connection reset by peer", request=request)
        return self.inner.handle_request(request)


def test_upload_sends_the_file_again_whole_and_checks_what_was_stored(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(bytes(range(256)) * 1024)
    digest = hashlib.sha256(evidence.read_bytes()).hexdigest()
    path = "/v1/test/7/candidates/1/events/e1/files/"
    server = FakeServer()
    bodies: list[bytes] = []

    def upload(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        if len(bodies) == 1:
            return httpx.Response(503, json={"error": "unavailable", "message": "Restarting."})
        return _stored(request)

    server.routes[("PUT", path + "a.bin")] = upload
    transport = DropFirstUpload(httpx.MockTransport(server))
    with ExamtrailClient("http://et.test", "cid", "key", transport=transport) as client:
        client.authenticate()
        server.valid.clear()  # a drop, a 401 and a 503: the file is sent again, whole, every time
        assert client.upload_file(7, 1, "e1", evidence, file_name="a.bin")["sha256"] == digest
        assert transport.sent == [1 << 16] and bodies == [evidence.read_bytes()] * 2
    with server.client() as client:
        with evidence.open("rb") as stream:
            stream.seek(1000)  # a stream is sent from where it stood, on every attempt
            bodies.clear()
            client.upload_file(7, 1, "e1", stream, file_name="a.bin")
        assert bodies == [evidence.read_bytes()[1000:]] * 2
        server.routes[("PUT", path + "b.bin")] = httpx.Response(
            201, json={"fileName": "b.bin", "fileSize": 4, "sha256": hashlib.sha256(b"data").hexdigest()}
        )
        with pytest.raises(VerificationError, match="stored 4 bytes") as mismatch:
            client.upload_file(7, 1, "e1", b"other", file_name="b.bin")
        assert mismatch.value.code == "upload_mismatch" and mismatch.value.exit_code == 4
    puts = [r for r in server.requests if r.method == "PUT"]
    assert len(puts) == 6 and all(r.headers.get("authorization") for r in puts)


def test_a_body_that_cannot_be_sent_again_is_not_resent() -> None:
    attempts: list[bytes] = []

    def drop(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        attempts.append(b"".join(request.stream))  # type: ignore[arg-type]
        raise httpx.WriteError("connection reset by peer", request=request)

    client = ExamtrailClient("http://et.test", "cid", "key", transport=httpx.MockTransport(drop))
    with pytest.raises(ServerUnreachableError):
        client.request("PUT", "/v1/x", content=iter([b"first", b"second"]))
    assert attempts == [b"firstsecond"]  # not retried with the rest of a consumed stream
    server = FakeServer()
    with server.client() as client:
        client.authenticate()
        server.valid.clear()
        with pytest.raises(AuthenticationError):
            client.request("PUT", "/v1/x", content=iter([b"first"]))
    assert [r.method for r in server.requests].count("PUT") == 1


def test_async_upload_sends_the_file_again_whole_and_checks_what_was_stored(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(b"\x00\xff" * 100_000)
    server = FakeServer()
    server.routes[("PUT", "/v1/test/7/candidates/1/events/e1/files/a.bin")] = _stored
    server.routes[("PUT", "/v1/test/7/candidates/1/events/e1/files/b.bin")] = httpx.Response(
        201, json={"fileName": "b.bin", "fileSize": 5, "sha256": "00" * 32}
    )

    async def run() -> dict[str, Any]:
        async with AsyncExamtrailClient(
            "http://et.test", "cid", "key", transport=httpx.MockTransport(server)
        ) as client:
            await client.authenticate()
            server.valid.clear()
            answer = await client.upload_file(7, 1, "e1", evidence, file_name="a.bin")
            with pytest.raises(VerificationError, match="SHA-256"):
                await client.upload_file(7, 1, "e1", b"other", file_name="b.bin")
            return answer

    answer = asyncio.run(run())
    assert answer["sha256"] == hashlib.sha256(evidence.read_bytes()).hexdigest()
    puts = [r for r in server.requests if r.method == "PUT" and r.url.path.endswith("a.bin")]
    assert len(puts) == 2 and answer["fileSize"] == evidence.stat().st_size


def test_path_segments_are_percent_encoded() -> None:
    server = FakeServer()
    seen: list[bytes] = []

    def upload(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return _stored(request)

    names = {
        "photo #1.jpg": b"photo%20%231.jpg",
        "what?.txt": b"what%3F.txt",
        "100%.txt": b"100%25.txt",
        "a%2Fb.txt": b"a%252Fb.txt",
        "a/b": b"a%2Fb",
        "..": b"%2E%2E",
    }
    with server.client() as client:
        for name in names:
            server.routes[("PUT", f"/v1/test/7/candidates/1/events/e:1/files/{name}")] = upload
            client.upload_file(7, 1, "e:1", name.encode(), file_name=name)
        server.routes[("PUT", "/v1/test/7/candidates/1/events/../files/x.txt")] = upload
        client.upload_file(7, 1, "..", b"x", file_name="x.txt")
    prefix = b"/v1/test/7/candidates/1/events/e%3A1/files/"
    assert seen[:-1] == [prefix + raw for raw in names.values()]
    assert seen[-1] == b"/v1/test/7/candidates/1/events/%2E%2E/files/x.txt"

    async def run() -> None:
        async with AsyncExamtrailClient(
            "http://et.test", "cid", "key", transport=httpx.MockTransport(server)
        ) as et:
            await et.upload_file(7, 1, "e:1", b"photo #1.jpg", file_name="photo #1.jpg")

    asyncio.run(run())
    assert seen[-1] == prefix + b"photo%20%231.jpg"


def test_job_list_pages_are_at_most_200_and_stop_at_the_limit() -> None:
    server = FakeServer()
    asked: list[dict[str, str]] = []

    def page(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        start = int(params.get("cursor", 0))
        size = int(params.get("limit", 50))
        if size > 200:
            return httpx.Response(422, json={"error": "validation_error", "message": "limit <= 200"})
        jobs = [{**JOB, "jobId": f"job-{n}"} for n in range(start, min(start + size, 1000))]
        cursor = str(start + size) if start + size < 1000 else None
        return httpx.Response(200, json={"jobs": jobs, "nextCursor": cursor})

    server.routes[("GET", "/v1/test/7/events/jobs")] = page
    with server.client() as client:
        jobs = client.list_jobs(7, limit=450)
        assert [j.job_id for j in jobs] == [f"job-{n}" for n in range(450)]
        assert [a.get("limit") for a in asked] == ["200", "200", "50"]
        asked.clear()
        assert len(client.list_jobs(7, status="finished", limit=3)) == 3
        assert asked == [{"status": "finished", "limit": "3"}]
        assert len(client.list_jobs(7)) == 1000
        with pytest.raises(ValueError, match="limit"):
            client.list_jobs(7, limit=0)

    async def run() -> int:
        async with AsyncExamtrailClient(
            "http://et.test", "cid", "key", transport=httpx.MockTransport(server)
        ) as et:
            return len(await et.list_jobs(7, limit=500))

    asked.clear()
    assert asyncio.run(run()) == 500
    assert [a.get("limit") for a in asked] == ["200", "200", "100"]


def test_put_test_requires_a_title() -> None:
    for method in (ExamtrailClient.put_test, AsyncExamtrailClient.put_test):
        assert inspect.signature(method).parameters["title"].default is inspect.Parameter.empty
    server = FakeServer()
    server.routes[("PUT", "/v1/test/7")] = lambda r: httpx.Response(201, json=json.loads(r.content))
    with server.client() as client:
        assert client.put_test(7, "Exam")["title"] == "Exam"


def test_verify_webhook_refuses_non_ascii_signatures() -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    body = b'{"event":"x"}'
    stamp = str(int(time.time()))
    inspera = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    standard = {
        "Webhook-Id": "m",
        "Webhook-Timestamp": stamp,
        "Webhook-Signature": _standard(secret, "m", int(stamp), body),
    }
    for headers in (
        {**standard, "X-Inspera-Signature": "é" * 40},
        {**standard, "X-Inspera-Signature": inspera, "Webhook-Signature": "v1,ñ\ud800"},
        {
            **standard,
            "X-Inspera-Signature": inspera,
            "Webhook-Timestamp": "\u0661\u0667" + "\u0660" * 8,
        },  # Arabic-Indic digits,
    ):
        with pytest.raises(VerificationError):
            verify_webhook(headers, body, secret)
    assert verify_webhook({**standard, "X-Inspera-Signature": inspera}, body, secret) == {"event": "x"}


def test_retry_after_is_honoured_up_to_30_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=12), usegmt=True)
    busy = [
        httpx.Response(503, headers={"Retry-After": "7"}, json={"error": "database_unavailable"}),
        httpx.Response(429, headers={"Retry-After": "3600"}, json={"error": "rate_limited"}),
        httpx.Response(503, headers={"Retry-After": in_a_minute}, json={"error": "unavailable"}),
    ]

    def status(request: httpx.Request) -> httpx.Response:
        return busy.pop(0) if busy else httpx.Response(200, json=JOB)

    server = FakeServer()
    server.routes[("GET", "/v1/test/7/events")] = status
    with server.client() as client:
        assert client.get_job(7, "job-1").job_id == "job-1"
    assert slept[:2] == [7.0, 30.0] and 9 < slept[2] <= 12, slept
    slept.clear()
    busy[:] = [httpx.Response(503, headers={"Retry-After": "soon"}), httpx.Response(503)]
    with server.client() as client:
        assert client.get_job(7, "job-1").job_id == "job-1"
    assert slept == [0.2, 0.5]

    waited: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    busy[:] = [httpx.Response(503, headers={"Retry-After": "2"})]

    async def run() -> str:
        async with AsyncExamtrailClient(
            "http://et.test", "cid", "key", transport=httpx.MockTransport(server)
        ) as et:
            return (await et.get_job(7, "job-1")).job_id

    assert asyncio.run(run()) == "job-1" and waited == [2.0]
