"""``examtrail exports``: run an export from the command line, list a test's exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from examtrail.cli.errors import CliError, data_table, output_console
from examtrail.cli.jobs import JobView, cli_principal, follow, is_due, open_runtime, tenant_id_of
from examtrail.cli.params import TEST_ID
from examtrail.core.db import transaction
from examtrail.core.errors import AppError
from examtrail.core.timeutil import format_dt
from examtrail.exports import repository, service
from examtrail.exports.models import ACTIVE_STATUSES, ExportJob, JobStatus
from examtrail.exports.service import DEFAULT_OPTIONS
from examtrail.exports.spec import ExportOptions
from examtrail.ingest.service import require_test
from examtrail.runtime import Runtime
from examtrail.tasks import run_export as run_job

# Plain click help: no "<bool>"/"<str>" type column (options carry metavars such as NAME or FILE),
# no shell-completion options.
TYPER_OPTIONS: dict[str, Any] = {
    "rich_markup_mode": None,
    "add_completion": False,
    "pretty_exceptions_enable": False,
}
if hasattr(typer.core.TyperArgument, "display_type_rich"):
    # Typer shows "TEST_ID <int>" for arguments whatever their metavar: keep the name only.
    typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
exports_app = typer.Typer(help="Run and inspect exports.", no_args_is_help=True, **TYPER_OPTIONS)
console = output_console()


def _check_writable(out: Path) -> None:
    """``--out`` names a file this process can create or overwrite: opened for appending (nothing
    of an existing file changes) and removed again if it did not exist."""
    if not out.parent.is_dir():
        raise CliError(f"--out: folder {out.parent} does not exist")
    if out.is_dir():
        raise CliError(f"--out: {out} is a folder; give a file name")
    existed = out.exists()
    try:
        with out.open("ab"):
            pass
    except OSError as exc:
        raise CliError(f"--out: cannot write {out}: {exc.strerror or exc}") from None
    if not existed:
        out.unlink(missing_ok=True)


def _runnable(job: ExportJob) -> bool:
    """Waiting, and its retry delay (if any) is over: this process may run it now."""
    return job.status == JobStatus.QUEUED and is_due(job.not_before)


@exports_app.command("run")
def run_export(
    test_id: int = TEST_ID,
    tenant: str = typer.Option(..., metavar="NAME", help="The tenant that owns the test."),
    out: Path | None = typer.Option(None, metavar="FILE", help="Also copy the finished file here."),
    fmt: str = typer.Option("json", "--format", metavar="FORMAT", help="json, jsonl or csv."),
    compression: str = typer.Option("none", metavar="NAME", help="none or gzip."),
    since: str | None = typer.Option(
        None, metavar="CURSOR", help="An earlier export's nextSince: only what came after."
    ),
    pseudonymize: bool = typer.Option(
        False, "--pseudonymize", help="Pseudonyms instead of userId and candidateId; no comments or files."
    ),
) -> None:
    """Order an export and run it in this process, with a progress bar.

    If workers are running, whichever claims the job first runs it; this command waits.
    After a transient failure it runs the job again once its retry delay is over.
    """
    if out is not None:
        _check_writable(out)  # before the export runs, not after
    try:
        options = ExportOptions.model_validate(
            {"format": fmt, "compression": compression, "since": since, "pseudonymize": pseudonymize}
        )
    except ValidationError as exc:
        raise CliError(f"export options: {exc.errors()[0]['msg']}") from None
    runtime = open_runtime()
    try:
        job = _run(runtime, tenant_id_of(runtime, tenant), test_id, options)
        if out is not None and job.storage_key is not None:
            try:
                with out.open("wb") as handle:
                    for chunk in runtime.store.open_read(job.storage_key):
                        handle.write(chunk)
            except OSError as exc:
                raise CliError(
                    f"--out: cannot write {out}: {exc.strerror or exc} (export {job.id} is stored)"
                ) from None
            console.print(f"written to {out}", markup=False)
    finally:
        runtime.close()


def _run(
    runtime: Runtime, tenant_id: int, test_id: int, options: ExportOptions = DEFAULT_OPTIONS
) -> ExportJob:
    principal = cli_principal(runtime, tenant_id, "export")
    try:
        with transaction(runtime.sessions) as session:
            ordered = service.order_export(
                session,
                principal,
                test_id,
                options,
                reuse=runtime.settings.export_reuse,
                retention_days=runtime.settings.export_retention_days,
            )
            job_id = ordered.job.id
    except AppError as exc:
        raise CliError(exc.message) from None

    def poll() -> JobView:
        with runtime.sessions() as session:
            job = repository.load_job(session, job_id)
        assert job is not None
        return JobView(
            done=job.status not in ACTIVE_STATUSES,
            runnable=_runnable(job),
            completed=job.candidates_done,
            total=job.candidates_total,
        )

    follow(f"export {job_id[:8]} candidates", poll, lambda: run_job(runtime, job_id))
    with runtime.sessions() as session:
        job = repository.load_job(session, job_id)
    assert job is not None
    if job.status != JobStatus.FINISHED or job.storage_key is None:
        reason = " ".join(part for part in (job.error_code, job.error_message) if part)
        raise CliError(f"export {job.id} {job.status}" + (f": {reason}" if reason else ""))
    console.print(
        f"[green]finished[/]: {job.events_written} events of {job.candidates_total} candidates, "
        f"{job.file_size} bytes, sha256 {job.sha256}; nextSince {job.next_since}"
    )
    return job


@exports_app.command("list")
def list_exports(
    test_id: int = TEST_ID,
    tenant: str = typer.Option(..., metavar="NAME", help="The tenant that owns the test."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
) -> None:
    """Every export of a test: who ordered it, when, and how it ended (an audit trail)."""
    runtime = open_runtime()
    try:
        rows = _list(runtime, tenant_id_of(runtime, tenant), test_id)
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    columns = ("job", "status", "requested by", "created", "finished", "events", "bytes", "error")
    console.print(
        data_table(
            columns,
            (
                (
                    row["jobId"],
                    row["status"],
                    row["requestedBy"],
                    row["created"] or "",
                    row["finished"] or "",
                    str(row["eventsWritten"]),
                    "" if row["fileSize"] is None else str(row["fileSize"]),
                    row["error"] or "",
                )
                for row in rows
            ),
        )
    )


def _list(runtime: Runtime, tenant_id: int, test_id: int) -> list[dict[str, Any]]:
    with runtime.sessions() as session:
        try:
            test = require_test(session, tenant_id, test_id)
        except AppError as exc:
            raise CliError(exc.message) from None
        return [
            {
                "jobId": job.id,
                "status": job.status,
                "requestedBy": job.requested_by,
                "created": format_dt(job.created_at),
                "finished": format_dt(job.finished_at),
                "eventsWritten": job.events_written,
                "fileSize": job.file_size,
                "error": job.error_code,
            }
            for job in repository.jobs_for_test(session, tenant_id, test.id)
        ]
