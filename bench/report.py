"""RESULTS.md from the results of one benchmark run."""

from __future__ import annotations

from typing import Any

from bench.measure import spread_text

SPREAD_NOTE = (
    " With several API processes, each run is one whose connections were spread evenly over them "
    "(the busiest holding at most 1.2 times its fair share, 60% of them with two): an uneven run "
    "is stopped as soon as its connections are counted and started again. The connections column "
    "and the /healthz column show each kept run's connections per process (busiest first) and, "
    "where it took more than one, the tries (bench/notes.md, issue #15, sixth pass)."
)

SECTIONS = ("Machine", "Baseline", "Export", "Scale", "Ingestion", "Polling", "Targets")


def _row(section: dict[str, Any] | None, prefix: str) -> dict[str, Any] | None:
    for row in (section or {}).get("rows", []):
        if row["route"].startswith(prefix):
            return row  # type: ignore[no-any-return]
    return None


def history_row(results: dict[str, Any], commit: str) -> dict[str, Any]:
    """The headline figures of one run, for the history table."""
    baseline = results["baseline"]["median_s"]
    status = _row(results.get("framework_pg"), "status")
    peaks = [results["export_pg"]["peak_rss_mb"]]
    peaks += [r["peak_rss_mb"] for r in results.get("formats", {}).get("rows", [])]
    peaks += [p[k] for p in results["scale"]["points"] for k in p if k.endswith("peak_rss_mb")]
    single_pg = _row(results.get("framework_pg"), "single")
    single_sqlite = _row(results.get("framework_embedded"), "single")
    embedded = results.get("export_embedded")
    return {
        "date": results["machine"]["date"],
        "commit": commit,
        "events": results["dataset"]["events"],
        "export_pg_x": results["export_pg"]["median_s"] / baseline,
        "export_embedded_x": embedded["median_s"] / baseline if embedded else None,
        "peak_rss_mb": max(peaks),
        "ingest_x_copy": results["ingestion"]["ratio"],
        "status_rps": status["result"]["requests_per_s"] if status else results["polling"]["requests_per_s"],
        "status_x_healthz": status["ratio"] if status else None,
        "single_x_healthz_pg": single_pg["ratio"] if single_pg else None,
        "single_x_healthz_sqlite": single_sqlite["ratio"] if single_sqlite else None,
    }


def _floor(row: dict[str, Any]) -> str:
    """The /healthz rate a ratio was taken against, with the two runs it is the higher of."""
    rate = _f(row["healthz"]["requests_per_s"], 0)
    if "healthz_before" not in row:  # results of earlier runs: one /healthz run, after the route
        return rate
    runs = [_f(row[key]["requests_per_s"], 0) for key in ("healthz_before", "healthz_after")]
    spreads = [spread_text(row[key]) for key in ("healthz_before", "healthz_after")]
    if not any(spreads):  # results of earlier runs, or one process: no spread measured
        return f"{rate} ({runs[0]} before, {runs[1]} after)"
    per_process = f"connections per process {spreads[0] or '-'}, {spreads[1] or '-'}"
    return f"{rate} ({runs[0]} before, {runs[1]} after; {per_process})"


def _connections(row: dict[str, Any]) -> str:
    """The route's connection count, with their spread over the server's processes where measured."""
    spread = spread_text(row["result"])
    return f"{row['connections']} ({spread})" if spread else str(row["connections"])


def _has_spread(row: dict[str, Any]) -> bool:
    runs = [row["result"], row.get("healthz_before") or {}, row.get("healthz_after") or {}]
    return any(spread_text(run) for run in runs)


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def render_markdown(results: dict[str, Any], notes: str = "") -> str:
    m = results["machine"]
    c = results["config"]
    lines: list[str] = []
    add = lines.append
    add("# Examtrail benchmark results")
    add("")
    add(
        f"One run of `{'make bench (smoke)' if c['smoke'] else 'make bench'}` on {m['date']}; "
        f"every figure below comes from that run, on the same data ({results['duration_s']:.0f} s in all)."
    )
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("| --- | --- |")
    add(f"| CPU | {m['cpu']} ({m['cores']} cores) |")
    add(f"| memory | {m['memory_gib']} GiB |")
    add(f"| OS | {m['os']} |")
    add(f"| Python / PostgreSQL | {m['python']} / {m['postgresql']} |")
    add(f"| load average at start | {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])} |")
    add(f"| load tool | {m['wrk']} |")
    add("")
    d = results["dataset"]
    add(
        f"Data: `python -m bench.generate` — {d['candidates']:,} candidates ({c['candidates']:,} with "
        f"{c['events']} events each, the rest without events), {d['events']:,} events: "
        f"{d['flagged']:,} flagged with a comment, {d['with_extra_info']:,} with extraInfo, "
        f"{d['with_files']:,} with an attached file ({d['objects']:,} objects in the store); "
        f"loaded by COPY in {d['seconds']:.1f} s."
    )
    add("")

    b = results["baseline"]
    add("## Baseline")
    add("")
    add(
        'PostgreSQL builds the same JSON content by itself: `psql -c "COPY (SELECT json_build_object('
        "'userId', …, 'events', json_agg(e.doc::json … ORDER BY timeStamp, eventId)) FROM candidates …) "
        "TO STDOUT\"` into a file, one candidate per line (a single value would pass PostgreSQL's 1 GB "
        "limit at 10M events). Attachments are built by `json_agg(json_build_object(...))` with the "
        "storage key in place of the signed link (PostgreSQL cannot sign)."
    )
    add("")
    add("| run | seconds | bytes |")
    add("| --- | ---: | ---: |")
    for n, run in enumerate(b["runs"], 1):
        add(f"| {n} | {_f(run['seconds'], 3)} | {run['bytes']:,} |")
    add(f"| **median** | **{_f(b['median_s'], 3)}** | |")
    add("")

    add("## Export")
    add("")
    add(
        "Order (`POST /v1/test/{testId}/events`) to `finished` seen by polling every 20 ms, through the "
        "HTTP API; the file is in the store when the status says finished. Peak RSS is the kernel's "
        "VmHWM of the process that ran the export (reset before each run)."
    )
    add("")
    add("| deployment | run | wall s | x baseline | peak RSS MB | file bytes | events |")
    add("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for key, label in (
        ("export_pg", "PostgreSQL + SeaweedFS S3 + Redis, `examtrail worker`"),
        ("export_embedded", "embedded default: SQLite + local store, in-process worker"),
    ):
        section = results.get(key)
        if not section:
            continue
        for n, run in enumerate(section["runs"], 1):
            add(
                f"| {label} | {n} | {_f(run['seconds'], 3)} | {_f(run['seconds'] / b['median_s'])} | "
                f"{_f(run['peak_rss_mb'], 0)} | {run['file_bytes']:,} | {run['events']:,} |"
            )
        add(
            f"| {label} | **median** | **{_f(section['median_s'], 3)}** | "
            f"**{_f(section['median_s'] / b['median_s'])}** | **{_f(section['peak_rss_mb'], 0)}** | | |"
        )
    add("")
    for key, label in (("export_pg", "PostgreSQL export"), ("export_embedded", "embedded export")):
        content = results.get(key, {}).get("content")
        if content:
            verdict = "equals" if content["equal"] else "DIFFERS FROM"
            add(
                f"- Content check: the {label} file {verdict} the baseline's JSON content "
                f"({content['candidates']:,} candidates, {content['events']:,} events, same order; "
                "signed links checked for presence)."
            )
    add("")

    formats = results.get("formats")
    if formats:
        add("## Formats and filters")
        add("")
        add(
            "The same test exported with options (PostgreSQL + S3 + Redis, median of the runs), against "
            f"the unfiltered JSON export ({_f(formats['json_s'], 3)} s)."
        )
        add("")
        add("| export | query | wall s | x unfiltered JSON | peak RSS MB | file bytes | events |")
        add("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for r in formats["rows"]:
            query = "&".join(f"{k}={v}" for k, v in r["params"])
            add(
                f"| {r['variant']} | `{query}` | {_f(r['median_s'], 3)} | {_f(r['x_json'])} | "
                f"{_f(r['peak_rss_mb'], 0)} | {r['file_bytes']:,} | {r['events']:,} |"
            )
        add("")

    add("## Scale")
    add("")
    points = results["scale"]["points"]
    derived = [p for p in points if p.get("generate_s") is not None]
    if derived:
        add(
            "Larger tests are made before they are measured (not timed as part of any export): "
            + "; ".join(
                f"{p['events']:,} events by {p['generated_by']} in {_f(p['generate_s'], 0)} s"
                for p in derived
            )
            + '. "Derived" copies the main test inside PostgreSQL (`INSERT ... SELECT`, new userIds, '
            "candidateIds, event keys and eventIds, docs rewritten; same event mix, doc sizes and "
            "attachments ratio). Each larger size is exported once."
        )
        add("")
    add("| events | baseline s | export s | export x baseline | export s per 1M events | peak RSS MB |")
    add("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in points:
        add(
            f"| {p['events']:,} | {_f(p['baseline_s'], 3)} | {_f(p['export_s'], 3)} | "
            f"{_f(p['export_s'] / p['baseline_s'])} | {_f(p['export_s'] / p['events'] * 1e6, 3)} | "
            f"{_f(p['peak_rss_mb'], 0)} |"
        )
    add("")
    streamed = [p for p in points if any(k.endswith("_peak_rss_mb") for k in p)]
    if streamed:
        add(
            "Every format at every size (PostgreSQL + S3 unless the row says local store; memory must "
            "not grow with the event count):"
        )
        add("")
        add("| events | export | wall s | x baseline | peak RSS MB |")
        add("| ---: | --- | ---: | ---: | ---: |")
        for p in streamed:
            rows = [("json", p["export_s"], p["peak_rss_mb"])]
            keys = [k for k in p if k.endswith("_peak_rss_mb") and k != "peak_rss_mb"]
            for key in sorted(keys, key=lambda k: ("local store" in k, k)):  # S3 formats, then local
                label = key.removesuffix("_peak_rss_mb")
                rows.append((label, p[f"{label}_s"], p[key]))
            for label, seconds, peak in rows:
                add(
                    f"| {p['events']:,} | {label} | {_f(seconds, 3)} | {_f(seconds / p['baseline_s'])} | "
                    f"{_f(peak, 0)} |"
                )
        add("")

    i = results["ingestion"]
    add("## Ingestion")
    add("")
    add(
        f"The same {i['copy']['events']:,} events (new test, candidates registered first) through "
        "`POST /v1/test/{testId}/candidates/{userId}/events`, "
        f"{i['batch_events']:,} events per request ({i['api']['batches']} requests, "
        f"{i['api']['clients']} concurrent clients, `examtrail serve --workers {i['api_workers']}` on "
        "PostgreSQL), against psycopg `COPY` of the same rows into the events table. The last row "
        "sends other events in requests of 500 (one candidate's log each): per-request costs weigh "
        "ten times more."
    )
    add("")
    add("| path | events | requests | seconds | events/s | x COPY |")
    add("| --- | ---: | ---: | ---: | ---: | ---: |")
    copy_rate = i["copy"]["events_per_s"]
    for label, row in (
        (f"batch HTTP API, {i['batch_events']:,}-event batches", i["api"]),
        ("COPY", i["copy"]),
        ("batch HTTP API, 500-event batches", i.get("api_small_batches")),
    ):
        if row is None:
            continue
        add(
            f"| {label} | {row['events']:,} | {row.get('batches', 1)} | {_f(row['seconds'], 3)} | "
            f"{_f(row['events_per_s'], 0)} | {_f(row['events_per_s'] / copy_rate)} |"
        )
    add("")

    t = results.get("trust")
    if t:
        add("## Audit log and signatures")
        add("")
        add(
            "Fixed costs of issue #14, timed on the same PostgreSQL database and set against the rates "
            "above (`bench/trust.py`): one audit insert per request, one Ed25519 signature per finished "
            "export (loading and opening the key included). The share is the wall time they would take "
            "if they ran serially on the critical path: an upper bound. Target (issue #14): at most 5% "
            "of batch ingestion and of an export; the per-request rows are shown for sizing."
        )
        add("")
        add("| cost | per unit | share |")
        add("| --- | ---: | ---: |")
        entry = f"{_f(t['audit_entry_ms'], 3)} ms"
        shares = [
            ("audit entry, batch ingestion", t["audit_share_batches"]),
            ("audit entry, 500-event ingestion", t["audit_share_small_batches"]),
            (
                "audit entry, status polling (one link issued per call; concurrent calls' entries "
                "are group-committed, so serial is an upper bound)",
                t["audit_share_status"],
            ),
        ]
        # Per-request paths of the framework section: one entry per single-event POST.
        for row in results.get("framework_pg", {}).get("rows", []):
            if row["route"].startswith("single"):
                rate = row["result"]["requests_per_s"] or 0.0
                shares.append(("audit entry, single-event POST", t["audit_entry_ms"] / 1000 * rate))
        for label, share in shares:
            add(f"| {label} | {entry} | {share:.2%} |")
        add(f"| export signature | {_f(t['sign_ms'], 2)} ms | {t['sign_share_export']:.2%} |")
        add("")

    p = results["polling"]
    add("## Polling")
    add("")
    add(
        f"`GET /v1/test/{{testId}}/events?jobId=…` of a finished job (signs a fresh download link on "
        f"every call) with {p['connections']} concurrent connections for {c['poll_seconds']:.0f} s, "
        f"{p['tool']}, against `examtrail serve --workers {p['api_workers']}` (PostgreSQL, Redis, S3)."
    )
    add("")
    add("| p50 ms | p75 ms | p90 ms | p99 ms | requests/s | requests | non-2xx |")
    add("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    add(
        f"| {_f(p['p50_ms'])} | {_f(p['p75_ms'])} | {_f(p['p90_ms'])} | {_f(p['p99_ms'])} | "
        f"{_f(p['requests_per_s'], 0)} | {p['requests'] or 0:,} | {p['non_2xx']} |"
    )
    add("")

    floor = results.get("upload_floor")
    if floor:
        export_s = results["export_pg"]["median_s"]
        add("## Upload-only floor")
        add("")
        add(
            "The export file's byte count streamed into the same SeaweedFS bucket through the S3 writer "
            "in 256 KiB chunks, as the export's writer thread does, with no database work: the floor of "
            "an export to S3, beside the export itself and the baseline (median of the runs)."
        )
        add("")
        add("| upload | parts in flight | bytes | seconds | x baseline | export / floor |")
        add("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, row in floor.items():
            add(
                f"| {label} | {row['concurrency']} | {row['bytes']:,} | {_f(row['median_s'], 3)} | "
                f"{_f(row['median_s'] / b['median_s'])} | {_f(export_s / row['median_s'])} |"
            )
        add("")

    add("## Worker memory")
    add("")
    add(
        "VmRSS of the exporting process just before each export (idle, after start-up and the "
        "warm-up export) and its peak (VmHWM, reset before each export), in MB; the largest over the runs."
    )
    add("")
    add("| export | idle RSS MB | peak RSS MB |")
    add("| --- | ---: | ---: |")
    for key, label in (
        ("export_pg", "PostgreSQL + S3 worker, JSON"),
        ("export_embedded", "embedded server, JSON"),
    ):
        section = results.get(key)
        if section:
            idle = max(r.get("idle_rss_mb", 0.0) for r in section["runs"])
            add(f"| {label} | {_f(idle, 0)} | {_f(section['peak_rss_mb'], 0)} |")
    add("")

    for key, label in (
        ("framework_pg", f"PostgreSQL + S3, `examtrail serve --workers {c['api_workers']}`"),
        ("framework_embedded", "embedded default (SQLite, one process)"),
    ):
        section = results.get(key)
        if not section:
            continue
        add(f"## Framework-bound routes: {label}")
        add("")
        add(
            "wrk (closed loop, one thread) on each route, between two runs of `GET /healthz` at 50 "
            "connections on the same server: the framework's floor is the higher of the two (one "
            "run alone can dip on a shared machine; the /healthz column shows both). Single events "
            "are unique (a new eventId per request, spread over 100 candidates), as live exam "
            "clients send them." + (SPREAD_NOTE if any(_has_spread(row) for row in section["rows"]) else "")
        )
        add("")
        add(
            "| route | connections | requests/s | p50 ms | p99 ms | non-2xx | socket errors | "
            "/healthz req/s | /healthz p99 ms | x /healthz |"
        )
        add("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
        for row in section["rows"]:
            r, h = row["result"], row["healthz"]
            stored = f" ({row['stored_events']:,} stored)" if "stored_events" in row else ""
            add(
                f"| {row['route']}{stored} | {_connections(row)} | {_f(r['requests_per_s'], 0)} | "
                f"{_f(r['p50_ms'])} | {_f(r['p99_ms'])} | {r['non_2xx']} | {r['socket_errors'] or '-'} | "
                f"{_floor(row)} | {_f(h['p99_ms'])} | {_f(row['ratio'])} |"
            )
        add("")

    add("## Targets")
    add("")
    add("| target | measured | limit | verdict |")
    add("| --- | ---: | ---: | --- |")
    for t in results["targets"]:
        verdict = "met" if t["met"] else "**missed**"
        add(
            f"| {t['target']} | {_f(t['value'])} {t['unit']} | {_f(t['limit'])} {t['unit']} | "
            f"{verdict} ({t['margin_pct']:+.0f}% of the limit) |"
        )
    add("")
    history = results.get("history") or []
    if history:
        add("## History")
        add("")
        add("Headline figures of each full run (`bench/history.json`), newest last.")
        add("")
        add(
            "| date | commit | export PG+S3 x baseline | export embedded x baseline | worker peak RSS MB | "
            "batch ingestion x COPY | status req/s (x /healthz) | single event x /healthz PG / SQLite |"
        )
        add("| --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
        for h in history:
            add(
                f"| {h['date']} | {h.get('commit') or '?'} | {_f(h.get('export_pg_x'))} | "
                f"{_f(h.get('export_embedded_x'))} | {_f(h.get('peak_rss_mb'), 0)} | "
                f"{_f(h.get('ingest_x_copy'))} | "
                f"{_f(h.get('status_rps'), 0)} ({_f(h.get('status_x_healthz'))}) | "
                f"{_f(h.get('single_x_healthz_pg'))} / {_f(h.get('single_x_healthz_sqlite'))} |"
            )
        add("")
    if c["smoke"]:
        add("_Smoke run: sizes are tiny, so the ratios say nothing about performance._")
        add("")
    if notes.strip():
        add(notes.strip())
        add("")
    return "\n".join(lines)
