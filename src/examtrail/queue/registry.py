"""Tasks and periodic jobs, independent of any broker and of the features.

The application's top (``examtrail.tasks``) fills a :class:`TaskRegistry` with the
features' functions; a worker binds them to the Dramatiq broker the settings chose
(``examtrail.queue.broker``) and calls each with a context object (the runtime) as its
first argument. The queue itself knows no feature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

C = TypeVar("C")

# A task: ``fn(context, *message_args)``; a periodic job: ``fn(context)``.
TaskFn = Callable[..., None]


@dataclass(frozen=True, slots=True)
class Periodic(Generic[C]):
    name: str
    fn: Callable[[C], Any]


@dataclass
class TaskRegistry(Generic[C]):
    tasks: dict[str, TaskFn] = field(default_factory=dict)
    periodics: list[Periodic[C]] = field(default_factory=list)

    def task(self, name: str, fn: TaskFn) -> None:
        self.tasks[name] = fn

    def periodic(self, name: str, fn: Callable[[C], Any]) -> None:
        if all(p.name != name for p in self.periodics):
            self.periodics.append(Periodic(name, fn))

    def describe(self) -> dict[str, Any]:
        return {"tasks": sorted(self.tasks), "periodic": [p.name for p in self.periodics]}
