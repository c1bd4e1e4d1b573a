"""The ``examtrail-client`` command line.

Exit codes: 0 done, 1 the export failed or was cancelled (or the server refused the
request, or ingestion rejected some events), 2 usage, 3 authentication,
4 verification failed, 5 server unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from examtrail_client import __version__
from examtrail_client.client import ExamtrailClient
from examtrail_client.errors import AuthenticationError, ExamtrailError, NotFoundError
from examtrail_client.models import DownloadResult, ExportJob, IngestProgress

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_VERIFY, EXIT_UNREACHABLE = 0, 1, 2, 3, 4, 5

EPILOG = """\
settings: --url/EXAMTRAIL_URL, --client-id/EXAMTRAIL_CLIENT_ID, --api-key/EXAMTRAIL_API_KEY.
exit codes: 0 done, 1 export failed or cancelled (or request refused, or events rejected),
2 usage, 3 authentication, 4 verification failed, 5 server unreachable.
"""


def _settings_parser(suppress: bool) -> argparse.ArgumentParser:
    default: Any = argparse.SUPPRESS if suppress else None
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("connection")
    group.add_argument("--url", default=default, help="server base URL (env EXAMTRAIL_URL)")
    group.add_argument("--client-id", default=default, help="API client id (env EXAMTRAIL_CLIENT_ID)")
    group.add_argument("--api-key", default=default, help="API key (env EXAMTRAIL_API_KEY)")
    group.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS if suppress else False, help="tracebacks"
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render the help in the README)."""
    parser = argparse.ArgumentParser(
        prog="examtrail-client",
        description="Order, download and verify Examtrail test event exports; ingest events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_settings_parser(False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_settings_parser(True)]

    export = sub.add_parser("export", parents=common, help="order an export, wait, download and verify it")
    export.add_argument("test_id", type=int, metavar="TEST_ID")
    export.add_argument("-o", "--output", type=Path, help="file to write (required with --wait)")
    export.add_argument(
        "--wait", action=argparse.BooleanOptionalAction, default=True, help="wait and download (default)"
    )
    export.add_argument("--json", action="store_true", help="print only a JSON summary")
    options = export.add_argument_group("export options (servers that support them)")
    options.add_argument("--user-id", type=int, action="append", help="only this candidate (repeatable)")
    options.add_argument("--candidate-id", action="append", help="only this candidate id (repeatable)")
    options.add_argument("--event", action="append", help="only this event name (repeatable)")
    options.add_argument("--flagged", action="store_true", help="only events with flaggingInfo")
    options.add_argument("--severity", action="append", help="only flags of this severity (repeatable)")
    options.add_argument("--from", dest="from_", metavar="TIME", help="timeStamp >= TIME (RFC 3339)")
    options.add_argument("--to", metavar="TIME", help="timeStamp < TIME (RFC 3339)")
    options.add_argument("--since", metavar="CURSOR", help="only events ingested after an earlier export")
    options.add_argument("--format", choices=["json", "jsonl", "csv"], help="file format")
    options.add_argument("--gzip", action="store_true", help="gzip-compressed file")

    status = sub.add_parser("status", parents=common, help="a job's status")
    status.add_argument("test_id", type=int, metavar="TEST_ID")
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    cancel = sub.add_parser("cancel", parents=common, help="cancel a queued or running export")
    cancel.add_argument("test_id", type=int, metavar="TEST_ID")
    cancel.add_argument("job_id", metavar="JOB_ID")

    jobs = sub.add_parser("jobs", parents=common, help="the exports of a test (servers that list jobs)")
    jobs.add_argument("test_id", type=int, metavar="TEST_ID")
    jobs.add_argument("--status", help="only jobs in this status")
    jobs.add_argument("--limit", type=int, help="at most this many jobs")
    jobs.add_argument("--json", action="store_true", help="print JSON")

    download = sub.add_parser("download", parents=common, help="download and verify a finished job's file")
    download.add_argument("test_id", type=int, metavar="TEST_ID")
    download.add_argument("job_id", metavar="JOB_ID")
    download.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    download.add_argument("--json", action="store_true", help="print only a JSON summary")

    ingest = sub.add_parser("ingest", parents=common, help="send events from a JSON Lines or export file")
    ingest.add_argument("test_id", type=int, metavar="TEST_ID")
    ingest.add_argument("file", type=Path, metavar="FILE")
    ingest.add_argument("--batch-size", type=int, default=5000, help="events per request (default 5000)")
    ingest.add_argument("--title", help="title of the test if it has to be created")
    ingest.add_argument("--json", action="store_true", help="print a JSON report")
    return parser


def _interactive() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@contextmanager
def _job_progress(enabled: bool) -> Iterator[Callable[[ExportJob], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[counts]}"),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task("export", total=100, counts="")

        def update(job: ExportJob) -> None:
            counts = (
                f"candidates {job.candidates_done}/{job.candidates_total}, "
                f"events {job.events_written:,} ({job.status})"
            )
            progress.update(task, completed=job.progress, counts=counts)

        yield update


@contextmanager
def _byte_progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("[bold]download"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task("download", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        yield update


@contextmanager
def _ingest_progress(enabled: bool) -> Iterator[Callable[[IngestProgress], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]ingest"),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task("ingest", total=None, counts="")

        def update(state: IngestProgress) -> None:
            counts = (
                f"read {state.read:,}, created {state.created:,}, already there {state.duplicates:,}, "
                f"rejected {state.rejected:,}, candidates {state.candidates:,}"
            )
            progress.update(task, counts=counts)

        yield update


def _print_summary(result: DownloadResult, as_json: bool) -> None:
    summary = result.summary()
    if as_json:
        _out(json.dumps(summary))
        return
    _out(f"job {summary['jobId']} of test {summary['testId']}: finished and verified")
    _out(f"file {summary['file']} ({summary['fileSize']} bytes)")
    _out(f"sha256 {summary['sha256']}")
    _out(f"candidates {summary['candidates']}, events {summary['events']}")


def _print_job(job: ExportJob, as_json: bool) -> None:
    if as_json:
        _out(json.dumps(job.to_dict()))
        return
    for key, value in job.to_dict().items():
        if value is not None:
            _out(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


def _export_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {
        "user_id": args.user_id,
        "candidate_id": args.candidate_id,
        "event": args.event,
        "flagged": args.flagged or None,
        "severity_level": args.severity,
        "from_": args.from_,
        "to": args.to,
        "since": args.since,
        "format": args.format,
        "gzip": args.gzip or None,
    }
    return {key: value for key, value in options.items() if value is not None}


def _run(args: argparse.Namespace, client: ExamtrailClient) -> int:
    interactive = _interactive()
    if args.command == "export":
        job = client.order_export(args.test_id, **_export_options(args))
        if not args.wait:
            if args.json:
                _out(json.dumps(job.to_dict()))
            else:
                _out(job.job_id)
            return EXIT_OK
        with _job_progress(interactive) as on_progress:
            job = client.wait(job, on_progress)
        with _byte_progress(interactive) as on_bytes:
            result = client.download(job, args.output, on_bytes=on_bytes)
        _print_summary(result, args.json)
        return EXIT_OK
    if args.command == "status":
        _print_job(client.get_job(args.test_id, args.job_id), args.json)
        return EXIT_OK
    if args.command == "cancel":
        job = client.cancel(args.test_id, args.job_id)
        _out(f"job {job.job_id}: {job.status}")
        return EXIT_OK
    if args.command == "jobs":
        try:
            jobs = client.list_jobs(args.test_id, status=args.status, limit=args.limit)
        except NotFoundError as exc:
            raise NotFoundError(
                f"no job list for test {args.test_id}: the test does not exist, or this server "
                "does not list export jobs",
                code=exc.code,
                status=exc.status,
            ) from exc
        if args.json:
            _out(json.dumps([job.to_dict() for job in jobs]))
        else:
            for job in jobs:
                _out(
                    f"{job.job_id}\t{job.status}\t{job.progress}%\t{job.created or ''}\t{job.finished or ''}"
                )
        return EXIT_OK
    if args.command == "download":
        with _byte_progress(interactive) as on_bytes:
            result = client.download(
                client.get_job(args.test_id, args.job_id), args.output, on_bytes=on_bytes
            )
        _print_summary(result, args.json)
        return EXIT_OK
    if args.command == "ingest":
        with _ingest_progress(interactive) as on_progress:
            report = client.ingest(
                args.test_id, args.file, batch_size=args.batch_size, title=args.title, on_progress=on_progress
            )
        for rejected in report.rejected:
            _err(f"{args.file}: {rejected}")
        if args.json:
            _out(
                json.dumps(
                    {
                        "testId": report.test_id,
                        "read": report.read,
                        "created": report.created,
                        "duplicates": report.duplicates,
                        "candidates": report.candidates,
                        "rejected": [
                            {"line": r.line, "eventId": r.event_id, "message": r.message}
                            for r in report.rejected
                        ],
                    }
                )
            )
        else:
            _out(
                f"test {report.test_id}: read {report.read} events, created {report.created}, "
                f"already there {report.duplicates}, rejected {len(report.rejected)}; "
                f"{report.candidates} candidates"
            )
        return EXIT_OK if report.ok else EXIT_FAILED
    raise AssertionError(args.command)  # pragma: no cover


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``examtrail-client``; returns the exit code (and exits with it as a script)."""
    code = _main(argv)
    if argv is None:
        sys.exit(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    url = args.url or os.environ.get("EXAMTRAIL_URL")
    client_id = args.client_id or os.environ.get("EXAMTRAIL_CLIENT_ID")
    api_key = args.api_key or os.environ.get("EXAMTRAIL_API_KEY")
    missing = [
        name
        for name, value in (("--url", url), ("--client-id", client_id), ("--api-key", api_key))
        if not value
    ]
    if missing:
        parser.error(f"missing {', '.join(missing)} (or the EXAMTRAIL_* environment variables)")
    if args.command == "export" and args.wait and args.output is None:
        parser.error("export needs -o FILE (or --no-wait)")
    if args.command == "ingest" and args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.command == "jobs" and args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    assert url and client_id and api_key
    try:
        with ExamtrailClient(url, client_id, api_key) as client:
            return _run(args, client)
    except ExamtrailError as exc:
        if args.debug:
            traceback.print_exc()
        prefix = "authentication failed: " if isinstance(exc, AuthenticationError) else ""
        code = f" ({exc.code})" if exc.code and exc.code not in exc.message else ""
        # The server's per-field details say what to fix (still one line).
        problems = "; ".join(
            f"{d['field']}: {d.get('message', '')}" if d.get("field") else str(d.get("message", ""))
            for d in exc.details[:3]
            if isinstance(d, dict)
        )
        detail = f" [{problems}]" if problems else ""
        _err(f"examtrail-client: error: {prefix}{exc.message}{code}{detail}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("examtrail-client: interrupted")
        return 130
    except (OSError, ValueError, TimeoutError) as exc:
        if args.debug:
            traceback.print_exc()
        _err(f"examtrail-client: error: {exc}")
        return EXIT_FAILED
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        _err(
            f"examtrail-client: error: unexpected {type(exc).__name__}: {exc} (use --debug for the traceback)"
        )
        return EXIT_FAILED
