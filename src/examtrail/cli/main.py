"""The ``examtrail`` command line."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

from examtrail.cli.audit import audit_app
from examtrail.cli.errors import (
    CliError,
    data_table,
    output_console,
    require_database,
    require_database_file,
    run,
)
from examtrail.cli.exports import TYPER_OPTIONS, exports_app
from examtrail.cli.keys import keys_app
from examtrail.cli.lifecycle import erase_app, hold_app
from examtrail.cli.verify import verify
from examtrail.core.logging import configure_logging, logging_config
from examtrail.core.memory import DEFAULT_ARENAS
from examtrail.core.settings import Settings, get_settings

if TYPE_CHECKING:
    from examtrail.auth.service import NewClient
    from examtrail.queue.worker import BackgroundWorker
    from examtrail.runtime import Runtime

app = typer.Typer(
    help="Examtrail: exam event storage and Inspera-compatible exports.",
    no_args_is_help=True,
    **TYPER_OPTIONS,
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True, **TYPER_OPTIONS)
clients_app = typer.Typer(help="API clients of tenants.", no_args_is_help=True, **TYPER_OPTIONS)
app.add_typer(db_app, name="db")
app.add_typer(clients_app, name="clients")
app.add_typer(exports_app, name="exports")
app.add_typer(keys_app, name="keys")
app.command("verify")(verify)
app.add_typer(audit_app, name="audit")
app.add_typer(erase_app, name="erase")
app.add_typer(hold_app, name="hold")

console = output_console()
DEFAULT_THREADS = Settings.model_fields["worker_threads"].default
DEFAULT_WEBHOOK_THREADS = Settings.model_fields["webhook_threads"].default


def main() -> None:
    """The ``examtrail`` entry point: known failures are one line on stderr."""
    run(app)


def _logging() -> None:
    configure_logging(get_settings())


def _metrics(settings: Settings, *, wipe: bool) -> None:
    """Share metric files with this host's other processes (before anything counts)."""
    from examtrail.core.metrics import use_metrics_dir

    use_metrics_dir(settings.resolved_metrics_dir, wipe=wipe)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", metavar="HOST", help="Interface to bind."),
    port: int = typer.Option(8000, metavar="PORT", help="Port to listen on."),
    workers: int = typer.Option(1, metavar="N", help="API processes (needs a broker URL when more than 1)."),
) -> None:
    """Serve the HTTP API (with the in-process worker when no broker URL is set).

    Slow-header and idle connections are closed (EXAMTRAIL_HTTP_HEADER_TIMEOUT_SECONDS,
    EXAMTRAIL_HTTP_KEEP_ALIVE_SECONDS); put a reverse proxy in front when it faces the internet."""
    import uvicorn

    from examtrail.core.memory import tune_allocator
    from examtrail.core.server import uvicorn_options

    # This process runs the in-process worker; --workers children read glibc's variables.
    applied = tune_allocator()
    os.environ.setdefault("MALLOC_ARENA_MAX", str(applied.get("arena_max", DEFAULT_ARENAS)))
    settings = get_settings()
    if workers > 1 and not settings.broker_url:
        raise typer.BadParameter("several API processes need EXAMTRAIL_BROKER_URL (and PostgreSQL)")
    require_database(settings)
    _logging()
    _metrics(settings, wipe=True)
    # uvicorn shuts down gracefully on SIGTERM (in-flight requests finish, the in-process
    # worker hands its jobs back), then re-raises the signal to the handler found before it:
    # this one, so a graceful stop exits 0 rather than "killed by SIGTERM".
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        "examtrail.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        # Each server process configures logging from this (JSON or text); the app writes
        # its own access log (route template, request id), so uvicorn's is off.
        log_config=logging_config(settings),
        access_log=False,
        proxy_headers=True,
        **uvicorn_options(settings),
    )


@app.command()
def worker(
    threads: int | None = typer.Option(
        None,
        min=1,
        max=64,
        metavar="N",
        help="Export threads.",
        show_default=f"EXAMTRAIL_WORKER_THREADS, else {DEFAULT_THREADS}",
    ),
    webhook_threads: int | None = typer.Option(
        None,
        min=1,
        max=64,
        metavar="N",
        help="Webhook sending threads, on their own queue lane <queue>-webhooks.",
        show_default=f"EXAMTRAIL_WEBHOOK_THREADS, else {DEFAULT_WEBHOOK_THREADS}",
    ),
) -> None:
    """Run background workers on the configured broker (Redis or RabbitMQ)."""
    settings = get_settings()
    if not settings.broker_url:
        raise typer.BadParameter(
            "set EXAMTRAIL_BROKER_URL (redis://... or amqp://...) to run standalone workers"
        )
    require_database(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runtime, background = start_worker(settings, threads, webhook_threads)
    console.print(
        f"[green]worker running[/] ({background.threads} export threads, "
        f"{sum(background.lane_threads.values())} webhook threads); Ctrl-C to stop"
    )
    stop.wait()
    # No new jobs from now on; running exports finish within their grace or are handed back.
    background.stop(timeout=max(5.0, settings.job_lease_seconds))
    runtime.close()


def start_worker(
    settings: Settings, threads: int | None = None, webhook_threads: int | None = None
) -> tuple[Runtime, BackgroundWorker[Runtime]]:
    """What ``examtrail worker`` starts: the runtime and its running worker threads.

    Imports only what the configured deployment needs (the broker's client, the object
    store's): no web framework, no server, no templates (tests/queue/test_worker_imports.py)."""
    from examtrail.core.memory import release_free_memory, tune_allocator

    tune_allocator()  # before any thread starts: fewer malloc arenas, big buffers unmapped
    from examtrail.tasks import background_worker, build_runtime

    _logging()
    _metrics(settings, wipe=False)
    runtime = build_runtime(settings)
    runtime.store.ensure_ready()
    background = background_worker(runtime, threads, webhook_threads)
    background.start()
    release_free_memory()  # what start-up freed (imports, S3 service model) leaves the RSS
    return runtime, background


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", metavar="REVISION")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from alembic.util.exc import CommandError

    from examtrail.core.migrate import current, upgrade

    settings = get_settings()
    try:
        upgrade(settings, revision)
    except CommandError as exc:
        raise CliError(f"revision {revision!r}: {exc}") from None
    console.print(Text.assemble("database at revision ", (current(settings) or "", "bold")))


@db_app.command("current")
def db_current() -> None:
    """Show the database's migration revision."""
    from examtrail.core.migrate import current

    settings = get_settings()
    require_database_file(settings)
    console.print(Text(current(settings) or "(empty database)"))


@clients_app.command("create")
def clients_create(
    tenant: str = typer.Option(..., metavar="NAME", help="Tenant name; created if it does not exist."),
    scopes: str = typer.Option(
        "ingest,export", metavar="SCOPES", help="Comma-separated: ingest, export, erase, audit."
    ),
    name: str = typer.Option("", metavar="LABEL", help="A label for the client."),
    as_json: bool = typer.Option(False, "--json", help='Print {"clientId", "apiKey"} as JSON.'),
) -> None:
    """Create an API client and print its id and API key (shown once)."""
    from examtrail.auth import service
    from examtrail.core.db import build_engine, build_session_factory, transaction

    settings = get_settings()
    require_database(settings)
    engine = build_engine(settings)
    wanted = frozenset(s.strip() for s in scopes.split(",") if s.strip())
    try:
        with transaction(build_session_factory(engine)) as session:
            created = service.create_client(session, tenant_name=tenant, scopes=wanted, name=name)
            # Printed before the commit: if the key cannot be shown, the client is not created.
            _print_new_client(created, as_json=as_json)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    finally:
        engine.dispose()


def _print_new_client(created: NewClient, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"clientId": created.client_id, "apiKey": created.api_key}))
        return
    # Stored values as plain text (a tenant may be named "[/x]"), the API key first.
    console.print(Text.assemble("API key    ", (created.api_key, "bold"), "  (shown once; store it now)"))
    console.print(Text.assemble("client id  ", (created.client_id, "bold")))
    console.print(Text.assemble("tenant     ", (created.tenant_name, "bold")))
    console.print(Text(f"scopes     {', '.join(sorted(created.scopes))}"))


@clients_app.command("list")
def clients_list(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
) -> None:
    """List API clients (never their keys)."""
    from examtrail.auth import repository
    from examtrail.core.db import build_engine, build_session_factory
    from examtrail.core.timeutil import format_dt

    settings = get_settings()
    require_database(settings)
    engine = build_engine(settings)
    with build_session_factory(engine)() as session:
        rows: list[dict[str, Any]] = [
            {
                "clientId": client.client_id,
                "tenant": tenant.name,
                "name": client.name,
                "scopes": sorted(s for s in client.scopes.split(",") if s),
                "created": format_dt(client.created_at),
                "revoked": format_dt(client.revoked_at),
            }
            for client, tenant in repository.list_clients(session)
        ]
    engine.dispose()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    columns = ("client id", "tenant", "name", "scopes", "created", "revoked")
    console.print(
        data_table(
            columns,
            (
                (
                    row["clientId"],
                    row["tenant"],
                    row["name"],
                    ",".join(row["scopes"]),
                    row["created"] or "",
                    row["revoked"] or "",
                )
                for row in rows
            ),
        )
    )


@clients_app.command("revoke")
def clients_revoke(
    client_id: str = typer.Argument(..., metavar="CLIENT_ID", help="The client to revoke."),
) -> None:
    """Revoke a client: its API key gets no new token, and every token it already holds is refused
    (401 token_revoked) within EXAMTRAIL_REVOCATION_CHECK_SECONDS (default 5 s) on every API process.
    Its data, exports and subscriptions stay with the tenant."""
    from examtrail.auth import service
    from examtrail.core.db import build_engine, build_session_factory, transaction

    settings = get_settings()
    require_database(settings)
    engine = build_engine(settings)
    with transaction(build_session_factory(engine)) as session:
        revoked = service.revoke_client(session, client_id)
    engine.dispose()
    if not revoked:
        raise CliError(f"no active client {client_id}")
    seconds = get_settings().revocation_check_seconds
    console.print(
        Text(f"revoked {client_id}: no new tokens; its current tokens are refused within {seconds:g} s")
    )


@app.command()
def demo(
    public_url: str = typer.Option(
        "", metavar="URL", help="Base URL printed in the walkthrough (default: EXAMTRAIL_PUBLIC_URL)."
    ),
) -> None:
    """Seed a demo tenant, client, test, candidates, events and an attachment; print how to try it."""
    from examtrail.cli.demo import seed_demo

    settings = get_settings()
    require_database(settings)
    result = seed_demo(settings)
    base = (public_url or settings.public_url).rstrip("/")
    console.print(
        f"[bold green]Demo ready[/]: test {result.test_id} with {result.candidates} candidates "
        f"and {result.events} events (flags of each severity, network gaps, two evidence files)."
    )
    console.print(Text.assemble("client id  ", (result.client_id, "bold")))
    console.print(
        Text.assemble("API key    ", (result.api_key, "bold"), f"  (also saved in {result.credentials_file})")
    )
    console.print(f"\nReview pages: {base}/ui/ (sign in with the client id and API key above)", markup=False)
    read = "python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])'"
    lines = [
        f"TOKEN=$(curl -s -X POST '{base}/api/authenticate/token/?grant_type=authorization_code"
        f"&client_id={result.client_id}' -H 'code: {result.api_key}' | {read} access_token)",
        f"JOB=$(curl -s -X POST {base}/v1/test/{result.test_id}/events "
        f'-H "Authorization: Bearer $TOKEN" | {read} jobId)',
        f'curl -s {base}/v1/test/{result.test_id}/events/$JOB -H "Authorization: Bearer $TOKEN"; echo',
    ]
    console.print("\nTry it (paste these lines; the README's 'Walkthrough' does the whole flow):")
    for line in lines:
        console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)


if __name__ == "__main__":
    main()
