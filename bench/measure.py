"""The measurements: PostgreSQL baseline, exports through the API, ingestion, polling."""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson
import psycopg

from bench.deploy import Deployment, peak_rss_mb, read_status_kb, reset_peak_rss
from bench.generate import GeneratedCandidate, GeneratedEvent, GenerateSpec, Synthesizer

WRK_HINT = "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`"

# --- the baseline: PostgreSQL builds the same JSON by itself ---------------------------------

BASELINE_SQL = """
COPY (
  SELECT json_build_object(
    'userId', c.user_id,
    'candidateId', c.candidate_id,
    'events', COALESCE((
      SELECT json_agg(
        CASE WHEN e.file_count = 0 THEN e.doc::json
        ELSE replace(e.doc, '"attachedFiles":[]', '"attachedFiles":' || COALESCE((
          SELECT json_agg(json_build_object(
            'fileName', a.file_name, 'contentItemId', a.id, 'fileSize', a.size,
            'presignedUrl', a.storage_key) ORDER BY a.file_name)
          FROM attachments a WHERE a.event_pk = e.id), '[]'::json)::text)::json
        END
        ORDER BY e.occurred_at_ms, e.event_id)
      FROM events e WHERE e.candidate_pk = c.id), '[]'::json))
  FROM candidates c
  WHERE c.test_pk = (SELECT t.id FROM tests t JOIN tenants n ON n.id = t.tenant_id
                     WHERE n.name = '{tenant}' AND t.external_id = {test_id})
  ORDER BY c.user_id
) TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')
"""


def baseline_sql(tenant: str, test_id: int) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", tenant):
        raise ValueError("tenant name must be plain for the baseline SQL")
    return BASELINE_SQL.format(tenant=tenant, test_id=int(test_id))


def run_baseline(dsn: str, tenant: str, test_id: int, out: Path) -> dict[str, Any]:
    """psql runs ``COPY (SELECT json_build_object/json_agg ...) TO STDOUT`` into ``out``:
    one line per candidate (a single JSON value would pass PostgreSQL's 1 GB limit at 10M)."""
    psql = shutil.which("psql")
    if psql is None:
        raise RuntimeError("psql is required for the baseline (apt-get install -y postgresql-client)")
    sql = " ".join(baseline_sql(tenant, test_id).split())
    with out.open("wb") as handle:
        started = time.perf_counter()
        subprocess.run([psql, dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], stdout=handle, check=True)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": out.stat().st_size}


# --- comparing files by content -------------------------------------------------------------


def _canonical(candidate: dict[str, Any]) -> bytes:
    """A candidate as canonical JSON bytes (sorted keys), signed links reduced to presence."""
    for event in candidate["events"]:
        for item in event["attachedFiles"]:
            item["presignedUrl"] = bool(item["presignedUrl"])
    return orjson.dumps(candidate, option=orjson.OPT_SORT_KEYS)


def baseline_candidates(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                candidate = orjson.loads(line)
                yield len(candidate["events"]), _canonical(candidate)


def export_candidates(path: Path) -> Iterator[tuple[int, bytes]]:
    document = orjson.loads(path.read_bytes())
    candidates = document.pop("candidates")
    del document
    candidates.reverse()  # pop from the end: each candidate is freed once compared
    while candidates:
        candidate = candidates.pop()
        yield len(candidate["events"]), _canonical(candidate)


def same_content(export_file: Path, baseline_file: Path) -> dict[str, Any]:
    """Same candidates, events, fields and order (pre-signed links only checked for presence)."""
    left = export_candidates(export_file)
    right = baseline_candidates(baseline_file)
    candidates = events = 0
    mismatch: int | None = None
    for index, pair in enumerate(zip(left, right, strict=False)):
        (count, a), (_, b) = pair
        if a != b:
            mismatch = index
            break
        candidates += 1
        events += count
    rest = next(left, None) is not None or next(right, None) is not None
    return {
        "equal": mismatch is None and not rest,
        "candidates": candidates,
        "events": events,
        "first_mismatch": mismatch,
    }


# --- exports through the HTTP API -------------------------------------------------------------


def export_via_api(
    deployment: Deployment,
    token: str,
    test_id: int,
    download_to: Path | None = None,
    params: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Order an export (with ``params``: its options), poll until finished; wall time and the
    exporting process's peak RSS."""
    runner = deployment.worker or deployment.api
    assert runner is not None and runner.proc is not None
    pid = runner.proc.pid
    idle_rss = read_status_kb(pid, "VmRSS") / 1024
    peak_reset = reset_peak_rss(pid)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=deployment.base_url, headers=headers, timeout=60) as client:
        started = time.perf_counter()
        query: list[tuple[str, str | int | float | bool | None]] = list(params or [])
        ordered = client.post(f"/v1/test/{test_id}/events", params=query)
        ordered.raise_for_status()
        job_id = ordered.json()["jobId"]
        polls = 0
        while True:
            status = client.get(f"/v1/test/{test_id}/events", params={"jobId": job_id})
            polls += 1
            body = status.json()
            if body["status"] in ("finished", "failed", "cancelled"):
                break
            time.sleep(0.02)
        wall = time.perf_counter() - started
    if body["status"] != "finished":
        raise RuntimeError(f"export {job_id} ended {body['status']}: {body.get('error')}")
    result = {
        "seconds": wall,
        "peak_rss_mb": peak_rss_mb(pid),
        "idle_rss_mb": idle_rss,
        "peak_reset": peak_reset,
        "file_bytes": body["fileSize"],
        "events": body["eventsWritten"],
        "candidates": body["candidatesDone"],
        "sha256": body["sha256"],
        "job_id": job_id,
        "polls": polls,
    }
    if download_to is not None:
        with httpx.stream("GET", body["downloadUrl"], timeout=300) as response:
            response.raise_for_status()
            with download_to.open("wb") as handle:
                for chunk in response.iter_bytes(1024 * 1024):
                    handle.write(chunk)
    return result


def candidate_with_events(dsn: str, test_id: int) -> int:
    """The userId of one candidate of test ``test_id`` that has events (for filtered exports)."""
    with psycopg.connect(dsn.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT c.user_id FROM candidates c JOIN tests t ON t.id = c.test_pk "
            "WHERE t.external_id = %s AND EXISTS (SELECT 1 FROM events e WHERE e.candidate_pk = c.id) "
            "ORDER BY c.user_id LIMIT 1",
            (test_id,),
        ).fetchone()
    assert row is not None, f"test {test_id} has no events"
    return int(row[0])


# --- ingestion: the batch API against COPY ------------------------------------------------------


def ingest_dataset(
    spec: GenerateSpec, batch_size: int
) -> tuple[list[GeneratedCandidate], list[tuple[int, bytes]], list[tuple[int, GeneratedEvent]]]:
    """Candidates, request bodies (userId, JSON array) and the same events as rows."""
    synth = Synthesizer(spec)
    people = [p for p in synth.candidates() if p.event_count]
    bodies: list[tuple[int, bytes]] = []
    rows: list[tuple[int, GeneratedEvent]] = []
    for person in people:
        events = synth.events(person)
        rows.extend((person.user_id, ev) for ev in events)
        for start in range(0, len(events), batch_size):
            chunk = events[start : start + batch_size]
            bodies.append((person.user_id, orjson.dumps([ev.api_json() for ev in chunk])))
    return people, bodies, rows


def ingest_via_api(
    deployment: Deployment,
    token: str,
    test_id: int,
    people: Sequence[GeneratedCandidate],
    bodies: Sequence[tuple[int, bytes]],
    clients: int,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=deployment.base_url, headers=headers, timeout=300) as client:
        client.put(f"/v1/test/{test_id}", json={"title": "ingestion benchmark"}).raise_for_status()
        roster = [{"userId": p.user_id, "candidateId": p.candidate_id} for p in people]
        client.put(f"/v1/test/{test_id}/candidates", json=roster).raise_for_status()
    local = threading.local()

    def post(item: tuple[int, bytes]) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=deployment.base_url, headers=headers, timeout=300)
        user_id, body = item
        response = local.client.post(f"/v1/test/{test_id}/candidates/{user_id}/events", content=body)
        if response.status_code != 201:
            raise RuntimeError(f"ingestion answered {response.status_code}: {response.text[:300]}")
        return int(response.json()["created"])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        created = sum(pool.map(post, bodies))
    seconds = time.perf_counter() - started
    return {
        "events": created,
        "seconds": seconds,
        "events_per_s": created / seconds,
        "clients": clients,
        "batches": len(bodies),
    }


def copy_rows(
    dsn: str,
    tenant: str,
    test_id: int,
    people: Sequence[GeneratedCandidate],
    rows: Iterable[tuple[int, GeneratedEvent]],
) -> dict[str, Any]:
    """COPY the same events into a fresh test: the database's own ingestion rate."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM tenants WHERE name = %s", (tenant,))
        tenant_row = cur.fetchone()
        assert tenant_row is not None
        cur.execute(
            "INSERT INTO tests (tenant_id, external_id, title, created_at, updated_at) "
            "VALUES (%s, %s, 'copy benchmark', %s, %s) RETURNING id",
            (tenant_row[0], test_id, now, now),
        )
        test_row = cur.fetchone()
        assert test_row is not None
        test_pk = test_row[0]
        with cur.copy("COPY candidates (test_pk, user_id, candidate_id, created_at) FROM STDIN") as copy:
            for p in people:
                copy.write_row((test_pk, p.user_id, p.candidate_id, now))
        cur.execute("SELECT user_id, id FROM candidates WHERE test_pk = %s", (test_pk,))
        pks: dict[int, int] = {int(user): int(pk) for user, pk in cur.fetchall()}
        prepared = [
            (test_pk, pks[user_id], ev.event_id, ev.event, ev.occurred_at_ms, ev.user_id,
             ev.flagging_info["flagType"] if ev.flagging_info else None, ev.doc, 0, now)
            for user_id, ev in rows
        ]  # fmt: skip
        conn.commit()
        columns = (
            "test_pk, candidate_pk, event_id, event, occurred_at_ms, creator_user_id, flag_type, doc, "
            "file_count, created_at"
        )
        started = time.perf_counter()
        with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
            for row in prepared:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - started
    return {"events": len(prepared), "seconds": seconds, "events_per_s": len(prepared) / seconds}


# --- polling: status calls under load --------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if match is None:
        raise ValueError(f"unexpected wrk duration {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    percentiles = {
        int(p): _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors:.*", output)
    return {
        "p50_ms": percentiles.get(50),
        "p75_ms": percentiles.get(75),
        "p90_ms": percentiles.get(90),
        "p99_ms": percentiles.get(99),
        "requests_per_s": float(rps.group(1)) if rps else None,
        "requests": int(total.group(1)) if total else None,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(0) if socket_errors else "",
    }


def poll_with_wrk(url: str, token: str, connections: int, seconds: float, threads: int = 1) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    result = run_wrk_evenly(lambda _attempt: command, url, connections)
    result.update({"tool": "wrk 4 (closed loop)", "connections": connections})
    return result


def poll_with_python(url: str, token: str, connections: int, seconds: float) -> dict[str, Any]:
    """Fallback when wrk is missing (the smoke test on a bare machine): threads with keep-alive."""
    parts = urlsplit(url)
    path = parts.path + ("?" + parts.query if parts.query else "")
    deadline = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0]

    def loop(slot: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            latencies[slot].append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                errors[0] += 1
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    flat = sorted(v for slot in latencies for v in slot)
    cuts = statistics.quantiles(flat, n=100) if len(flat) > 1 else [flat[0] if flat else 0.0] * 99
    return {
        "p50_ms": cuts[49],
        "p75_ms": cuts[74],
        "p90_ms": cuts[89],
        "p99_ms": cuts[98],
        "requests_per_s": len(flat) / elapsed,
        "requests": len(flat),
        "non_2xx": errors[0],
        "socket_errors": "",
        "tool": "python threads (fallback: " + WRK_HINT + ")",
        "connections": connections,
        "raw": "",
    }


def poll(url: str, token: str, connections: int, seconds: float) -> dict[str, Any]:
    if shutil.which("wrk"):
        return poll_with_wrk(url, token, connections, seconds)
    print(WRK_HINT + "; using the slower Python fallback")
    return poll_with_python(url, token, connections, seconds)


# --- framework-bound routes beside the framework's floor (GET /healthz) ----------------------

# Unique single events, as live exam clients send them: one per request, spread over the
# candidates, ids unique across runs (the run tag) and across wrk threads.
_SINGLE_EVENT_LUA = """
local tag = "{tag}-" .. tostring(wrk_try or 1)
local users = {{{users}}}
local counter = 0
local thread_id = 0
local next_id = 0
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end
function init(args)
  thread_id = tonumber(wrk.thread:get("thread_id")) or 0
end
request = function()
  counter = counter + 1
  local user = users[(counter % #users) + 1]
  local body = string.format(
    '{{"eventId":"%s-%d-%d","event":"network_lost","timeStamp":"2026-06-01T10:00:00Z"}}',
    tag, thread_id, counter)
  return wrk.format("POST", "{path_prefix}" .. user .. "/events", nil, body)
end
"""

_POST_LUA = 'wrk.method = "POST"\n'


# --- how a multi-process server's connections are spread over its processes ---------------------
#
# ``examtrail serve --workers N`` is uvicorn's supervisor with N children sharing the one listening
# socket it bound: whichever child wakes first accepts what is queued, and wrk opens all its
# connections at once, so one child often took most or all of them (bench/notes.md, "Issue #15,
# sixth pass"). A run whose busiest process holds more than 1.2 times its fair share (60% with two
# processes) is stopped at once and started again, up to ``EVEN_TRIES`` times.

EVEN_TRIES = 30
_SS_PID = re.compile(r"pid=(\d+)")


def parse_ss_pids(output: str) -> dict[int, int]:
    """Sockets per process from ``ss -H...p`` output: one socket a line, its holders' pids in
    ``users:(("name",pid=N,fd=M),...)`` (a socket held by several processes counts for each)."""
    counts: dict[int, int] = {}
    for line in output.splitlines():
        for pid in {int(found) for found in _SS_PID.findall(line)}:
            counts[pid] = counts.get(pid, 0) + 1
    return counts


def serving_pids(listeners: Iterable[int], parent_of: Callable[[int], int | None]) -> list[int]:
    """The processes that accept connections: those holding the listening socket, less any whose
    children hold it too (uvicorn's supervisor binds the socket; its children accept)."""
    held = set(listeners)
    return sorted(held - {parent_of(pid) for pid in held})


def spread_of(pids: Iterable[int], established: dict[int, int]) -> list[int]:
    """Established connections of each of ``pids`` (0 for one that holds none), busiest first."""
    return sorted((established.get(pid, 0) for pid in pids), reverse=True)


def is_even(spread: Sequence[int]) -> bool:
    """No process holds more than 1.2 times its fair share (60% of the connections with two)."""
    total = sum(spread)
    if len(spread) < 2 or total == 0:
        return True
    return max(spread) * len(spread) * 5 <= total * 6


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def connection_spread(port: int) -> list[int] | None:
    """Established connections per process of the server listening on ``port`` on this machine,
    busiest first; None when there is nothing to balance (one process, no ``ss``, a remote server)."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    port_filter = f"( sport = :{port} )"
    listening = subprocess.run([ss, "-Htlnp", port_filter], capture_output=True, text=True, check=False)
    pids = serving_pids(parse_ss_pids(listening.stdout), _parent_of)
    if len(pids) < 2:
        return None
    established = subprocess.run(
        [ss, "-Htnp", "state", "established", port_filter], capture_output=True, text=True, check=False
    )
    return spread_of(pids, parse_ss_pids(established.stdout))


class WrkTry(Protocol):
    """One started wrk run: its connection spread once connected, then stopped early or finished."""

    def spread(self) -> list[int] | None: ...

    def abort(self) -> dict[str, Any]: ...

    def finish(self) -> dict[str, Any]: ...


def until_even(start: Callable[[int], WrkTry], tries: int = EVEN_TRIES) -> dict[str, Any]:
    """Start runs until one's connections are spread evenly (:func:`is_even`) and keep that one,
    run to its end; an uneven run is stopped as soon as its spread is known. After ``tries``
    uneven runs the last is kept (``even`` False). The result records ``connections_per_process``,
    ``tries`` and the stopped runs (``uneven_runs``: their spread, requests and non-2xx answers,
    which a count of stored events includes). Without a spread (one process), the run as is."""
    stopped: list[dict[str, Any]] = []
    for attempt in range(1, tries + 1):
        run = start(attempt)
        spread = run.spread()
        if spread is None:
            return run.finish()
        even = is_even(spread)
        if even or attempt == tries:
            result = run.finish()
            result.update({"connections_per_process": spread, "tries": attempt, "even": even})
            if stopped:
                result["uneven_runs"] = stopped
            return result
        partial = run.abort()
        stopped.append(
            {
                "connections_per_process": spread,
                "requests": partial.get("requests") or 0,
                "non_2xx": partial.get("non_2xx") or 0,
            }
        )
    raise ValueError("tries must be at least 1")


def answered_2xx(result: dict[str, Any]) -> int:
    """The 2xx answers of a run and of the uneven runs stopped before it."""
    runs = [result, *result.get("uneven_runs", [])]
    return sum((run.get("requests") or 0) - (run.get("non_2xx") or 0) for run in runs)


class _WrkProcess:
    """wrk running in the background; its connection spread is read once it has connected."""

    def __init__(
        self, command: list[str], port: int | None, connections: int, cpu: Callable[[], float] | None
    ) -> None:
        self.port = port
        self.connections = connections
        self.cpu = cpu
        self.cpu_before = cpu() if cpu is not None else 0.0
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def spread(self, patience: float = 2.0) -> list[int] | None:
        if self.port is None:
            return None
        deadline = time.monotonic() + patience
        while True:
            time.sleep(0.2)
            found = connection_spread(self.port)
            if found is None or sum(found) >= self.connections:
                return found
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return found

    def abort(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)  # wrk prints its figures so far and exits
        out, _ = self.proc.communicate()
        return parse_wrk(out)

    def finish(self) -> dict[str, Any]:
        out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise subprocess.CalledProcessError(self.proc.returncode, self.proc.args, out, err)
        result = parse_wrk(out)
        result["raw"] = out
        if self.cpu is not None:
            # The API processes' CPU per answered request: a figure the other loads of a shared
            # machine disturb far less than the rate (of the kept run only).
            result["cpu_ms"] = (self.cpu() - self.cpu_before) * 1000 / max(1, result["requests"] or 0)
        return result


def run_wrk_evenly(
    command_for: Callable[[int], list[str]],
    url: str,
    connections: int,
    cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """wrk (``command_for(try number)``, ``url`` last) until its connections are spread evenly over
    the server's processes (:func:`until_even`); ``cpu``: the server's CPU seconds, for ``cpu_ms``."""
    port = urlsplit(url).port
    return until_even(lambda attempt: _WrkProcess(command_for(attempt), port, connections, cpu))


def wrk_run(
    url: str,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    script: str | None = None,
    work: Path | None = None,
    *,
    cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """One closed-loop wrk run (``WRK_HINT`` when missing); the parsed figures. On a server of
    several processes, the first run whose connections are spread evenly (:func:`until_even`)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError(WRK_HINT)
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    script_paths: list[Path] = []

    def command_for(attempt: int) -> list[str]:
        if script is None:
            return [*command, url]
        # Each try's script knows its number (``wrk_try``): a run started again after an uneven
        # one must not send the stopped run's requests again (single events: the same eventIds).
        path = (work or Path("/tmp")) / f"wrk-{time.monotonic_ns()}.lua"
        path.write_text(f"wrk_try = {attempt}\n{script}")
        script_paths.append(path)
        return [*command, "-s", str(path), url]

    try:
        result = run_wrk_evenly(command_for, url, connections, cpu)
    finally:
        for path in script_paths:
            path.unlink(missing_ok=True)
    result.update({"connections": connections, "seconds": seconds})
    return result


def beside_healthz(
    base_url: str, label: str, connections: int, seconds: float, run: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``run`` between two runs of ``GET /healthz`` at 50 connections on the same server.

    The floor is the higher of the two: one run alone dipped to less than half of the
    others in the same minute on a shared machine, and a floor measured low makes the
    ratio look better than it is. Both runs are kept (``healthz_before``, ``healthz_after``).

    On a server of several processes each of the three runs is one whose connections were spread
    evenly over them (:func:`until_even`, done by :func:`wrk_run`): a run where one process held
    them all measured that process alone, less than half the floor of an even one."""
    before = wrk_run(f"{base_url}/healthz", 50, seconds)
    route = run()
    after = wrk_run(f"{base_url}/healthz", 50, seconds)
    floor = max(before, after, key=lambda found: found["requests_per_s"] or 0.0)
    ratio = (route["requests_per_s"] or 0.0) / floor["requests_per_s"] if floor["requests_per_s"] else 0.0
    for found in (route, before, after):
        found.pop("raw", None)
    return {
        "route": label,
        "connections": connections,
        "result": route,
        "healthz": floor,
        "healthz_before": before,
        "healthz_after": after,
        "ratio": ratio,
    }


def healthz_floors(row: dict[str, Any]) -> str:
    """The row's two /healthz rates, as printed beside its ratio (with each run's connections per
    server process, where measured: the route's own, then the two /healthz runs')."""
    runs = [row.get(key) or {} for key in ("healthz_before", "healthz_after")]
    rates = [found.get("requests_per_s") or 0.0 for found in runs]
    text = f"/healthz {rates[0]:,.0f} before, {rates[1]:,.0f} after"
    spreads = [spread_text(found) for found in (row.get("result") or {}, *runs)]
    if any(spreads):
        text += " (connections per process: " + "; ".join(s or "-" for s in spreads) + ")"
    return text


def spread_text(result: dict[str, Any]) -> str:
    """``27/23`` (``27/23 after 3 tries``; ``48/2, uneven after 20 tries``), or "" when not measured."""
    spread = result.get("connections_per_process")
    if not spread:
        return ""
    text = "/".join(str(n) for n in spread)
    tries = result.get("tries", 1)
    if not result.get("even", True):
        return f"{text}, uneven after {tries} tries"
    return text if tries == 1 else f"{text} after {tries} tries"


def single_event_script(test_id: int, user_ids: Sequence[int], tag: str) -> str:
    return _SINGLE_EVENT_LUA.format(
        tag=tag,
        users=",".join(str(u) for u in user_ids),
        path_prefix=f"/v1/test/{test_id}/candidates/",
    )


def prepare_live_test(base_url: str, token: str, test_id: int, candidates: int) -> list[int]:
    """A test with ``candidates`` registered candidates for the single-event load; their userIds."""
    headers = {"Authorization": f"Bearer {token}"}
    users = [500_000 + n for n in range(candidates)]
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        client.put(f"/v1/test/{test_id}", json={"title": "live single events"}).raise_for_status()
        roster = [{"userId": u, "candidateId": f"live-{u}"} for u in users]
        client.put(f"/v1/test/{test_id}/candidates", json=roster).raise_for_status()
    return users


def count_events(base_url: str, token: str, test_id: int) -> int:
    """Events stored on ``test_id`` (GET /v1/test/{testId} counts them)."""
    response = httpx.get(
        f"{base_url}/v1/test/{test_id}", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    response.raise_for_status()
    return int(response.json().get("events", 0))


def framework_routes(
    base_url: str,
    token: str,
    client_id: str,
    api_key: str,
    *,
    live_test_id: int,
    status_url: str | None,
    seconds: float,
    work: Path,
    tag: str,
) -> dict[str, Any]:
    """Status call (50 connections), single-event POST (100) and the token call (50), each
    beside the same server's /healthz rate."""
    if shutil.which("wrk") is None:
        print(WRK_HINT + "; framework-bound routes skipped")
        return {"rows": [], "skipped": WRK_HINT}
    auth = {"Authorization": f"Bearer {token}"}
    rows: list[dict[str, Any]] = []
    if status_url is not None:
        rows.append(
            beside_healthz(
                base_url,
                "status of a finished job",
                50,
                seconds,
                lambda: wrk_run(status_url, 50, seconds, auth),
            )
        )
    users = prepare_live_test(base_url, token, live_test_id, 100)
    before = count_events(base_url, token, live_test_id)
    script = single_event_script(live_test_id, users, tag)
    single = beside_healthz(
        base_url,
        "single-event POST (unique events)",
        100,
        seconds,
        lambda: wrk_run(
            f"{base_url}/v1/test/{live_test_id}/candidates/",
            100,
            seconds,
            {**auth, "Content-Type": "application/json"},
            script,
            work,
        ),
    )
    stored = count_events(base_url, token, live_test_id) - before
    single["stored_events"] = stored
    rows.append(single)
    token_url = f"{base_url}/api/authenticate/token/?grant_type=authorization_code&client_id={client_id}"
    rows.append(
        beside_healthz(
            base_url,
            "token call",
            50,
            seconds,
            lambda: wrk_run(token_url, 50, seconds, {"code": api_key}, _POST_LUA, work),
        )
    )
    return {"rows": rows}


# --- the upload-only floor: the export's bytes into the store without the database ------------


def upload_floor(store: Any, size: int, repeats: int = 3) -> dict[str, Any]:
    """Time ``size`` bytes streamed in 256 KiB chunks through ``store.open_writer`` (what the
    export's writer thread does), nothing else; the median of ``repeats``."""
    chunk = bytes(range(256)) * 1024
    runs = []
    for n in range(repeats):
        key = f"bench/upload-floor-{n}.bin"
        started = time.perf_counter()
        writer = store.open_writer(key, content_type="application/octet-stream")
        left = size
        while left > 0:
            piece = chunk if left >= len(chunk) else chunk[:left]
            writer.write(piece)
            left -= len(piece)
        writer.commit()
        runs.append(time.perf_counter() - started)
        store.delete(key)
    return {"bytes": size, "runs": runs, "median_s": statistics.median(runs)}
