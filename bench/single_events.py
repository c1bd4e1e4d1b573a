"""Single-event ingestion beside the framework's floor, on both deployments (issue #15 item 3).

``python -m bench.single_events [--rounds 3] [--seconds 8] [--only pg|sqlite] [--against SRC]``

Each round on each deployment: wrk at 100 connections posting unique single events over
100 candidates, between two runs of ``GET /healthz`` at 50 connections on the same server
(the floor is the higher of the two; both are printed); the stored
events are counted before and after: every 2xx answer is a stored event (those still in
flight when wrk stops are stored too, so at most 100 more for each run, counting the uneven
runs stopped and started again: each try posts eventIds of its own). PostgreSQL runs
``examtrail serve --workers 2`` (broker: Redis); the embedded default is SQLite in one
process with its in-process worker.

``--against SRC`` (the ``src`` folder of another checkout, e.g. ``git archive main src | tar
-x -C /tmp/main``) runs a second server of each deployment from that code, on its own
database, and alternates the rounds between the two: before/after side by side, in the
same minutes of a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from statistics import median
from typing import Any

from bench import deploy, measure
from bench.framework import _cpu_seconds

LIVE_TEST_ID = 910_001
TENANT = "bench-single-events"


def _deployment(kind: str, label: str, work: Path, database: str, src: Path | None) -> deploy.Deployment:
    name = f"single-{kind}-{label}"
    if kind == "sqlite":
        target = deploy.sqlite_deployment(name, work)
    else:
        data = work / name
        if data.exists():
            shutil.rmtree(data)
        env = deploy.common_env(
            data,
            EXAMTRAIL_DATABASE_URL=deploy.sqlalchemy_url(deploy.recreate_pg_database(f"{database}_{label}")),
            EXAMTRAIL_BROKER_URL=os.environ.get("BENCH_SINGLE_REDIS_URL", "redis://127.0.0.1:6379/13"),
        )
        target = deploy.Deployment(name, env, work / "logs")
    if src is not None:
        target.env["PYTHONPATH"] = str(src.resolve())  # the server processes import that code
    return target


def _round(
    target: deploy.Deployment, token: str, users: list[int], seconds: float, work: Path
) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    before = measure.count_events(target.base_url, token, LIVE_TEST_ID)
    script = measure.single_event_script(LIVE_TEST_ID, users, f"{target.name}-{time.time_ns()}")
    url = f"{target.base_url}/v1/test/{LIVE_TEST_ID}/candidates/"
    assert target.api is not None and target.api.proc is not None
    pid = target.api.proc.pid

    def posts() -> dict[str, Any]:
        # With the API processes' CPU per request: less disturbed by a shared machine's load.
        return measure.wrk_run(url, 100, seconds, auth, script, work, cpu=lambda: _cpu_seconds(pid))

    row = measure.beside_healthz(target.base_url, "single-event POST", 100, seconds, posts)
    row["stored_events"] = measure.count_events(target.base_url, token, LIVE_TEST_ID) - before
    # The uneven runs stopped before the kept one stored events too.
    row["answered_2xx"] = measure.answered_2xx(row["result"])
    return row


def run_deployment(
    kind: str, rounds: int, seconds: float, work: Path, database: str, against: Path | None
) -> dict[str, Any]:
    sources: dict[str, Path | None] = {"this": None}
    if against is not None:
        sources = {"against": against, "this": None}
    targets = {label: _deployment(kind, label, work, database, src) for label, src in sources.items()}
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label in targets}
    try:
        ready: dict[str, tuple[str, list[int]]] = {}
        for label, target in targets.items():
            target.migrate()
            target.start_api(workers=2 if kind == "pg" else 1)
            client_id, api_key = target.create_client(TENANT)
            token = target.token(client_id, api_key)
            ready[label] = (token, measure.prepare_live_test(target.base_url, token, LIVE_TEST_ID, 100))
        for n in range(rounds):
            for label, target in targets.items():
                row = _round(target, *ready[label], seconds, work)
                rows[label].append(row)
                r, h = row["result"], row["healthz"]
                print(
                    f"{kind} {label} round {n + 1}: {r['requests_per_s'] or 0:,.0f} req/s, "
                    f"p50 {r['p50_ms'] or 0:.1f} ms, p99 {r['p99_ms'] or 0:.1f} ms, "
                    f"non-2xx {r['non_2xx']} {r['socket_errors']}| API CPU {r['cpu_ms']:.2f} ms/req "
                    f"| {measure.healthz_floors(row)}: floor {h['requests_per_s'] or 0:,.0f} "
                    f"req/s -> {row['ratio']:.2f}x | "
                    f"stored {row['stored_events']}, 2xx {row['answered_2xx']}",
                    flush=True,
                )
    finally:
        for label, target in targets.items():
            target.stop()
            if kind == "pg":
                deploy.drop_pg_database(f"{database}_{label}")
    return {
        label: {
            "rows": found,
            "median_requests_per_s": median(row["result"]["requests_per_s"] or 0.0 for row in found),
            "median_ratio": median(row["ratio"] for row in found),
            "median_cpu_ms": median(row["result"]["cpu_ms"] for row in found),
        }
        for label, found in rows.items()
        if found
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", choices=["pg", "sqlite"], default=None)
    parser.add_argument("--against", type=Path, default=None, help="another checkout's src folder")
    parser.add_argument("--work", type=Path, default=Path("var/bench-single"))
    parser.add_argument("--database", default=os.environ.get("BENCH_SINGLE_DB", "examtrail_bench_single"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for kind in ("pg", "sqlite"):
        if args.only in (None, kind):
            results[kind] = run_deployment(
                kind, args.rounds, args.seconds, args.work, args.database, args.against
            )
            for label, section in results[kind].items():
                print(
                    f"{kind} {label}: median {section['median_requests_per_s']:,.0f} req/s, "
                    f"median ratio {section['median_ratio']:.2f}x, "
                    f"API CPU {section['median_cpu_ms']:.2f} ms/request",
                    flush=True,
                )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
