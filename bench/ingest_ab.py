"""Batch ingestion beside COPY, several rounds in one run (issue #15 item 4).

    uv run python -m bench.ingest_ab [--rounds 3] [--variant before=/path/to/other/src]

A fresh PostgreSQL database and one ``examtrail serve --workers 2`` (local store) per variant:
this checkout's code, and each ``--variant NAME=SRC`` (another checkout's ``src``, put first on
the server's ``PYTHONPATH``). Each round sends the same 200,000 events through the batch API of
every variant in turn (5,000-event batches, 4 clients, a new test each) and COPYs them into
the events table; the ratios to that round's COPY are printed, then their medians.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from statistics import median

from tests.support.processes import ExamtrailProcess, free_port

from bench import deploy, measure
from bench.generate import GenerateSpec

TENANT = "bench-ingest"
DATABASE = os.environ.get("BENCH_INGEST_DB", "examtrail_bench_ingest_ab")


def _start_api(server: deploy.Deployment) -> None:
    """``examtrail serve --workers 2``, allowed longer than the usual minute to come up (the
    machine is shared)."""
    proc = ExamtrailProcess.server(server.env, server.log_dir, port=free_port(), name=f"{server.name}-api")
    proc.args += ["--workers", "2"]
    server.processes.append(proc)
    server.api = proc
    proc.start(timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--variant", action="append", default=[], help="NAME=SRC")
    args = parser.parse_args()
    work = Path(os.environ.get("BENCH_WORK", "var/bench-ingest"))
    work.mkdir(parents=True, exist_ok=True)
    dsn = deploy.recreate_pg_database(DATABASE)
    base_env = deploy.common_env(
        work / "data",
        EXAMTRAIL_DATABASE_URL=deploy.sqlalchemy_url(dsn),
        EXAMTRAIL_BROKER_URL=deploy.REDIS_URL,
    )
    variants: dict[str, dict[str, str]] = {"this": base_env}
    for item in args.variant:
        name, _, src = item.partition("=")
        variants[name] = {**base_env, "PYTHONPATH": str(Path(src).resolve())}
    logs = work / "logs"
    servers = {name: deploy.Deployment(f"ingest-{name}", env, logs) for name, env in variants.items()}
    ratios: dict[str, list[float]] = {name: [] for name in servers}
    try:
        next(iter(servers.values())).migrate()
        tokens = {}
        for name, server in servers.items():
            _start_api(server)
            client_id, api_key = server.create_client(TENANT)
            tokens[name] = server.token(client_id, api_key)
        test_id = 1000
        for rnd in range(args.rounds):
            spec = GenerateSpec(
                test_id=test_id,
                candidates=max(1, args.events // args.batch),
                events_per_candidate=args.batch,
                absent_candidates=0,
                seed=7 + rnd,
                tenant=TENANT,
            )
            people, bodies, rows = measure.ingest_dataset(spec, args.batch)
            rates = {}
            # Every other round in the opposite order: neither variant always runs first.
            for name, server in list(servers.items())[:: 1 if rnd % 2 == 0 else -1]:
                test_id += 1
                api = measure.ingest_via_api(server, tokens[name], test_id, people, bodies, args.clients)
                rates[name] = api["events_per_s"]
            test_id += 1
            copy = measure.copy_rows(dsn, TENANT, test_id, people, rows)
            parts = []
            for name in servers:
                rate = rates[name]
                ratios[name].append(rate / copy["events_per_s"])
                parts.append(f"{name} {rate:,.0f}/s = {ratios[name][-1]:.2f}x")
            print(f"round {rnd + 1}: COPY {copy['events_per_s']:,.0f}/s; " + "; ".join(parts), flush=True)
        print("median x COPY: " + "; ".join(f"{name} {median(r):.2f}" for name, r in ratios.items()))
    finally:
        for server in servers.values():
            server.stop()
        deploy.drop_pg_database(DATABASE)


if __name__ == "__main__":
    main()
