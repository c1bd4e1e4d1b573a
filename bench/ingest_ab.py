"""Batch ingestion beside COPY, several rounds in one run (issue #15 item 4).

    uv run python -m bench.ingest_ab [--rounds 3] [--variant before=/path/to/other/src]

A fresh PostgreSQL database and one ``examtrail serve --workers 2`` (local store) per variant:
this checkout's code, and each ``--variant NAME=SRC`` (another checkout's ``src``, put first on
the server's ``PYTHONPATH``). Each round sends the same 200,000 events through the batch API of
every variant in turn (5,000-event batches, 4 clients, a new test each) and COPYs them into
the events table; the ratios to that round's COPY are printed, then their medians.

On a shared machine the rates mislead (4 clients, 2 API processes and 4 backends take a larger
share of loaded cores than COPY's one client and one backend), so each variant's CPU time per
event is printed too: its API processes, the database backends serving them, and this
process's clients. Those are what a quiet machine's rate depends on.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from statistics import median

import psycopg
from tests.support.ports import free_port
from tests.support.processes import ExamtrailProcess

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


def _cpu_snapshot(server: deploy.Deployment, dsn: str) -> tuple[dict[int, float], dict[int, float], float]:
    """CPU seconds so far of the API processes, of the database's backends, and of this process."""
    assert server.api is not None and server.api.proc is not None
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return (
        deploy.cpu_of(deploy.process_tree_pids(server.api.proc.pid)),
        deploy.cpu_of([int(pid) for (pid,) in rows]),
        time.process_time(),
    )


def _cpu_used(
    before: tuple[dict[int, float], dict[int, float], float],
    after: tuple[dict[int, float], dict[int, float], float],
) -> tuple[float, float, float]:
    """Seconds used between two snapshots: API, backends (new ones from zero), clients."""
    api = sum(cpu - before[0].get(pid, 0.0) for pid, cpu in after[0].items())
    backends = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items())
    return api, backends, after[2] - before[2]


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
    # Per variant and round: CPU microseconds per event of the API, backends and clients.
    cpu: dict[str, list[tuple[float, float, float]]] = {name: [] for name in servers}
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
                before = _cpu_snapshot(server, dsn)
                api = measure.ingest_via_api(server, tokens[name], test_id, people, bodies, args.clients)
                used = _cpu_used(before, _cpu_snapshot(server, dsn))
                cpu[name].append(tuple(seconds * 1e6 / api["events"] for seconds in used))
                rates[name] = api["events_per_s"]
            test_id += 1
            copy = measure.copy_rows(dsn, TENANT, test_id, people, rows)
            parts = []
            for name in servers:
                rate = rates[name]
                ratios[name].append(rate / copy["events_per_s"])
                api_us, backend_us, client_us = cpu[name][-1]
                parts.append(
                    f"{name} {rate:,.0f}/s = {ratios[name][-1]:.2f}x (CPU us/event: API {api_us:.1f}, "
                    f"backends {backend_us:.1f}, clients {client_us:.1f})"
                )
            print(f"round {rnd + 1}: COPY {copy['events_per_s']:,.0f}/s; " + "; ".join(parts), flush=True)
        print("median x COPY: " + "; ".join(f"{name} {median(r):.2f}" for name, r in ratios.items()))
        print(
            "median CPU us/event (API, backends, clients): "
            + "; ".join(
                f"{name} " + ", ".join(f"{median(part):.1f}" for part in zip(*rows, strict=True))
                for name, rows in cpu.items()
            )
        )
    finally:
        for server in servers.values():
            server.stop()
        deploy.drop_pg_database(DATABASE)


if __name__ == "__main__":
    main()
