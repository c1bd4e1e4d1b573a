"""The status and token calls beside ``GET /healthz`` on one server, without the rest of the bench.

``python -m bench.framework [--sqlite] [--rounds 3] [--seconds 8] [--profile out.txt]``

PostgreSQL + SeaweedFS S3 + Redis with ``examtrail serve --workers 2`` (the bench's multi-process
deployment), or the embedded default (SQLite, one process) with ``--sqlite``. A finished job of a
small test is made first; then each round runs wrk at 50 connections on the status URL, the
token call and ``/healthz``, and prints requests/s, p50/p99 and the ratios. ``--profile`` records
py-spy (``--nonblocking --subprocesses``) during one extra status run and writes its top frames.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.support.ports import free_port
from tests.support.processes import ExamtrailProcess

from bench import deploy, measure

TEST_ID = 4242
DATABASE = os.environ.get("BENCH_FRAMEWORK_DB", "examtrail_bench_framework")


def _start_api(dep: deploy.Deployment, workers: int) -> None:
    """``dep.start_api`` with a longer start-up allowance (a loaded shared machine)."""
    proc = ExamtrailProcess.server(dep.env, dep.log_dir, port=free_port(), name=f"{dep.name}-api")
    if workers > 1:
        proc.args += ["--workers", str(workers)]
    proc.start(timeout=240)
    dep.processes.append(proc)
    dep.api = proc


def _prepare(dep: deploy.Deployment) -> tuple[str, str, str, str]:
    client_id, api_key = dep.create_client("framework")
    token = dep.token(client_id, api_key)
    users = measure.prepare_live_test(dep.base_url, token, TEST_ID, 3)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=dep.base_url, headers=headers, timeout=60) as client:
        for n, user in enumerate(users):
            client.post(
                f"/v1/test/{TEST_ID}/candidates/{user}/events",
                json={"eventId": f"e{n}", "event": "network_lost", "timeStamp": "2026-06-01T10:00:00Z"},
            ).raise_for_status()
    job_id = measure.export_via_api(dep, token, TEST_ID)["job_id"]
    return client_id, api_key, token, job_id


def _row(label: str, result: dict[str, Any]) -> str:
    return (
        f"{label:<8} {result['requests_per_s'] or 0:>8,.0f} req/s  p50 {result['p50_ms'] or 0:>7.2f} ms  "
        f"p99 {result['p99_ms'] or 0:>7.2f} ms  non-2xx {result['non_2xx']}  "
        f"API CPU {result['cpu_ms']:.3f} ms/request"
        + (f"  connections per process {spread}" if (spread := measure.spread_text(result)) else "")
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants (the API processes)."""
    total = 0.0
    for one in deploy.process_tree_pids(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _wrk(dep: deploy.Deployment, *args: Any) -> dict[str, Any]:
    """One wrk run (with several API processes: one whose connections are spread evenly over
    them), with the API processes' CPU time per answered request: a figure the other loads of a
    shared machine disturb far less than the rate."""
    assert dep.api is not None and dep.api.proc is not None
    pid = dep.api.proc.pid
    return measure.wrk_run(*args, cpu=lambda: _cpu_seconds(pid))


def _profile(base_url: str, status_url: str, token: str, pid: int, out: Path, seconds: float) -> None:
    spy = Path(sys.executable).parent / "py-spy"
    raw = out.with_suffix(".raw.txt")
    recorder = subprocess.Popen(
        [
            str(spy),
            "record",
            "--nonblocking",
            "--subprocesses",
            "--format",
            "raw",
            "-o",
            str(raw),
            "-d",
            str(int(seconds) + 1),
            "-p",
            str(pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    measure.wrk_run(status_url, 50, seconds, {"Authorization": f"Bearer {token}"})
    recorder.wait(timeout=120)
    summarize(raw, out)


def summarize(raw: Path, out: Path) -> None:
    """Inclusive share of samples per frame function (collapsed stacks from ``py-spy --format raw``)."""
    totals: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any("select" in f and "selectors" in f for f in frames[-1:]) or "epoll" in frames[-1]:
            continue  # an idle event loop
        samples += count
        for frame in {_function(f) for f in frames if " (" in f}:
            totals[frame] = totals.get(frame, 0) + count
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:80]
    lines = [f"{samples} busy samples"] + [f"{n / samples:6.1%}  {frame}" for frame, n in ranked]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:40]))


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0]})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sqlite", action="store_true", help="the embedded default (one process)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-framework-"))
    (work / "logs").mkdir()
    try:
        if args.sqlite:
            dep = deploy.sqlite_deployment("sqlite", work)
            dep.migrate()
            _start_api(dep, 1)
            _run(dep, args)
        else:
            deploy.recreate_pg_database(DATABASE)
            with deploy.seaweedfs(work) as s3:
                bucket = s3.create_bucket("examtrail-framework")
                dep = deploy.postgres_deployment("pg", DATABASE, s3, bucket, work)
                dep.migrate()
                _start_api(dep, args.workers)
                dep.start_worker(threads=1)
                _run(dep, args)
            deploy.drop_pg_database(DATABASE)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(dep: deploy.Deployment, args: argparse.Namespace) -> None:
    try:
        client_id, api_key, token, job_id = _prepare(dep)
        base = dep.base_url
        status_url = f"{base}/v1/test/{TEST_ID}/events?jobId={job_id}"
        token_url = f"{base}/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}"
        auth = {"Authorization": f"Bearer {token}"}
        ratios: dict[str, list[float]] = {"status": [], "token": []}
        rates: dict[str, list[float]] = {"status": [], "token": [], "healthz": []}
        for rnd in range(args.rounds):
            status = _wrk(dep, status_url, 50, args.seconds, auth)
            health = _wrk(dep, f"{base}/healthz", 50, args.seconds)
            post = {"code": api_key}
            tok = _wrk(dep, token_url, 50, args.seconds, post, measure._POST_LUA, Path(tempfile.gettempdir()))
            health2 = _wrk(dep, f"{base}/healthz", 50, args.seconds)
            print(f"round {rnd + 1}")
            runs = (("status", status), ("healthz", health), ("token", tok), ("healthz", health2))
            for label, result in runs:
                print("  " + _row(label, result))
            h1, h2 = health["requests_per_s"] or 1.0, health2["requests_per_s"] or 1.0
            ratios["status"].append((status["requests_per_s"] or 0) / h1)
            ratios["token"].append((tok["requests_per_s"] or 0) / h2)
            rates["status"].append(status["requests_per_s"] or 0)
            rates["token"].append(tok["requests_per_s"] or 0)
            rates["healthz"] += [h1, h2]
        print(
            f"median: status {statistics.median(rates['status']):,.0f} req/s "
            f"({statistics.median(ratios['status']):.2f}x healthz), token "
            f"{statistics.median(rates['token']):,.0f} req/s ({statistics.median(ratios['token']):.2f}x), "
            f"healthz {statistics.median(rates['healthz']):,.0f} req/s"
        )
        if any(run["non_2xx"] for run in (status, tok)) and dep.api is not None:
            print("non-2xx answers; the API log ends:\n" + dep.api.log()[-3000:])
        if args.profile is not None:
            assert dep.api is not None and dep.api.proc is not None
            _profile(base, status_url, token, dep.api.proc.pid, args.profile, args.seconds)
    finally:
        dep.stop()


if __name__ == "__main__":
    main()
