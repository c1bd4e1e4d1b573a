"""``examtrail erase`` and ``examtrail hold``: erasure and legal holds for operators.

The same service as ``DELETE /v1/test/{testId}[/candidates/{userId}]`` and ``/v1/test/{testId}/hold``:
the same refusals (a held test is not erased), the same audit entries (by ``cli``), and an
erasure is hidden from every read at the commit that accepts it, then deleted by a job that this
command runs with a progress bar (or that a running worker claims first).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import typer
from rich.markup import escape
from sqlalchemy.orm import Session

from examtrail.cli.errors import CliError, output_console
from examtrail.cli.exports import TYPER_OPTIONS
from examtrail.cli.jobs import JobView, cli_principal, follow, is_due, open_runtime, tenant_id_of
from examtrail.cli.params import TEST_ID, USER_ID
from examtrail.core.db import transaction
from examtrail.core.errors import AppError
from examtrail.core.security import Principal
from examtrail.lifecycle import repository, service
from examtrail.lifecycle.models import ErasureStatus
from examtrail.lifecycle.schemas import ErasureJobOut, HoldOut
from examtrail.runtime import Runtime

erase_app = typer.Typer(
    help="Erase a candidate or a whole test: events, evidence files and the exports holding them.",
    no_args_is_help=True,
    **TYPER_OPTIONS,
)
hold_app = typer.Typer(
    help="Legal holds: while a test is held, neither erasure nor retention deletes anything of it.",
    no_args_is_help=True,
    **TYPER_OPTIONS,
)
console = output_console()

SCOPE = "erase"
_TENANT = typer.Option(..., metavar="NAME", help="The tenant that owns the test.")
_YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
_JSON = typer.Option(False, "--json", help="Print the result as JSON.")
_ACTIVE = (ErasureStatus.QUEUED, ErasureStatus.RUNNING)


@erase_app.command("candidate")
def erase_candidate(
    test_id: int = TEST_ID,
    user_id: int = USER_ID,
    tenant: str = _TENANT,
    yes: bool = _YES,
    as_json: bool = _JSON,
) -> None:
    """Erase one candidate of a test, with its events and files, and expire the exports holding it."""
    _confirm(yes, f"Erase candidate {user_id} of test {test_id} of tenant {tenant!r}? This cannot be undone.")
    _erase(
        tenant,
        as_json,
        lambda session, principal: service.erase_candidate(session, principal, test_id, user_id),
    )


@erase_app.command("test")
def erase_test(
    test_id: int = TEST_ID, tenant: str = _TENANT, yes: bool = _YES, as_json: bool = _JSON
) -> None:
    """Erase a whole test: candidates, events, files and every export; its testId is free at once."""
    _confirm(yes, f"Erase test {test_id} of tenant {tenant!r} with all it holds? This cannot be undone.")
    _erase(tenant, as_json, lambda session, principal: service.erase_test(session, principal, test_id))


def _confirm(yes: bool, question: str) -> None:
    if not yes and not typer.confirm(question, default=False):
        raise CliError("nothing erased (not confirmed; pass --yes to skip the question)")


Accept = Callable[[Session, Principal], service.Accepted]


def _erase(tenant: str, as_json: bool, accept: Accept) -> None:
    runtime = open_runtime()
    try:
        out = _accept_and_run(runtime, tenant_id_of(runtime, tenant), accept)
    finally:
        runtime.close()
    if as_json:
        typer.echo(out.model_dump_json())
    else:
        console.print(
            f"erasure {out.jobId} [bold]{out.status}[/]: {out.eventsDeleted} of {out.eventsTotal} events, "
            f"{out.filesDeleted} files deleted; {out.exportsExpired} exports expired"
        )
    if out.status != ErasureStatus.FINISHED:
        reason = f": {out.error.code} {out.error.message}" if out.error else ""
        raise CliError(f"erasure {out.jobId} {out.status}{reason}")


def _accept_and_run(runtime: Runtime, tenant_id: int, accept: Accept) -> ErasureJobOut:
    principal = cli_principal(runtime, tenant_id, SCOPE)
    try:
        with transaction(runtime.sessions) as session:
            job_id = accept(session, principal).job.id
    except AppError as exc:
        raise CliError(exc.message) from None

    def load() -> ErasureJobOut:
        with runtime.sessions() as session:
            job = repository.load_job(session, job_id)
            assert job is not None
            return service.job_out(job)

    def poll() -> JobView:
        with runtime.sessions() as session:
            job = repository.load_job(session, job_id)
            assert job is not None
            return JobView(
                done=job.status not in _ACTIVE,
                runnable=job.status == ErasureStatus.QUEUED and is_due(job.not_before),
                completed=job.events_deleted,
                total=job.events_total,
            )

    follow(f"erasure {job_id[:8]} events", poll, lambda: service.run_job(runtime, job_id))
    return load()


@hold_app.command("set")
def set_hold(test_id: int = TEST_ID, tenant: str = _TENANT, as_json: bool = _JSON) -> None:
    """Put a test under legal hold (already held: unchanged)."""
    _hold(tenant, as_json, lambda session, principal: service.set_hold(session, principal, test_id))


@hold_app.command("release")
def release_hold(test_id: int = TEST_ID, tenant: str = _TENANT, as_json: bool = _JSON) -> None:
    """Release a test's legal hold (not held: unchanged)."""
    _hold(tenant, as_json, lambda session, principal: service.release_hold(session, principal, test_id))


@hold_app.command("show")
def show_hold(test_id: int = TEST_ID, tenant: str = _TENANT, as_json: bool = _JSON) -> None:
    """Whether a test is under legal hold, since when and set by whom."""
    _hold(tenant, as_json, lambda session, principal: service.get_hold(session, principal, test_id))


def _hold(tenant: str, as_json: bool, act: Callable[[Session, Principal], HoldOut]) -> None:
    runtime = open_runtime()
    try:
        principal = cli_principal(runtime, tenant_id_of(runtime, tenant), SCOPE)
        try:
            with transaction(runtime.sessions) as session:
                out = act(session, principal)
        except AppError as exc:
            raise CliError(exc.message) from None
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps(out.model_dump()))
    elif out.held:
        console.print(f"test {out.testId}: [bold]held[/] since {out.since} (set by {escape(str(out.setBy))})")
    else:
        console.print(f"test {out.testId}: not held")
