"""The process-wide runtime: settings, database, object store and task queue.

Built once per process (API, worker, CLI) and passed down: routes get it from the app
(``examtrail.deps``), tasks as their first argument (``examtrail.tasks``). It knows no
feature; the features depend on it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import dramatiq
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from examtrail.core.db import build_engine, build_session_factory
from examtrail.core.settings import Settings
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
    # Set when this process's worker shuts down: running jobs finish soon or hand their
    # lease back, and new wake-ups are passed on to other workers.
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def embedded_worker(self) -> bool:
        """No broker URL: jobs run on threads inside this process."""
        return not self.settings.broker_url

    def close(self) -> None:
        self.broker.close()
        self.engine.dispose()


def build_runtime(settings: Settings, routes: Mapping[str, str] | None = None) -> Runtime:
    """``routes``: task name → broker queue (the lanes; ``examtrail.tasks.build_runtime``)."""
    engine = build_engine(settings)
    broker = build_broker(settings.broker_url, settings.queue_name)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=build_session_factory(engine),
        store=build_object_store(settings),
        broker=broker,
        queue=DramatiqQueue(broker, settings.queue_name, routes),
    )
