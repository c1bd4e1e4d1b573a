"""The HTTP server as ``examtrail serve`` runs it (uvicorn with the project's options, in a
thread of the test): connections stay usable after an error, a client that disconnects is
one quiet line, slow-header clients are cut off, and no log line carries a credential
(findings 8, 9, 11, 12)."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI

from examtrail.app import create_app
from examtrail.core.server import HeaderTimeoutH11Protocol, HeaderTimeoutHttpToolsProtocol, uvicorn_options
from examtrail.runtime import Runtime
from tests.support.api import create_client
from tests.support.ports import free_port

HEADER_TIMEOUT = 1.0


def test_serve_uses_the_httptools_protocol_with_the_header_deadline(runtime: Runtime) -> None:
    # The protocol ``examtrail serve`` runs is the one the tests below drive first.
    assert uvicorn_options(runtime.settings)["http"] is HeaderTimeoutHttpToolsProtocol


@dataclass
class Live:
    app: FastAPI
    port: int

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)


# httptools (what ``examtrail serve`` uses), and h11 (the fallback) keeps its deadline too.
@pytest.fixture(params=["served", "h11"])
def live(runtime: Runtime, request: pytest.FixtureRequest) -> Iterator[Live]:
    served = (
        uvicorn_options(runtime.settings)["http"] if request.param == "served" else HeaderTimeoutH11Protocol
    )
    quick = type("QuickHeaderTimeout", (served,), {"header_timeout": HEADER_TIMEOUT})
    app = create_app(runtime=runtime)

    @app.get("/_test/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    port = free_port()
    options = {**uvicorn_options(runtime.settings), "http": quick}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=True, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield Live(app, port)
    server.should_exit = True
    thread.join(timeout=30)


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read()


def test_the_connection_stays_usable_after_a_500(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    connection = live.connection()
    with caplog.at_level(logging.INFO):
        status, body = _get(connection, "/_test/boom")
        assert status == 500
        assert body.startswith(b'{"error":"internal_error"')
        assert b"Traceback" not in body and b"boom" not in body
        # The same kept-alive connection answers the next request.
        status, body = _get(connection, "/healthz")
        assert status == 200, body
    connection.close()
    traces = [r for r in caplog.records if r.exc_info]
    assert len(traces) == 1 and traces[0].getMessage().startswith("unhandled error on GET /_test/boom")


def test_head_answers_like_get_without_a_body(live: Live) -> None:
    """HEAD on a GET route through the server: the GET's Content-Length, no body, and the
    kept-alive connection answers the next request (no stray body bytes, no server error)."""
    connection = live.connection()
    for _ in range(2):
        connection.request("HEAD", "/healthz")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("content-length") == str(len(b'{"status":"ok"}'))
        assert response.read() == b""
    status, body = _get(connection, "/healthz")
    assert (status, body) == (200, b'{"status":"ok"}')
    connection.close()


def test_a_client_that_disconnects_mid_upload_is_one_quiet_line(
    live: Live, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    client_id, key = create_client(runtime)
    connection = live.connection()
    connection.request(
        "POST",
        f"/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}",
        headers={"code": key},
    )
    import json

    token = json.loads(connection.getresponse().read())["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for method, path, body in (
        ("PUT", "/v1/test/1", b'{"title": "T"}'),
        ("PUT", "/v1/test/1/candidates", b'[{"userId": 1, "candidateId": "c"}]'),
        (
            "POST",
            "/v1/test/1/candidates/1/events",
            b'{"eventId": "e", "event": "x", "timeStamp": "2026-01-01T00:00:00Z"}',
        ),
    ):
        connection.request(method, path, body=body, headers={**auth, "content-type": "application/json"})
        assert connection.getresponse().read()
    connection.close()

    with caplog.at_level(logging.INFO):
        raw = socket.create_connection(("127.0.0.1", live.port))
        raw.sendall(
            b"PUT /v1/test/1/candidates/1/events/e/files/big.bin HTTP/1.1\r\nhost: x\r\n"
            + f"authorization: Bearer {token}\r\ncontent-length: 10000000\r\n\r\n".encode()
            + b"x" * 100_000
        )
        time.sleep(1.0)
        raw.close()
        deadline = time.monotonic() + 10
        while not any("disconnected" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            time.sleep(0.1)
        time.sleep(0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.text
    quiet = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(quiet) == 1 and quiet[0].levelno == logging.INFO


def test_slow_header_connections_are_closed(live: Live) -> None:
    for first_bytes in (b"", b"G"):
        raw = socket.create_connection(("127.0.0.1", live.port))
        raw.settimeout(HEADER_TIMEOUT + 10)
        started = time.monotonic()
        raw.sendall(first_bytes)
        closed = False
        try:
            for byte in b"ET /healthz HTTP/1.1\r\nx-slow: " + b"a" * 100:
                raw.sendall(bytes([byte]))
                time.sleep(0.2)
                if time.monotonic() - started > HEADER_TIMEOUT + 5:
                    break
            closed = raw.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        took = time.monotonic() - started
        raw.close()
        assert closed, "the slow-header connection was not closed"
        assert took <= HEADER_TIMEOUT + 2.5, took


def test_keep_alive_connection_survives_between_quick_requests(live: Live) -> None:
    connection = live.connection()
    for _ in range(3):
        assert _get(connection, "/healthz")[0] == 200
        time.sleep(HEADER_TIMEOUT * 1.5)  # idle time between requests is the keep-alive's business
    connection.close()


def test_no_log_line_of_a_run_carries_a_credential(
    live: Live, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from examtrail.core.logging import install_redaction

    install_redaction()
    client_id, key = create_client(runtime)
    connection = live.connection()
    with caplog.at_level(logging.DEBUG):
        connection.request(
            "POST", f"/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}&code={key}"
        )
        token = json.loads(connection.getresponse().read())["access_token"]
        secrets = [key, token, "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj", "s3cr3t-pass"]
        for path in (
            f"/v1/test/1?access_token={token}",
            f"/v1/test/1?ACCESS_TOKEN={token}&x=1",
            f"/v1/subscription?token={token}",
            f"/oauth/token?client_id={client_id}&client_secret={key}",
            f"/api/authenticate/token/?client_id={client_id}&code={key}",
            f"/files/x?expires=1&sig={token}",
            f"/x?api_key={key}&password=s3cr3t-pass&secret=whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj",
            "/_test/boom?access_token=" + token,
        ):
            connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            connection.getresponse().read()
        connection.close()
        time.sleep(0.3)
    lines = [record.getMessage() for record in caplog.records]
    assert any("access_token=[redacted]" in line for line in lines), lines  # the access log was seen
    leaked = [line for line in lines if any(secret in line for secret in secrets)]
    assert not leaked, leaked
