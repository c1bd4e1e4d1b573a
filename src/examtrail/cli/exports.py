"""``examtrail exports``: run an export from the command line, list a test's exports."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from examtrail.auth import repository as auth_repository
from examtrail.core.db import transaction, utcnow
from examtrail.core.errors import AppError
from examtrail.core.security import Principal
from examtrail.core.settings import get_settings
from examtrail.core.timeutil import format_dt
from examtrail.exports import repository, service
from examtrail.exports.models import ACTIVE_STATUSES, ExportJob, JobStatus
from examtrail.exports.options import ExportOptions
from examtrail.exports.service import DEFAULT_OPTIONS
from examtrail.ingest.service import require_test
from examtrail.runtime import Runtime, build_runtime
from examtrail.tasks import run_export as run_job

exports_app = typer.Typer(help="Run and inspect exports.", no_args_is_help=True)
console = Console()


def _runtime() -> Runtime:
    runtime = build_runtime(get_settings())
    runtime.store.ensure_ready()
    return runtime


def _tenant_id(runtime: Runtime, tenant: str) -> int:
    with runtime.sessions() as session:
        found = auth_repository.get_tenant_by_name(session, tenant)
    if found is None:
        raise typer.BadParameter(f"no tenant named {tenant!r}")
    return found.id


def _runnable(job: ExportJob) -> bool:
    """Waiting, and its retry delay (if any) is over: this process may run it now."""
    return job.status == JobStatus.QUEUED and (job.not_before is None or job.not_before <= utcnow())


@exports_app.command("run")
def run_export(
    test_id: int = typer.Argument(..., help="The test's id (testId)."),
    tenant: str = typer.Option(..., help="The tenant that owns the test."),
    out: Path | None = typer.Option(None, help="Also copy the finished file here."),
    fmt: str = typer.Option("json", "--format", help="json, jsonl or csv."),
    compression: str = typer.Option("none", help="none or gzip."),
    since: str | None = typer.Option(None, help="An earlier export's nextSince: only what came after."),
) -> None:
    """Order an export and run it in this process, with a progress bar.

    If workers are running, whichever claims the job first runs it; this command waits.
    After a transient failure it runs the job again once its retry delay is over.
    """
    if out is not None and not out.parent.is_dir():
        raise typer.BadParameter(f"folder {out.parent} does not exist", param_hint="--out")
    try:
        options = ExportOptions.model_validate({"format": fmt, "compression": compression, "since": since})
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    runtime = _runtime()
    try:
        job = _run(runtime, _tenant_id(runtime, tenant), test_id, options)
        if out is not None and job.storage_key is not None:
            with out.open("wb") as handle:
                for chunk in runtime.store.open_read(job.storage_key):
                    handle.write(chunk)
            console.print(f"written to {out}")
    finally:
        runtime.close()


def _run(
    runtime: Runtime, tenant_id: int, test_id: int, options: ExportOptions = DEFAULT_OPTIONS
) -> ExportJob:
    principal = Principal(
        tenant_id,
        "cli",
        frozenset({"export"}),
        utcnow() + timedelta(seconds=runtime.settings.token_ttl_seconds),
    )
    try:
        with transaction(runtime.sessions) as session:
            ordered = service.order_export(
                session, principal, test_id, options, reuse=runtime.settings.export_reuse
            )
            job_id = ordered.job.id
    except AppError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from None
    worker: threading.Thread | None = None
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"export {job_id[:8]} candidates", total=None)
        while True:
            with runtime.sessions() as session:
                job = repository.load_job(session, job_id)
            assert job is not None
            bar.update(task, total=job.candidates_total or None, completed=job.candidates_done)
            if job.status not in ACTIVE_STATUSES:
                break
            if (worker is None or not worker.is_alive()) and _runnable(job):
                worker = threading.Thread(target=run_job, args=(runtime, job_id), daemon=True)
                worker.start()
            time.sleep(0.2)
    if job.status != JobStatus.FINISHED or job.storage_key is None:
        console.print(f"[red]export {job.status}[/]: {job.error_code or ''} {job.error_message or ''}")
        raise typer.Exit(1)
    console.print(
        f"[green]finished[/]: {job.events_written} events of {job.candidates_total} candidates, "
        f"{job.file_size} bytes, sha256 {job.sha256}; nextSince {job.next_since}"
    )
    return job


@exports_app.command("list")
def list_exports(
    test_id: int = typer.Argument(..., help="The test's id (testId)."),
    tenant: str = typer.Option(..., help="The tenant that owns the test."),
) -> None:
    """Every export of a test: who ordered it, when, and how it ended (an audit trail)."""
    runtime = _runtime()
    try:
        _list(runtime, _tenant_id(runtime, tenant), test_id)
    finally:
        runtime.close()


def _list(runtime: Runtime, tenant_id: int, test_id: int) -> None:
    table = Table("job", "status", "requested by", "created", "finished", "events", "bytes", "error")
    with runtime.sessions() as session:
        try:
            test = require_test(session, tenant_id, test_id)
        except AppError as exc:
            console.print(f"[red]{exc.message}[/]")
            raise typer.Exit(1) from None
        for job in repository.jobs_for_test(session, tenant_id, test.id):
            table.add_row(
                job.id,
                job.status,
                job.requested_by,
                format_dt(job.created_at) or "",
                format_dt(job.finished_at) or "",
                str(job.events_written),
                str(job.file_size or ""),
                job.error_code or "",
            )
    console.print(table)
