"""Helpers for the client tests: Examtrail servers for a module, a proxy that drops
connections, and generated input files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.deployment import PRODUCTION, server_env
from tests.support.processes import ExamtrailProcess, examtrail_env, run_cli
from tests.support.throttle import ThrottledProxy


class DroppingProxy(ThrottledProxy):
    """A throttled proxy that can cut one connection after ``drop_after`` bytes downstream,
    and records the first bytes (the request head) of every connection."""

    def __init__(self, target_host: str, target_port: int, bytes_per_second: int) -> None:
        super().__init__(target_host, target_port, bytes_per_second)
        self.drop_after: int | None = None
        self.dropped = 0
        self.requests: list[str] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        drop, self.drop_after = self.drop_after, None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._up(reader, upstream_writer),
            self._down(upstream_reader, writer, upstream_writer, drop),
            return_exceptions=True,
        )

    async def _up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        try:
            while chunk := await reader.read(16 * 1024):
                if first:
                    self.requests.append(chunk.decode("latin-1"))
                    first = False
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _down(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
        drop: int | None,
    ) -> None:
        started = time.monotonic()
        sent = 0
        try:
            while chunk := await reader.read(16 * 1024):
                if drop is not None and sent + len(chunk) > drop:
                    writer.write(chunk[: max(0, drop - sent)])
                    await writer.drain()
                    self.dropped += 1
                    writer.transport.abort()
                    upstream.transport.abort()
                    return
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                ahead = sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@dataclass
class Server:
    """One Examtrail deployment for a test module: API process (plus worker on the
    production stack), its environment and an API client with both scopes."""

    api: ExamtrailProcess
    env: dict[str, str]
    client_id: str = ""
    api_key: str = ""
    workers: list[ExamtrailProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.api.base_url

    def new_client(self, tenant: str) -> tuple[str, str]:
        created = run_cli(
            ["clients", "create", "--tenant", tenant, "--scopes", "ingest,export", "--json"], self.env
        )
        assert created.returncode == 0, created.stderr
        body = json.loads(created.stdout)
        return str(body["clientId"]), str(body["apiKey"])

    def cli_env(self, **extra: str) -> dict[str, str]:
        return {
            "EXAMTRAIL_URL": self.url,
            "EXAMTRAIL_CLIENT_ID": self.client_id,
            "EXAMTRAIL_API_KEY": self.api_key,
            **extra,
        }

    def stop(self) -> None:
        for process in [self.api, *self.workers]:
            process.stop()


def start_servers(
    tmp: Path,
    request: pytest.FixtureRequest,
    specs: list[dict[str, str]],
    ports: list[int | None] | None = None,
) -> list[Server]:
    """One deployment per entry of ``specs`` (extra environment), started in parallel
    (imports are slow on a loaded machine); ``ports`` fixes their API ports."""
    servers: list[Server] = []
    for n, extra in enumerate(specs):
        env = server_env(tmp / f"data{n}", request, **extra)
        migrated = run_cli(["db", "upgrade"], env)
        assert migrated.returncode == 0, migrated.stderr
        port = ports[n] if ports else None
        api = ExamtrailProcess.server(env, tmp / "logs", port=port, name=f"api{n}")
        server = Server(api, env)
        if PRODUCTION:
            server.workers.append(ExamtrailProcess.worker(env, tmp / "logs", name=f"worker{n}", threads=1))
        servers.append(server)
    try:
        for server in servers:
            for process in [server.api, *server.workers]:
                process.start(wait=False)
        for server in servers:
            server.api.wait_healthy()
            server.client_id, server.api_key = server.new_client("uni-client")
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def client_cli(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs ``examtrail-client`` (from this environment) with ``env`` added to a clean environment."""
    return subprocess.run(
        [sys.executable, "-c", "from examtrail_client.cli import main; main()", *args],
        env=examtrail_env(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def event(user_id: int, n: int, *, flagged: bool = False, pad: str = "") -> dict[str, Any]:
    """A well-formed event for candidate ``user_id`` (unique id ``e-<user>-<n>``)."""
    return {
        "eventId": f"e-{user_id}-{n}",
        "event": "flag" if flagged else ("network_lost" if n % 2 else "new_seb_login"),
        "timeStamp": f"2026-06-01T{9 + n // 3600 % 10:02d}:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
        "extraInfo": {"type": "ip", "value": "10.0.0.1" + pad} if n % 3 == 0 else None,
        "flaggingInfo": {
            "flagType": "suspicious",
            "flagSubTypes": ["phone", "note"],
            "comment": 'Phone, "on" the desk 📱',
            "severityLevel": "high",
        }
        if flagged
        else None,
        "userId": 9001 if flagged else None,
    }


def write_jsonl(path: Path, candidates: int, per_candidate: int, pad: str = "") -> int:
    """A JSON Lines file of ``candidates * per_candidate`` events, candidates interleaved."""
    lines = 0
    with path.open("w") as out:
        for n in range(per_candidate):
            for c in range(candidates):
                user_id = 1000 + c
                row = {"candidateUserId": user_id, "candidateId": f"C-{c}", **event(user_id, n, pad=pad)}
                out.write(json.dumps(row) + "\n")
                lines += 1
    return lines
