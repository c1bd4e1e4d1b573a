"""``python -m bench.export_profile``: one export in-process, timed (optionally profiled).

Reads the ``EXAMTRAIL_*`` settings of the deployment to export from (e.g. the data that
``bench.export_ab`` generated), runs ``write_export`` on the test directly (no job, no
HTTP) into the configured store and prints the wall time, the bytes and the SHA-256.

    EXAMTRAIL_DATA_DIR=/tmp/export-ab/embedded ... python -m bench.export_profile --test 4242
    python -m bench.export_profile --test 4242 --cprofile /tmp/export.prof
"""

from __future__ import annotations

import argparse
import cProfile
import os
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from bench import deploy, measure
from examtrail.core.db import build_engine, snapshot
from examtrail.core.settings import get_settings
from examtrail.exports.formats import GzipWriter
from examtrail.exports.pipeline import Progress, write_export
from examtrail.storage.factory import build_object_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One in-process export, timed.")
    parser.add_argument("--test", default="4242", help="the test's external id")
    parser.add_argument("--tenant", default="bench-ab")
    parser.add_argument("--format", default="json", choices=["json", "jsonl", "csv"])
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cprofile", default="", help="write a cProfile of the last run here")
    parser.add_argument("--pg", default="", help="read this PostgreSQL database (bench.export_ab's)")
    parser.add_argument("--sqlite", type=Path, default=None, help="read this embedded data dir")
    parser.add_argument("--s3", action="store_true", help="write to a SeaweedFS started for the run")
    parser.add_argument("--floor", action="store_true", help="after each export, the upload-only floor")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        # A fixed key: local-store links, so the file's SHA-256, are then equal from run to run.
        env: dict[str, str] = {"EXAMTRAIL_SECRET_KEY": deploy.SECRET}
        if args.pg:
            env["EXAMTRAIL_DATABASE_URL"] = deploy.sqlalchemy_url(deploy.pg_url(args.pg))
        work = Path(tempfile.mkdtemp(prefix="export-profile-"))
        stack.callback(shutil.rmtree, work, True)
        env["EXAMTRAIL_DATA_DIR"] = str(args.sqlite or work)
        if args.s3:
            s3 = stack.enter_context(deploy.seaweedfs(work))
            env.update(s3.env(s3.create_bucket("profile")))
        os.environ.update(env)
        get_settings.cache_clear()
        _run(args)
    return 0


def _run(args: argparse.Namespace) -> None:
    settings = get_settings()
    engine = build_engine(settings)
    store = build_object_store(settings)
    with engine.connect() as connection:
        test_pk = connection.execute(
            text(
                "SELECT t.id FROM tests t JOIN tenants n ON n.id = t.tenant_id "
                "WHERE n.name = :tenant AND t.external_id = :test"
            ),
            {"tenant": args.tenant, "test": args.test},
        ).scalar_one()
    # Fixed times: equal data gives equal bytes (and SHA-256) from run to run and code to code.
    now = datetime(2026, 11, 27, tzinfo=UTC)
    for run in range(args.repeat):
        key = f"profile/{uuid.uuid4().hex}.json"
        writer = store.open_writer(key, content_type="application/json")
        if args.gzip:
            writer = GzipWriter(writer)
        progress = Progress()
        profiler = cProfile.Profile() if args.cprofile and run == args.repeat - 1 else None
        started = time.perf_counter()
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        with snapshot(engine) as connection:
            stored = write_export(
                connection,
                test_pk,
                writer,
                store,
                created=now,
                links_expire_at=now + timedelta(hours=1),
                progress=progress,
                fmt=args.format,
            )
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        print(
            f"{wall:.3f} s  cpu {cpu:.3f} s  {stored.size:,} bytes  {progress.events:,} events  "
            f"sha256 {stored.sha256}"
        )
        store.delete(key)
        if args.floor:
            floor = measure.upload_floor(store, stored.size, repeats=1)
            print(f"{floor['median_s']:.3f} s  upload-only floor of the same bytes")
    engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
