"""Task and periodic-job registry, independent of any broker.

Feature modules register plain functions here at import time; a worker binds them
to whatever Dramatiq broker the settings chose (``examtrail.queue.broker``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TaskFn = Callable[..., None]


@dataclass(frozen=True, slots=True)
class Periodic:
    name: str
    fn: Callable[[], None]


TASKS: dict[str, TaskFn] = {}
PERIODICS: list[Periodic] = []


def task(name: str) -> Callable[[TaskFn], TaskFn]:
    def register(fn: TaskFn) -> TaskFn:
        TASKS[name] = fn
        return fn

    return register


def periodic(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def register(fn: Callable[[], None]) -> Callable[[], None]:
        if all(p.name != name for p in PERIODICS):
            PERIODICS.append(Periodic(name, fn))
        return fn

    return register


def load_task_modules() -> None:
    """Import the modules that register tasks (kept in one place so workers see all)."""
    import examtrail.exports.tasks
    import examtrail.webhooks.tasks  # noqa: F401


def describe() -> dict[str, Any]:
    return {"tasks": sorted(TASKS), "periodic": [p.name for p in PERIODICS]}
