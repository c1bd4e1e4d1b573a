"""Single-event ingestion beside the framework's floor, on both deployments (issue #15 item 3).

``python -m bench.single_events [--rounds 3] [--seconds 8] [--only pg|sqlite] [--out FILE]``

Each round on each deployment: wrk at 100 connections posting unique single events over
100 candidates, then ``GET /healthz`` at 50 connections on the same server; the stored
events are counted before and after, so every 2xx answer must be a stored event. PostgreSQL
runs ``examtrail serve --workers 2`` (broker: Redis); the embedded default is SQLite in one
process with its in-process worker.
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

LIVE_TEST_ID = 910_001
TENANT = "bench-single-events"


def _deployment(kind: str, work: Path, database: str) -> deploy.Deployment:
    if kind == "sqlite":
        return deploy.sqlite_deployment("single-sqlite", work)
    data = work / "single-pg"
    if data.exists():
        shutil.rmtree(data)
    env = deploy.common_env(
        data,
        EXAMTRAIL_DATABASE_URL=deploy.sqlalchemy_url(deploy.recreate_pg_database(database)),
        EXAMTRAIL_BROKER_URL=os.environ.get("BENCH_SINGLE_REDIS_URL", "redis://127.0.0.1:6379/13"),
    )
    return deploy.Deployment("single-pg", env, work / "logs")


def run_deployment(kind: str, rounds: int, seconds: float, work: Path, database: str) -> dict[str, Any]:
    target = _deployment(kind, work, database)
    target.migrate()
    target.start_api(workers=2 if kind == "pg" else 1)
    rows: list[dict[str, Any]] = []
    try:
        client_id, api_key = target.create_client(TENANT)
        token = target.token(client_id, api_key)
        users = measure.prepare_live_test(target.base_url, token, LIVE_TEST_ID, 100)
        auth = {"Authorization": f"Bearer {token}"}
        for n in range(rounds):
            before = measure.count_events(target.base_url, token, LIVE_TEST_ID)
            script = measure.single_event_script(LIVE_TEST_ID, users, f"r{n}-{time.time_ns()}")
            row = measure.beside_healthz(
                target.base_url,
                "single-event POST",
                100,
                seconds,
                lambda script=script: measure.wrk_run(  # type: ignore[misc]
                    f"{target.base_url}/v1/test/{LIVE_TEST_ID}/candidates/",
                    100,
                    seconds,
                    {**auth, "Content-Type": "application/json"},
                    script,
                    work,
                ),
            )
            stored = measure.count_events(target.base_url, token, LIVE_TEST_ID) - before
            answered = (row["result"]["requests"] or 0) - row["result"]["non_2xx"]
            row.update(stored_events=stored, answered_2xx=answered)
            rows.append(row)
            r, h = row["result"], row["healthz"]
            print(
                f"{kind} round {n + 1}: {r['requests_per_s'] or 0:,.0f} req/s, "
                f"p50 {r['p50_ms'] or 0:.1f} ms, "
                f"p99 {r['p99_ms'] or 0:.1f} ms, non-2xx {r['non_2xx']} {r['socket_errors']} | "
                f"/healthz {h['requests_per_s'] or 0:,.0f} req/s -> {row['ratio']:.2f}x | "
                f"stored {stored} (2xx answered {answered}; those in flight when wrk stops are stored too)",
                flush=True,
            )
    finally:
        target.stop()
        if kind == "pg":
            deploy.drop_pg_database(database)
    return {"rows": rows, "median_ratio": median(row["ratio"] for row in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", choices=["pg", "sqlite"], default=None)
    parser.add_argument("--work", type=Path, default=Path("var/bench-single"))
    parser.add_argument("--database", default=os.environ.get("BENCH_SINGLE_DB", "examtrail_bench_single"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for kind in ("pg", "sqlite"):
        if args.only in (None, kind):
            results[kind] = run_deployment(kind, args.rounds, args.seconds, args.work, args.database)
            print(f"{kind}: median ratio {results[kind]['median_ratio']:.2f}x", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
