"""Benchmark of the review pages on the embedded default (SQLite, local store).

    uv run python -m bench.ui_pages [--events 5000] [--candidates 2000] [--runs 5]

Generates, in a throw-away data directory, one candidate with ``--events`` events and
a test of ``--candidates`` candidates, then times the HTML fragments the pages load
through the app (in process, over ASGI): the candidate timeline (target: under a second
for 5,000 events) and the test page, which must page rather than send every candidate.
With Debian's Chromium installed (``/usr/bin/chromium``) it also times, in a headless
browser driven by Playwright, the candidate page from navigation until all its events
are on screen with their local times. Not a timed test: it prints the figures (and
``--json`` writes them).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi.testclient import TestClient

from bench.generate import GenerateSpec, generate
from examtrail.app import create_app
from examtrail.auth import service as auth_service
from examtrail.core.db import build_engine, build_session_factory, transaction
from examtrail.core.migrate import upgrade
from examtrail.core.settings import Settings

TENANT = "bench"
TIMELINE_TEST, LIST_TEST = 7001, 7002
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _browser_timing(settings: Settings, path: str, token: str, events: int, runs: int) -> dict[str, Any]:
    """Navigation to every event on screen (local times filled in), in headless Chromium."""
    from playwright.sync_api import sync_playwright

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings_port(settings), log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        base = settings.public_url
        done = (
            f"() => document.querySelectorAll('li.event').length === {events}"
            " && document.querySelectorAll('li.event .local').length === "
            f"{events} && document.getElementById('content').getAttribute('aria-busy') === 'false'"
        )
        seconds = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/ui/")
            page.evaluate(
                "token => sessionStorage.setItem('examtrail.session',"
                " JSON.stringify({token, expiresAt: Date.now() + 3600000}))",
                token,
            )
            for _ in range(runs + 1):  # the first one warms up
                started = time.perf_counter()
                page.goto(f"{base}{path}")
                page.wait_for_function(done, timeout=60_000)
                seconds.append(time.perf_counter() - started)
            browser.close()
        seconds = seconds[1:]
        return {"url": path, "median_s": statistics.median(seconds), "max_s": max(seconds), "bytes": 0}
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def settings_port(settings: Settings) -> int:
    return int(settings.public_url.rsplit(":", 1)[1])


def _timed(http: TestClient, url: str, headers: dict[str, str], runs: int) -> dict[str, Any]:
    http.get(url, headers=headers)  # warm-up (templates compiled, caches filled)
    seconds, size = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        response = http.get(url, headers=headers)
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:500]
        size = len(response.content)
    return {"url": url, "median_s": statistics.median(seconds), "max_s": max(seconds), "bytes": size}


def run(events: int, candidates: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="examtrail-ui-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), public_url=f"http://127.0.0.1:{_free_port()}")
        upgrade(settings)
        generate(
            settings,
            GenerateSpec(
                test_id=TIMELINE_TEST,
                candidates=1,
                events_per_candidate=events,
                absent_candidates=0,
                tenant=TENANT,
            ),
            show_progress=False,
        )
        generate(
            settings,
            GenerateSpec(test_id=LIST_TEST, candidates=candidates, events_per_candidate=20, tenant=TENANT),
            show_progress=False,
        )
        engine = build_engine(settings)
        try:
            with transaction(build_session_factory(engine)) as session:
                client = auth_service.create_client(
                    session, tenant_name=TENANT, scopes=frozenset({"ingest", "export"}), name="bench"
                )
        finally:
            engine.dispose()
        with TestClient(create_app(settings)) as http:
            token = http.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client.client_id,
                    "client_secret": client.api_key,
                },
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            timeline_user = http.get(f"/v1/test/{TIMELINE_TEST}", headers=headers).json()
            assert timeline_user["events"] == events, timeline_user
            first_user = _first_user(http, headers)
            figures = {
                "events": events,
                "candidates": candidates,
                "candidate_page": _timed(
                    http, f"/ui/fragments/tests/{TIMELINE_TEST}/candidates/{first_user}", headers, runs
                ),
                "test_page": _timed(http, f"/ui/fragments/tests/{LIST_TEST}", headers, runs),
                "test_page_sorted_by_flags": _timed(
                    http, f"/ui/fragments/tests/{LIST_TEST}?sort=flags&dir=desc", headers, runs
                ),
                "tests_list": _timed(http, "/ui/fragments/tests", headers, runs),
            }
        if CHROMIUM.exists():
            figures["candidate_page_in_browser"] = _browser_timing(
                settings, f"/ui/tests/{TIMELINE_TEST}/candidates/{first_user}", token, events, runs
            )
        return figures


def _first_user(http: TestClient, headers: dict[str, str]) -> int:
    html = http.get(f"/ui/fragments/tests/{TIMELINE_TEST}", headers=headers).text
    marker = f'href="/ui/tests/{TIMELINE_TEST}/candidates/'
    start = html.index(marker) + len(marker)
    return int(html[start : html.index('"', start)])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000, help="events of the timeline's candidate")
    parser.add_argument("--candidates", type=int, default=2000, help="candidates of the listed test")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    result = run(args.events, args.candidates, args.runs)
    for name, figures in result.items():
        if not isinstance(figures, dict):
            continue
        print(
            f"{name:28} median {figures['median_s'] * 1000:7.1f} ms  max {figures['max_s'] * 1000:7.1f} ms"
            f"  {figures['bytes'] / 1024:8.1f} KiB  {figures['url']}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
