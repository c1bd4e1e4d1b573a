"""The sweeper runs every periodic job at each pass, or at most every ``every`` seconds."""

from __future__ import annotations

from examtrail.queue.registry import TaskRegistry
from examtrail.queue.worker import Sweeper


def test_a_periodic_job_with_a_period_runs_at_most_that_often() -> None:
    runs: list[str] = []
    registry: TaskRegistry[None] = TaskRegistry()
    registry.periodic("each", lambda _: runs.append("each"))
    registry.periodic("rare", lambda _: runs.append("rare"), every=3600)
    sweeper = Sweeper(registry, None, interval=60)
    for _ in range(3):
        sweeper.run_once()
    assert runs.count("each") == 3
    assert runs.count("rare") == 1  # the first pass runs it at once


def test_a_failing_job_does_not_stop_the_others() -> None:
    runs: list[str] = []
    registry: TaskRegistry[None] = TaskRegistry()

    def broken(_: None) -> None:
        raise RuntimeError("boom")

    registry.periodic("broken", broken)
    registry.periodic("fine", lambda _: runs.append("fine"))
    Sweeper(registry, None, interval=60).run_once()
    assert runs == ["fine"]
