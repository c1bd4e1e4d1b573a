"""The process-wide runtime: settings, database, object store and task queue.

Built once per process (API, worker, CLI); tasks reach it through ``get_runtime``.
"""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from examtrail.core.db import build_engine, build_session_factory
from examtrail.core.settings import Settings
from examtrail.queue import registry
from examtrail.queue.broker import DramatiqQueue, TaskQueue, build_broker
from examtrail.storage import ObjectStore, build_object_store


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    broker: dramatiq.Broker
    queue: TaskQueue

    @property
    def embedded_worker(self) -> bool:
        """No broker URL: jobs run on threads inside this process."""
        return not self.settings.broker_url

    def close(self) -> None:
        self.broker.close()
        self.engine.dispose()


_current: Runtime | None = None


def build_runtime(settings: Settings) -> Runtime:
    # Every process that can run or finish a job needs every feature's tasks and hooks.
    registry.load_task_modules()
    engine = build_engine(settings)
    broker = build_broker(settings.broker_url, settings.queue_name)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=build_session_factory(engine),
        store=build_object_store(settings),
        broker=broker,
        queue=DramatiqQueue(broker, settings.queue_name),
    )


def set_runtime(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def get_runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("runtime not initialised")
    return _current
