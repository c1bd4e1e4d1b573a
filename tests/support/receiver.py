"""A real HTTP webhook receiver for tests: a stdlib ``http.server`` program in its own process.

It records every request (method, path, headers, raw body, the status it answered) and
answers each path as told. Run it as ``python tests/support/receiver.py --port N``;
tests drive it with the ``Receiver`` class below, which talks to its control endpoints:

* ``GET  /_control/health``    -> 200
* ``POST /_control/behaviour`` ``{"path", "status", "sequence", "retry_after", "delay"}``:
  the n-th call to ``path`` (counting from this call) answers ``sequence[n]`` while there
  is one, then ``status``; non-2xx answers carry ``Retry-After`` when given; ``delay``
  seconds pass before answering (slow endpoints: a large ``delay`` is a hanging one);
  ``drip`` > 0 sends the answer one byte every ``drip`` seconds (a dribbling endpoint);
  ``script``: the n-th call answers ``script[n]`` (a dict, see ``Step``) while there is one
  (a misbehaving endpoint: huge bodies, redirects, connections closed or reset mid-answer).
* ``GET  /_control/requests``  -> every recorded request (body base64)
* ``POST /_control/reset``     -> forget requests and behaviours

Only the standard library is used, in both the program and the client.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CONTROL = "/_control/"


# --- the program -----------------------------------------------------------------------


# How a scripted call ends (``Step.mode``):
#   answer   - the status, headers and a body of ``body_size`` bytes;
#   close    - the connection is closed without a byte of answer;
#   reset    - the connection is reset (RST) without a byte of answer;
#   partial  - half a status line, then a reset;
#   truncate - status line and headers announcing more body than is sent, then a reset.
MODES = ("answer", "close", "reset", "partial", "truncate")


@dataclass(frozen=True)
class Step:
    """One scripted answer."""

    status: int = 200
    mode: str = "answer"
    retry_after: str | None = None
    location: str | None = None
    delay: float = 0.0
    body_size: int = 0


@dataclass
class Behaviour:
    status: int = 200
    sequence: list[int] = field(default_factory=list)
    retry_after: str | None = None
    delay: float = 0.0
    drip: float = 0.0
    script: list[Step] = field(default_factory=list)
    calls: int = 0


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self.behaviours: dict[str, Behaviour] = {}

    def reset(self) -> None:
        with self.lock:
            self.records.clear()
            self.behaviours.clear()


class Handler(BaseHTTPRequestHandler):
    server_version = "TestReceiver/1"
    protocol_version = "HTTP/1.1"
    state: State

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _control(self, body: bytes) -> None:
        name = self.path[len(CONTROL) :].split("?", 1)[0]
        state = self.state
        if name == "health":
            self._answer(200, {"ok": True})
        elif name == "requests":
            with state.lock:
                records = list(state.records)
            self._answer(200, records)
        elif name == "reset":
            state.reset()
            self._answer(200, {"ok": True})
        elif name == "behaviour":
            spec = json.loads(body or b"{}")
            behaviour = Behaviour(
                status=int(spec.get("status", 200)),
                sequence=[int(s) for s in spec.get("sequence", [])],
                retry_after=spec.get("retry_after"),
                delay=float(spec.get("delay", 0.0)),
                drip=float(spec.get("drip", 0.0)),
                script=[Step(**step) for step in spec.get("script", [])],
            )
            with state.lock:
                state.behaviours[spec["path"]] = behaviour
            self._answer(200, {"ok": True})
        else:
            self._answer(404, {"error": "unknown control endpoint"})

    def _handle(self) -> None:
        body = self._body()
        if self.path.startswith(CONTROL):
            self._control(body)
            return
        path = self.path.split("?", 1)[0]
        state = self.state
        with state.lock:
            behaviour = state.behaviours.setdefault(path, Behaviour())
            index = behaviour.calls
            behaviour.calls += 1
            status = behaviour.sequence[index] if index < len(behaviour.sequence) else behaviour.status
            step = behaviour.script[index] if index < len(behaviour.script) else None
            record: dict[str, Any] = {
                "seq": len(state.records),
                "time": time.time(),
                "method": self.command,
                "path": path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": base64.b64encode(body).decode(),
                "status": None,  # filled in once answered
                "mode": step.mode if step is not None else None,
            }
            state.records.append(record)
            delay, retry_after, drip = behaviour.delay, behaviour.retry_after, behaviour.drip
        if step is not None:
            self._scripted(step, record)
            return
        if delay:
            time.sleep(delay)
        if drip:
            self._drip(status, drip, record)
            return
        headers = {"retry-after": retry_after} if retry_after and not 200 <= status < 300 else {}
        try:
            self._answer(status, {"status": status}, headers)
        finally:
            with state.lock:
                record["status"] = status

    def _scripted(self, step: Step, record: dict[str, Any]) -> None:
        """Answer (or not) as ``step`` says; ``record["status"]`` is the status sent, or -1."""
        if step.delay:
            time.sleep(step.delay)
        answered = -1
        try:
            if step.mode == "answer":
                self._send_head(step, step.body_size)
                chunk = b"x" * 65536
                left = step.body_size
                while left > 0:
                    self.wfile.write(chunk[: min(left, len(chunk))])
                    left -= len(chunk)
                self.wfile.flush()
                answered = step.status
            elif step.mode == "truncate":
                self._send_head(step, step.body_size + 1000)
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                answered = step.status
                self._reset()
            elif step.mode == "partial":
                self.wfile.write(b"HTTP/1.1 2")
                self.wfile.flush()
                self._reset()
            elif step.mode == "reset":
                self._reset()
            else:  # close
                self.wfile.flush()
        except OSError:  # the sender gave up first (a slow answer past its deadline)
            answered = -1
        self.close_connection = True
        with self.state.lock:
            record["status"] = answered

    def _send_head(self, step: Step, length: int) -> None:
        self.send_response(step.status)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(length))
        if step.retry_after is not None:
            self.send_header("retry-after", step.retry_after)
        if step.location is not None:
            self.send_header("location", step.location)
        self.end_headers()

    def _reset(self) -> None:
        """Abort the connection with a TCP reset (SO_LINGER 0), not an orderly close."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _drip(self, status: int, drip: float, record: dict[str, Any]) -> None:
        """Answer one byte at a time: a long header dribbled out, every byte well within a read timeout."""
        answer = (f"HTTP/1.1 {status} OK\r\nx-slow: {'a' * 200}\r\ncontent-length: 0\r\n\r\n").encode()
        try:
            for index in range(len(answer)):
                self.wfile.write(answer[index : index + 1])
                self.wfile.flush()
                time.sleep(drip)
        except OSError:  # the sender gave up and closed the connection
            with self.state.lock:
                record["status"] = -1
            self.close_connection = True
            return
        with self.state.lock:
            record["status"] = status

    do_POST = _handle
    do_GET = _handle
    do_PUT = _handle
    do_DELETE = _handle


def serve(port: int) -> None:
    Handler.state = State()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


# --- the client --------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    seq: int
    time: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None
    mode: str | None = None  # the scripted step's mode, for scripted calls

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")

    @property
    def event(self) -> str | None:
        try:
            value = self.json().get("event")
        except (ValueError, AttributeError):
            return None
        return str(value) if value is not None else None


class Receiver:
    """Starts the receiver program on a port and drives it."""

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        from tests.support.ports import free_port

        self.port = port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def start(self, timeout: float = 15.0) -> Receiver:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"receiver exited with {self.proc.returncode}: {self.log_path.read_text()}"
                )
            try:
                self._call("GET", "health")
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"receiver not up after {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def _call(self, method: str, name: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.base_url + CONTROL + name, data=data, method=method)
        request.add_header("content-type", "application/json")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def configure(
        self,
        path: str = "/hook",
        *,
        status: int = 200,
        fail_first: int = 0,
        fail_status: int = 503,
        sequence: list[int] | None = None,
        retry_after: str | None = None,
        delay: float = 0.0,
        drip: float = 0.0,
        script: list[Step] | None = None,
    ) -> None:
        """How ``path`` answers from now on (its call counter restarts)."""
        answers = list(sequence or []) or [fail_status] * fail_first
        spec = {
            "path": path,
            "status": status,
            "sequence": answers,
            "retry_after": retry_after,
            "delay": delay,
            "drip": drip,
            "script": [dataclasses.asdict(step) for step in script or []],
        }
        self._call("POST", "behaviour", spec)

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def requests(self, path: str | None = None) -> list[Received]:
        found = [
            Received(
                seq=r["seq"],
                time=r["time"],
                method=r["method"],
                path=r["path"],
                headers=r["headers"],
                body=base64.b64decode(r["body"]),
                status=r["status"],
                mode=r.get("mode"),
            )
            for r in self._call("GET", "requests")
        ]
        return [r for r in found if path is None or r.path == path]

    def notifications(self, path: str = "/hook") -> list[Received]:
        """Requests to ``path`` other than subscription verifications."""
        return [r for r in self.requests(path) if r.event != "verification"]

    def wait_for(
        self,
        predicate: Callable[[list[Received]], bool],
        path: str = "/hook",
        timeout: float = 20.0,
        what: str = "the expected requests",
    ) -> list[Received]:
        """Poll the notifications to ``path`` until ``predicate`` holds; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = self.notifications(path)
            except (OSError, urllib.error.URLError):
                found = []
            if predicate(found):
                return found
            if time.monotonic() > deadline:
                summary = [(r.seq, r.status, r.webhook_id, r.event) for r in found]
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {summary}")
            time.sleep(0.05)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.port)


if __name__ == "__main__":
    main()
