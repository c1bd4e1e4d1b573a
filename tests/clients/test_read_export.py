"""``read_export``: streams a seed-format file of any size, whatever its layout."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examtrail_client import Candidate, read_export
from examtrail_client import files as files_module
from examtrail_client.files import iter_export, iter_source

EXPORT: dict[str, Any] = {
    "created": "2026-06-01T10:00:00.000Z",
    "candidates": [
        {
            "userId": 1,
            "candidateId": "A",
            "events": [
                {
                    "eventId": "e1",
                    "event": "flag",
                    "timeStamp": "2026-06-01T09:00:00.000Z",
                    "extraInfo": {"type": "note", "value": 'a "quoted", {braced} [value] \\ 📱'},
                    "flaggingInfo": {"flagType": "x", "flagSubTypes": ["a", "b"], "comment": None,
                                     "severityLevel": "high"},
                    "attachedFiles": [{"fileName": "f.bin", "contentItemId": 1.5, "fileSize": 12345678901,
                                       "presignedUrl": "http://x/y?z=1"}],
                    "userId": 9001,
                },
                {"eventId": "e2", "event": "idle", "timeStamp": "2026-06-01T09:01:00.000Z", "extraInfo": None,
                 "flaggingInfo": None, "attachedFiles": [], "userId": None},
            ],
        },
        {"userId": 2, "candidateId": "B", "events": []},
        {"userId": 30000000000, "candidateId": "C", "events": [{"eventId": "e3", "event": "submitted",
         "timeStamp": "2026-06-01T09:02:00.000Z", "extraInfo": None, "flaggingInfo": None,
         "attachedFiles": [], "userId": None}]},
    ],
}  # fmt: skip


def expected() -> list[tuple[Candidate, dict[str, Any]]]:
    return [(Candidate(c["userId"], c["candidateId"]), e) for c in EXPORT["candidates"] for e in c["events"]]


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("chunk", [1, 7, 65536])
def test_pairs_match_json_load_at_any_chunk_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, indent: int | None, chunk: int
) -> None:
    monkeypatch.setattr(files_module, "_CHUNK", chunk)
    path = tmp_path / "e.json"
    path.write_text(json.dumps(EXPORT, indent=indent, ensure_ascii=indent is None))
    assert list(read_export(path)) == expected()
    # Every candidate is seen once, also those without events.
    seen = [c.user_id for c, e in iter_export(path) if e is None]
    assert seen == [1, 2, 30000000000]


def test_gzip_bom_and_other_key_orders(tmp_path: Path) -> None:
    reordered = {
        "candidates": [
            {
                "events": c["events"],
                "candidateId": c["candidateId"],
                "userId": c["userId"],
                "extra": {"x": [1]},
            }
            for c in EXPORT["candidates"]
        ],
        "created": EXPORT["created"],
    }
    path = tmp_path / "e.json.gz"
    with gzip.open(path, "wt", encoding="utf-8-sig") as out:
        json.dump(reordered, out)
    assert list(read_export(path)) == expected()


def test_empty_and_malformed_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text('{"created": "x", "candidates": []}')
    assert list(read_export(empty)) == []
    for text in ['{"candidates": [{"userId": 1, "events": [{"a": 1}', "[1, 2]", '{"candidates": [}']:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match="not an export file"):
            list(read_export(bad))


def test_jsonl_source_is_detected_and_lines_numbered(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    rows = [
        json.dumps({"candidateUserId": 1, "candidateId": "A", **EXPORT["candidates"][0]["events"][1]}),
        "",
        "{broken",
        json.dumps({"candidateId": "A", "eventId": "e9"}),
    ]
    path.write_text("\n".join(rows) + "\n")
    items = list(iter_source(path))
    assert [(i.line, i.problem is None) for i in items] == [(1, True), (3, False), (4, False)]
    assert items[0].event is not None and "attachedFiles" not in items[0].event
    assert "candidateUserId" not in items[0].event and "candidateId" not in items[0].event
    assert items[0].candidate == Candidate(1, "A")
    assert items[2].problem is not None and "candidateUserId" in items[2].problem
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(EXPORT))
    assert [i.line for i in iter_source(seed) if i.event is not None] == [1, 2, 3]


_MEASURE = """
import resource, sys
from examtrail_client import read_export
count = 0
last = None
for candidate, event in read_export(sys.argv[1]):
    count += 1
    last = candidate.user_id
print(count, last, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _measure(path: Path) -> tuple[int, int, int]:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, check=True, timeout=300
    )
    count, last, rss_kb = done.stdout.split()
    return int(count), int(last), int(rss_kb) * 1024


@pytest.mark.slow
def test_a_million_events_in_flat_memory(tmp_path: Path) -> None:
    small = tmp_path / "small.json"
    small.write_text(json.dumps(EXPORT))
    _, _, baseline = _measure(small)
    big = tmp_path / "big.json"
    template = (
        '{{"eventId":"e-{u}-{n}","event":"network_lost","timeStamp":"2026-06-01T09:00:00.000Z",'
        '"extraInfo":{{"type":"ip","value":"10.0.0.1"}},"flaggingInfo":null,"attachedFiles":[],"userId":null}}'
    )
    candidates, per_candidate = 100, 10_000
    with big.open("w") as out:
        out.write('{"created":"2026-06-01T10:00:00.000Z","candidates":[')
        for u in range(candidates):
            out.write(("," if u else "") + f'{{"userId":{u},"candidateId":"C{u}","events":[')
            out.write(",".join(template.format(u=u, n=n) for n in range(per_candidate)))
            out.write("]}")
        out.write("]}")
    size = big.stat().st_size
    count, last, peak = _measure(big)
    big.unlink()
    assert (count, last) == (1_000_000, candidates - 1)
    # The file is ~170 MB; reading it costs a few MB over an interpreter that read a tiny one.
    assert peak - baseline < 20 * 1024 * 1024, (size, baseline, peak)
