"""Lanes: a task on its own lane runs on its own threads and queue (generic, no feature)."""

from __future__ import annotations

import threading
import time

from dramatiq.brokers.stub import StubBroker

from examtrail.queue.broker import DramatiqQueue
from examtrail.queue.registry import TaskRegistry, lane_queue
from examtrail.queue.worker import BackgroundWorker


def test_a_busy_lane_does_not_hold_the_default_lanes_threads() -> None:
    broker = StubBroker()
    release = threading.Event()
    done: list[str] = []
    registry: TaskRegistry[None] = TaskRegistry()

    def slow(_ctx: None, name: str) -> None:
        release.wait(30)
        done.append(name)

    def quick(_ctx: None, name: str) -> None:
        done.append(name)

    registry.task("slow", slow, lane="slow")
    registry.task("quick", quick)
    routes = registry.routes("q")
    assert routes == {"slow": "q-slow", "quick": "q"}
    assert lane_queue("q", "") == "q"
    queue = DramatiqQueue(broker, "q", routes)
    worker = BackgroundWorker(
        broker, "q", registry, None, threads=1, sweep_interval=60, lane_threads={"slow": 1}
    )
    worker.start()
    try:
        queue.send("slow", "s1")
        queue.send("slow", "s2")  # waits behind s1 on the slow lane's only thread
        time.sleep(0.3)
        queue.send("quick", "k1")
        deadline = time.monotonic() + 10
        while "k1" not in done:
            assert time.monotonic() < deadline, "the default lane waited for the slow lane"
            time.sleep(0.02)
        assert "s1" not in done
        release.set()
        while len(done) < 3:
            assert time.monotonic() < deadline + 10
            time.sleep(0.02)
    finally:
        release.set()
        worker.stop()
    assert sorted(done) == ["k1", "s1", "s2"]
