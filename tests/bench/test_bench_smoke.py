"""The benchmark machinery at a tiny size (~10,000 events), end to end; no timing assertions.

The generator (``bench.generate``) must store exactly the docs ingestion stores; the benchmark
must produce every section of RESULTS.md, and the exported files must hold the same
content as PostgreSQL's own JSON (same candidates, events and order).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from bench.generate import GenerateSpec, Synthesizer
from examtrail.core.timeutil import format_ms, to_epoch_ms
from examtrail.ingest.docs import TimestampFormatter
from examtrail.ingest.schemas import EventIn
from examtrail.ingest.service import event_doc
from tests.support import db


def test_generated_docs_are_byte_identical_to_ingestion() -> None:
    synth = Synthesizer(GenerateSpec(candidates=6, events_per_candidate=400, seed=11))
    seen = {"flag": 0, "extra": 0, "file": 0, "system": 0, "invigilator": 0}
    for person in synth.candidates():
        for generated in synth.events(person):
            event = EventIn.model_validate_json(json.dumps(generated.api_json()))
            assert to_epoch_ms(event.timeStamp) == generated.occurred_at_ms
            assert event_doc(generated.event_id, event, generated.occurred_at_ms) == generated.doc
            seen["flag"] += generated.flagging_info is not None
            seen["extra"] += generated.extra_info is not None
            seen["file"] += generated.file is not None
            seen["system" if generated.user_id is None else "invigilator"] += 1
    total = 6 * 400
    assert 0.06 * total < seen["flag"] < 0.14 * total
    assert 0.25 * total < seen["extra"] < 0.42 * total
    assert 0 < seen["file"] < 0.05 * total
    assert seen["system"] > seen["invigilator"] > 0


def test_timestamp_formatter_matches_format_ms() -> None:
    formatter = TimestampFormatter(limit=16)
    rng = random.Random(5)
    for _ in range(20_000):
        ms = rng.randrange(-(10**12), 4 * 10**12)
        assert formatter(ms) == format_ms(ms)


def test_same_seed_same_test() -> None:
    def docs() -> list[str]:
        synth = Synthesizer(GenerateSpec(candidates=3, events_per_candidate=50, seed=3))
        return [e.doc for p in synth.candidates() for e in synth.events(p)]

    assert docs() == docs()


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.skipif(db.backend() != "postgresql", reason="runs once, in the PostgreSQL pass")
def test_benchmark_smoke(tmp_path: Path) -> None:
    from bench import run

    out = tmp_path / "out"
    code = run.main(
        [
            "--smoke",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            "--database",
            db.pg_database_name("bench_smoke"),
            "--poll-seconds",
            "1",
        ]
    )
    assert code == 0
    markdown = (out / "RESULTS.md").read_text()
    for section in (
        "Machine",
        "Baseline",
        "Export",
        "Formats and filters",
        "Scale",
        "Ingestion",
        "Polling",
        "Audit log and signatures",
        "Upload-only floor",
        "Worker memory",
        "Targets",
    ):
        assert f"## {section}" in markdown
    results = json.loads((out / "results.json").read_text())
    sections = ("machine", "dataset", "baseline", "export_pg", "export_embedded", "scale", "ingestion")
    assert set(sections) | {"polling", "targets", "trust"} <= set(results)
    assert results["trust"]["audit_entry_ms"] > 0 and results["trust"]["sign_ms"] > 0
    assert results["dataset"]["events"] == 10_000
    assert results["upload_floor"]["configured"]["bytes"] == results["export_pg"]["runs"][0]["file_bytes"]
    if shutil.which("wrk"):
        for key in ("framework_pg", "framework_embedded"):
            single = next(r for r in results[key]["rows"] if r["route"].startswith("single"))
            assert single["result"]["non_2xx"] == 0, single
            # wrk counts what completed within its duration; the requests still in flight land too.
            assert single["stored_events"] >= single["result"]["requests"], single
    if shutil.which("wrk") and shutil.which("ss"):
        # Two API processes: every run's connections per process were counted (and spread evenly
        # unless the tries ran out); one process has nothing to count.
        for row in results["framework_pg"]["rows"]:
            for found in (row["result"], row["healthz_before"], row["healthz_after"]):
                assert len(found["connections_per_process"]) == 2 and found["tries"] >= 1, row
        assert all(
            "connections_per_process" not in r["result"] for r in results["framework_embedded"]["rows"]
        )
        assert "connections per process" in markdown
    assert results["history"][-1]["commit"]  # shown, not recorded: smoke runs stay out of history.json
    for key in ("export_pg", "export_embedded"):
        content = results[key]["content"]
        assert content["equal"], content
        assert content["events"] == 10_000
        assert content["candidates"] == results["dataset"]["candidates"]
    points = results["scale"]["points"]
    assert [p["events"] for p in points] == [10_000, 20_000]
    assert points[1]["generated_by"] == "postgresql (derived)"  # two copies of the main test
    assert all(f"{run.LOCAL_STORE}_peak_rss_mb" in p for p in points)
    assert "| 20,000 | json, local store |" in markdown
    assert results["ingestion"]["api"]["events"] == results["ingestion"]["copy"]["events"] == 10_000
    variants = {row["variant"]: row for row in results["formats"]["rows"]}
    assert {"jsonl", "csv", "json+gzip", "jsonl+gzip", "flagged only (json)"} <= set(variants)
    assert variants["jsonl"]["events"] == 10_000
    assert 0 < variants["flagged only (json)"]["events"] < 10_000
    one = next(row for label, row in variants.items() if label.startswith("one candidate"))
    assert 0 < one["events"] < 10_000
    assert all("csv_peak_rss_mb" in p for p in results["scale"]["points"])
    assert results["polling"]["requests"] > 0
    assert results["polling"]["non_2xx"] == 0
    assert {t["target"] for t in results["targets"]} >= {
        "export wall / PostgreSQL baseline",
        "ingestion API / COPY rate",
        "worker peak RSS, every format and size",
        "export wall / PostgreSQL baseline (20,000 events)",
        "local-store export wall / PostgreSQL baseline (20,000 events)",
    }
