"""Single events from many live exam clients at once, through the real HTTP server
(uvicorn in a thread, as ``examtrail serve`` runs it): every request succeeds and every
event is stored. On SQLite this is the case that answered 503 "database is locked" when
threads waiting for the single write lock filled the threadpool (issue #15)."""

from __future__ import annotations

import http.client as httplib
import json
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from examtrail.app import create_app
from examtrail.core.server import uvicorn_options
from examtrail.ingest.models import Event
from examtrail.runtime import Runtime
from tests.support.api import seed_test
from tests.support.ports import free_port

CLIENTS = 100
EVENTS_PER_CLIENT = 3


@pytest.fixture
def live_port(runtime: Runtime) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        create_app(runtime=runtime),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        backlog=CLIENTS * 2,
        **uvicorn_options(runtime.settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=30)


def test_a_hundred_concurrent_single_event_writers_all_succeed(
    http: TestClient, headers: dict[str, str], runtime: Runtime, live_port: int
) -> None:
    seed_test(http, headers, test_id=77, candidates=CLIENTS, events_per_candidate=0)
    start = threading.Barrier(CLIENTS)
    statuses: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        connection = http_client = httplib.HTTPConnection("127.0.0.1", live_port, timeout=120)
        try:
            start.wait()
            for k in range(EVENTS_PER_CLIENT):
                body = json.dumps(
                    {"eventId": f"live-{n}-{k}", "event": "network_lost", "timeStamp": "2026-06-01T10:00:00Z"}
                )
                http_client.request(
                    "POST",
                    f"/v1/test/77/candidates/{100 + n}/events",
                    body=body,
                    headers={**headers, "Content-Type": "application/json"},
                )
                response = http_client.getresponse()
                payload = response.read()
                with lock:
                    statuses.append(response.status)
                    if response.status != 201:
                        failures.append(f"{response.status} {payload[:200]!r}")
        except Exception as exc:  # a refused or dropped connection is a failure too
            with lock:
                failures.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures[:5]
    assert statuses == [201] * (CLIENTS * EVENTS_PER_CLIENT)
    with runtime.sessions() as session:
        stored = session.scalar(select(func.count()).select_from(Event).where(Event.event_id.like("live-%")))
    assert stored == CLIENTS * EVENTS_PER_CLIENT
