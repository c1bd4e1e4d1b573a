"""``examtrail audit list``: read a tenant's audit log from the database."""

from __future__ import annotations

import json
from typing import Any

import typer

from examtrail.audit import service
from examtrail.audit.actions import Action
from examtrail.auth import repository as auth_repository
from examtrail.cli.errors import CliError, data_table, output_console, require_database
from examtrail.cli.exports import TYPER_OPTIONS
from examtrail.cli.params import TEST_ID_FILTER
from examtrail.core.db import build_engine, build_session_factory
from examtrail.core.errors import AppError
from examtrail.core.settings import get_settings

audit_app = typer.Typer(help="The audit log.", no_args_is_help=True, **TYPER_OPTIONS)
console = output_console()


@audit_app.command("list")
def list_entries(
    tenant: str = typer.Option(..., metavar="NAME", help="The tenant whose log to read."),
    action: list[str] = typer.Option(
        [], "--action", metavar="ACTION", help="Only this action (repeatable), e.g. export.ordered."
    ),
    test_id: int | None = TEST_ID_FILTER,
    since: str | None = typer.Option(None, "--from", metavar="TIME", help="At or after (RFC 3339)."),
    until: str | None = typer.Option(None, "--to", metavar="TIME", help="Before (RFC 3339)."),
    limit: int = typer.Option(
        service.DEFAULT_LIMIT, min=1, max=service.MAX_LIMIT, metavar="N", help="How many, newest first."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
) -> None:
    """The tenant's audit entries, newest first: who, what, on what, from where."""
    known = {str(a) for a in Action}
    unknown = [a for a in action if a not in known]
    if unknown:
        raise CliError(f"unknown action {unknown[0]!r}; one of: {', '.join(sorted(known))}")
    settings = get_settings()
    require_database(settings)
    engine = build_engine(settings)
    try:
        with build_session_factory(engine)() as session:
            found = auth_repository.get_tenant_by_name(session, tenant)
            if found is None:
                raise CliError(f"no tenant named {tenant!r}")
            try:
                page = service.list_entries(
                    session, found.id, actions=action, test_id=test_id, since=since, until=until, limit=limit
                )
            except AppError as exc:
                detail = exc.details[0] if exc.details else {}
                raise CliError(
                    f"--{detail.get('field', '?')}: {detail.get('message', exc.message)}"
                ) from None
    finally:
        engine.dispose()
    rows: list[dict[str, Any]] = [entry.model_dump() for entry in page.entries]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    columns = ("time", "action", "client", "object", "test", "source IP", "request id", "details")
    console.print(
        data_table(
            columns,
            (
                (
                    row["time"],
                    row["action"],
                    row["clientId"] or "",
                    f"{row['objectType']} {row['objectId']}",
                    "" if row["testId"] is None else str(row["testId"]),
                    row["sourceIp"] or "",
                    row["requestId"] or "",
                    json.dumps(row["details"], separators=(",", ":")) if row["details"] else "",
                )
                for row in rows
            ),
        )
    )
