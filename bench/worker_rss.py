"""Idle and peak RSS of the process that runs exports, per deployment and format.

    uv run python -m bench.worker_rss [--events 1000000] [--deployments s3,local,embedded]

Generates the test once in a private PostgreSQL database (kept between runs; ``--regenerate``
to redo it), then per deployment starts the processes the benchmark's way, runs one warm-up
export and each format, and reads ``/proc/<pid>/status`` of the exporting process: VmRSS
before the first export (idle after start-up), after the warm-up (idle, long-running) and
VmHWM during each export (peak, reset through ``/proc/<pid>/clear_refs`` before each).

Deployments: ``s3`` (``examtrail worker``, PostgreSQL, SeaweedFS, Redis), ``local`` (the
same worker on the local store), ``embedded`` (``examtrail serve`` with no broker on
PostgreSQL and the local store). ``--src DIR`` runs the processes from another checkout's
``src`` (PYTHONPATH), for side-by-side A/B runs against the same data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import psycopg
from tests.support.processes import ExamtrailProcess

from bench import deploy, measure
from bench.generate import GenerateSpec, generate
from examtrail.core.settings import Settings

TENANT = "bench"
MAIN_TEST_ID = 1
WARMUP_TEST_ID = 2
FORMATS: list[tuple[str, list[tuple[str, str]]]] = [
    ("json", []),
    ("jsonl", [("format", "jsonl")]),
    ("csv", [("format", "csv")]),
    ("json+gzip", [("compression", "gzip")]),
    ("jsonl+gzip", [("format", "jsonl"), ("compression", "gzip")]),
]


def _has_test(dsn: str, test_id: int, events: int) -> bool:
    with psycopg.connect(dsn) as conn:
        try:
            row = conn.execute(
                "SELECT count(*) FROM events e JOIN candidates c ON c.id = e.candidate_pk "
                "JOIN tests t ON t.id = c.test_pk WHERE t.external_id = %s",
                (test_id,),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return bool(row and row[0] >= events)


def _status_mb(pid: int, field: str) -> float:
    return deploy.read_status_kb(pid, field) / 1024


def _wait_started(runner: ExamtrailProcess, logged: int, timeout: float = 120.0) -> None:
    """Until the worker says it runs (imports take seconds on a loaded machine); ``logged``:
    the log's size before the start (the file is appended to)."""
    deadline = time.monotonic() + timeout
    while b"worker running" not in runner.log_path.read_bytes()[logged:]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker did not start:\n{runner.log()}")
        time.sleep(0.2)


def _mappings(pid: int, top: int = 12) -> list[tuple[str, float]]:
    """The largest resident mappings (MB) by backing file, anonymous memory as ``[anon]``."""
    sizes: dict[str, float] = {}
    name = "?"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            name = head[5] if len(head) > 5 else "[anon]"
            name = name.rsplit("/", 1)[-1]
        elif head and head[0] == "Rss:":
            sizes[name] = sizes.get(name, 0.0) + int(head[1]) / 1024
    return sorted(sizes.items(), key=lambda item: -item[1])[:top]


def _measure(dep: deploy.Deployment, pid: int, repeats: int) -> dict[str, Any]:
    client_id, api_key = dep.create_client(TENANT)
    token = dep.token(client_id, api_key)
    time.sleep(1.0)
    result: dict[str, Any] = {"idle_start_mb": _status_mb(pid, "VmRSS")}
    measure.export_via_api(dep, token, WARMUP_TEST_ID)
    time.sleep(0.5)
    result["idle_warm_mb"] = _status_mb(pid, "VmRSS")
    result["mappings_warm"] = _mappings(pid)
    rows = []
    for label, params in FORMATS:
        runs = [measure.export_via_api(dep, token, MAIN_TEST_ID, params=params) for _ in range(repeats)]
        row = {
            "format": label,
            "peak_mb": max(r["peak_rss_mb"] for r in runs),
            "idle_before_mb": max(r["idle_rss_mb"] for r in runs),
            "seconds": sorted(r["seconds"] for r in runs)[len(runs) // 2],
            "bytes": runs[0]["file_bytes"],
        }
        print(
            f"  {dep.name} {label}: idle {row['idle_before_mb']:.0f} MB, "
            f"peak {row['peak_mb']:.0f} MB, {row['seconds']:.2f} s"
        )
        rows.append(row)
    result["formats"] = rows
    result["idle_end_mb"] = _status_mb(pid, "VmRSS")
    return result


def _upload_floors(settings: Settings, part_mibs: list[int], size: int, repeats: int) -> list[dict[str, Any]]:
    """A bare upload of ``size`` bytes per part size, interleaved; time and this process's
    peak RSS over its idle RSS (the writer's own buffers)."""
    from examtrail.core.memory import release_free_memory, tune_allocator
    from examtrail.storage.s3 import S3ObjectStore

    tune_allocator()
    pid = os.getpid()
    stores = {
        mib: S3ObjectStore.from_settings(settings.model_copy(update={"s3_part_size": mib << 20}))
        for mib in part_mibs
    }
    measure.upload_floor(stores[part_mibs[0]], size, repeats=1)  # connections, first-use costs
    runs: dict[int, list[float]] = {mib: [] for mib in part_mibs}
    peaks: dict[int, list[float]] = {mib: [] for mib in part_mibs}
    for _ in range(max(3, repeats)):
        for mib, store in stores.items():
            release_free_memory()
            idle = _status_mb(pid, "VmRSS")
            deploy.reset_peak_rss(pid)
            runs[mib].append(measure.upload_floor(store, size, repeats=1)["median_s"])
            peaks[mib].append(deploy.peak_rss_mb(pid) - idle)
    return [
        {
            "part_mib": mib,
            "runs": runs[mib],
            "median_s": statistics.median(runs[mib]),
            "peak_over_idle_mb": max(peaks[mib]),
        }
        for mib in part_mibs
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--per-candidate", type=int, default=500)
    parser.add_argument("--database", default="examtrail_worker_rss")
    parser.add_argument("--work", type=Path, default=Path("/tmp/examtrail-worker-rss"))
    parser.add_argument("--deployments", default="s3,local,embedded")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--src", type=Path, help="run examtrail from this src directory")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the processes")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--part-sizes", default="", help="MiB list, e.g. 5,8: also time a bare upload per part size"
    )
    parser.add_argument("--upload-mb", type=int, default=200)
    args = parser.parse_args()

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    dsn = deploy.pg_url(args.database)
    if args.regenerate:
        deploy.recreate_pg_database(args.database)
    else:
        with psycopg.connect(deploy.PG_ADMIN_DSN, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.database,)).fetchone():
                conn.execute(f'CREATE DATABASE "{args.database}"')
    deploy.flush_redis_db()
    extra = dict(item.split("=", 1) for item in args.env)
    if args.src:
        extra["PYTHONPATH"] = str(args.src.resolve())
    results: dict[str, Any] = {"events": args.events, "env": extra}
    wanted = args.deployments.split(",")
    with deploy.seaweedfs(work) as s3:
        bucket = s3.create_bucket("examtrail-rss")
        pg = deploy.postgres_deployment("s3", args.database, s3, bucket, work)
        pg.migrate()
        candidates = max(1, args.events // args.per_candidate)
        if not _has_test(dsn, MAIN_TEST_ID, candidates * args.per_candidate):
            spec = GenerateSpec(
                test_id=MAIN_TEST_ID,
                candidates=candidates,
                events_per_candidate=args.per_candidate,
                tenant=TENANT,
            )
            generated = generate(pg.settings, spec, replace=True)
            print(f"generated {generated.events:,} events in {generated.seconds:.0f} s")
        warm = GenerateSpec(test_id=WARMUP_TEST_ID, candidates=10, events_per_candidate=100, tenant=TENANT)
        generate(pg.settings, warm, replace=True, show_progress=False)
        if args.part_sizes:
            results["upload"] = _upload_floors(
                pg.settings, [int(x) for x in args.part_sizes.split(",")], args.upload_mb << 20, args.repeats
            )
        local_env = {k: v for k, v in pg.env.items() if not k.startswith("EXAMTRAIL_S3_")}
        local_env.pop("EXAMTRAIL_STORAGE", None)
        for name in wanted:
            if name == "s3":
                env = dict(pg.env)
            elif name == "local":
                env = local_env
            elif name == "embedded":
                env = {k: v for k, v in local_env.items() if k != "EXAMTRAIL_BROKER_URL"}
            else:
                raise SystemExit(f"unknown deployment {name}")
            env.update(extra)
            dep = deploy.Deployment(name, env, work / "logs")
            try:
                # Like Deployment.start_api, with time for imports on a loaded machine.
                api = ExamtrailProcess.server(dep.env, dep.log_dir, name=f"{name}-api")
                dep.processes.append(api)
                dep.api = api.start(timeout=240)
                worker_log = work / "logs" / f"{name}-worker.log"
                logged = worker_log.stat().st_size if worker_log.exists() else 0
                runner = dep.api if name == "embedded" else dep.start_worker(threads=2)
                assert runner is not None and runner.proc is not None
                if name != "embedded":
                    _wait_started(runner, logged)
                results[name] = _measure(dep, runner.proc.pid, args.repeats)
            finally:
                dep.stop()
                deploy.flush_redis_db()
    summary = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(summary)
    for row in results.get("upload", []):
        print(
            f"upload {row['part_mib']} MiB parts: median {row['median_s']:.2f} s "
            f"{[round(x, 2) for x in row['runs']]}, peak over idle {row['peak_over_idle_mb']:.1f} MB"
        )
    for name in wanted:
        r = results[name]
        peaks = ", ".join(f"{f['format']} {f['peak_mb']:.0f}" for f in r["formats"])
        print(
            f"{name}: idle start {r['idle_start_mb']:.0f} MB, warm {r['idle_warm_mb']:.0f} MB, "
            f"end {r['idle_end_mb']:.0f} MB; peak MB: {peaks}"
        )
    with contextlib.suppress(OSError):
        os.sync()


if __name__ == "__main__":
    main()
