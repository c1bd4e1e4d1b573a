"""One-line errors for the command line, and the database checks that produce the common ones."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from examtrail.core.settings import Settings

UPGRADE_HINT = "run `examtrail db upgrade`"


class CliError(Exception):
    """An error the operator can act on: ``Error: <message>``, one line on stderr, exit status 1."""


def output_console() -> Console:
    """A console whose tables are never cut to 80 columns when the output is not a terminal."""
    return Console() if sys.stdout.isatty() else Console(width=10_000, no_color=True)


def data_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """A table of stored values, every cell plain text: never read as Rich markup or emoji codes
    (a tenant or candidate id such as ``[/x]`` is shown as it is, not a MarkupError)."""
    table = Table(*columns)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _safe_url(settings: Settings) -> str:
    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    return (str(original).strip().splitlines() or [type(original).__name__])[0]


def require_database_file(settings: Settings) -> None:
    """A SQLite database's file exists; else a one-line error naming the fix.

    A missing SQLite file is not created here: running from another folder would otherwise leave
    an empty ``./var/examtrail.db`` behind and fail later with a confusing error.
    """
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        from pathlib import Path

        path = Path(url.database)
        if not path.exists():
            raise CliError(
                f"no database at {path}: {UPGRADE_HINT} first (from the project folder, "
                "or set EXAMTRAIL_DATA_DIR / EXAMTRAIL_DATABASE_URL)"
            )


def require_database(settings: Settings) -> None:
    """The database exists (``require_database_file``), is reachable and is migrated; else a
    one-line error naming the fix."""
    require_database_file(settings)
    from examtrail.core.migrate import current

    try:
        revision = current(settings)
    except (OperationalError, DBAPIError) as exc:
        raise CliError(f"cannot reach the database {_safe_url(settings)}: {_first_line(exc)}") from None
    if revision is None:
        raise CliError(f"the database {_safe_url(settings)} is not migrated: {UPGRADE_HINT}")


def run(app: typer.Typer) -> None:
    """Runs the CLI; known failures print one line on stderr instead of a traceback."""
    try:
        app()
    except CliError as exc:
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        # One line per bad setting; never its value (it may be a secret).
        for error in exc.errors(include_url=False, include_input=False):
            name = f"EXAMTRAIL_{str(error['loc'][0]).upper()}" if error["loc"] else "settings"
            typer.echo(f"Error: {name}: {error['msg'].removeprefix('Value error, ')}", err=True)
        sys.exit(1)
    except (OperationalError, DBAPIError) as exc:
        message = _first_line(exc)
        hint = f" ({UPGRADE_HINT})" if "no such table" in message or "does not exist" in message else ""
        typer.echo(f"Error: database: {message}{hint}", err=True)
        sys.exit(1)
