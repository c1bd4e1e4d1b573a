"""Benchmark of the review pages on the embedded default (SQLite, local store).

    uv run python -m bench.ui_pages [--events 5000] [--candidates 2000] [--runs 5]

Generates, in a throw-away data directory, one candidate with ``--events`` events and
a test of ``--candidates`` candidates, then times the HTML fragments the pages load
through the app (in process, over ASGI): the candidate timeline (target: under a second
for 5,000 events) and the test page, which must page rather than send every candidate.
Not a timed test: it prints the figures (and ``--json`` writes them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from bench.generate import GenerateSpec, generate
from examtrail.app import create_app
from examtrail.auth import service as auth_service
from examtrail.core.db import build_engine, build_session_factory, transaction
from examtrail.core.migrate import upgrade
from examtrail.core.settings import Settings

TENANT = "bench"
TIMELINE_TEST, LIST_TEST = 7001, 7002


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
        settings = Settings(data_dir=Path(tmp))
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
            return {
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
    for name in ("candidate_page", "test_page", "test_page_sorted_by_flags", "tests_list"):
        figures = result[name]
        print(
            f"{name:28} median {figures['median_s'] * 1000:7.1f} ms  max {figures['max_s'] * 1000:7.1f} ms"
            f"  {figures['bytes'] / 1024:8.1f} KiB  {figures['url']}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
