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
    # Run at most this often (seconds); 0: at every sweep.
    every: float = 0.0


def lane_queue(queue_name: str, lane: str) -> str:
    """The broker queue of a lane: the main queue for the default lane (``""``)."""
    return f"{queue_name}-{lane}" if lane else queue_name


@dataclass
class TaskRegistry(Generic[C]):
    """Named tasks, each on a *lane*: its own broker queue (``<queue>-<lane>``) served by
    its own worker threads, so slow tasks of one lane never hold the threads of another."""

    tasks: dict[str, TaskFn] = field(default_factory=dict)
    periodics: list[Periodic[C]] = field(default_factory=list)
    lanes: dict[str, str] = field(default_factory=dict)

    def task(self, name: str, fn: TaskFn, *, lane: str = "") -> None:
        self.tasks[name] = fn
        self.lanes[name] = lane

    def lane_of(self, name: str) -> str:
        return self.lanes.get(name, "")

    def lane_names(self) -> list[str]:
        """Every lane with a task, the default lane (``""``) first."""
        return sorted(set(self.lanes.values()) | {""})

    def routes(self, queue_name: str) -> dict[str, str]:
        """Task name → the broker queue its messages go to."""
        return {name: lane_queue(queue_name, self.lane_of(name)) for name in self.tasks}

    def periodic(self, name: str, fn: Callable[[C], Any], every: float = 0.0) -> None:
        if all(p.name != name for p in self.periodics):
            self.periodics.append(Periodic(name, fn, every))

    def describe(self) -> dict[str, Any]:
        return {
            "tasks": sorted(self.tasks),
            "periodic": [p.name for p in self.periodics],
            "lanes": {name: lane for name, lane in sorted(self.lanes.items()) if lane},
        }
