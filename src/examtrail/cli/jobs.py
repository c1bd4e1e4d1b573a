"""What the commands that order background jobs share: the runtime, the tenant and the caller
(``cli``), and following the job with a progress bar until it ends, running it in this
process whenever it is waiting (workers, if any are running, may claim it first)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from examtrail.audit.actions import CLI_ACTOR
from examtrail.auth import repository as auth_repository
from examtrail.cli.errors import CliError, require_database
from examtrail.core.db import utcnow
from examtrail.core.security import Principal
from examtrail.core.settings import get_settings
from examtrail.runtime import Runtime
from examtrail.tasks import build_runtime

POLL_SECONDS = 0.2
# Progress bars go to stderr: stdout holds the result (``--json`` stays parseable, a pipe gets no bar).
progress_console = Console(stderr=True)


def open_runtime() -> Runtime:
    """The configured deployment's runtime, its database checked and its store ready."""
    settings = get_settings()
    require_database(settings)
    runtime = build_runtime(settings)
    runtime.store.ensure_ready()
    return runtime


def tenant_id_of(runtime: Runtime, tenant: str) -> int:
    with runtime.sessions() as session:
        found = auth_repository.get_tenant_by_name(session, tenant)
    if found is None:
        raise CliError(f"no tenant named {tenant!r}")
    return found.id


def cli_principal(runtime: Runtime, tenant_id: int, scope: str) -> Principal:
    """The operator acting for ``tenant_id``: audited as ``cli``."""
    expires = utcnow() + timedelta(seconds=runtime.settings.token_ttl_seconds)
    return Principal(tenant_id, CLI_ACTOR, frozenset({scope}), expires)


@dataclass(frozen=True, slots=True)
class JobView:
    """What the bar shows of a job, read fresh from the database at each poll."""

    done: bool  # no longer queued or running
    runnable: bool  # waiting, and any retry delay is over: this process may run it
    completed: int
    total: int | None


def is_due(not_before: datetime | None) -> bool:
    """Whether a waiting job's retry delay (if any) is over: this process may run it now."""
    return not_before is None or not_before <= utcnow()


def follow(description: str, poll: Callable[[], JobView], run: Callable[[], None]) -> None:
    """Show ``poll()``'s progress on stderr until the job is done; start ``run`` on a thread whenever the
    job is runnable and no earlier run of ours is still going (a retry after a failure)."""
    worker: threading.Thread | None = None
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=progress_console) as bar:
        task = bar.add_task(description, total=None)
        while True:
            view = poll()
            bar.update(task, total=view.total or None, completed=view.completed)
            if view.done:
                return
            if (worker is None or not worker.is_alive()) and view.runnable:
                worker = threading.Thread(target=run, daemon=True)
                worker.start()
            time.sleep(POLL_SECONDS)
