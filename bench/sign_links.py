"""``python -m bench.sign_links [--links 20000] [--rounds 7] [--src DIR ...]``: CPU per
pre-signed attachment link.

Signs ``--links`` links through ``S3ObjectStore.presigned_get_url`` (local SigV4 signer,
static credentials, no network) the way an export does (one expiry, file names repeating,
distinct keys) and prints the process CPU per link, the median of ``--rounds`` rounds.
Each ``--src`` (another checkout's ``src`` folder, e.g. ``/work/main/src``) runs in its own
subprocess, alternating with this checkout's, so that A/B figures are taken at the same moment.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

_NAMES = ["photo.jpg", "answer sheet.pdf", "scan (2).png", "Übung ñ.docx", "recording.webm"]


def _measure(links: int) -> float:
    """CPU µs per link in this process (imports from whatever ``examtrail`` is on the path)."""
    from examtrail.storage.s3 import S3ObjectStore
    from examtrail.storage.sigv4 import S3Presigner

    presigner = S3Presigner("http://127.0.0.1:8333", "bench", "us-east-1", "AKIDBENCH", "bench/secret+key")
    store = S3ObjectStore(client=None, bucket="bench", prefix="tenant", presigner=presigner)  # type: ignore[arg-type]
    expires_at = datetime.now(UTC) + timedelta(days=7)
    work = [
        (f"attachments/{n // 7}/{n:08d}-5f0c2a9e.bin", _NAMES[n % 5], "application/octet-stream")
        for n in range(links)
    ]
    sign = store.presigned_get_url
    start = time.process_time()
    for key, name, content_type in work:
        sign(key, expires_at=expires_at, filename=name, content_type=content_type)
    return (time.process_time() - start) / links * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU per pre-signed link.")
    parser.add_argument("--links", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--src", type=Path, action="append", default=[], help="another checkout's src")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.once:
        print(json.dumps(_measure(args.links)))
        return 0
    here = Path(__file__).resolve().parent.parent / "src"
    variants = {"this": here, **{str(src): src.resolve() for src in args.src}}
    figures: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, src in variants.items():
            out = subprocess.run(
                [sys.executable, "-m", "bench.sign_links", "--once", "--links", str(args.links)],
                check=True,
                capture_output=True,
                text=True,
                env={"PYTHONPATH": f"{src}:{here.parent}", "PATH": "/usr/bin:/bin"},
            )
            figures[name].append(json.loads(out.stdout))
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"{name}: {median:.2f} µs CPU/link (min {min(values):.2f}, {len(values)} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
