"""Dramatiq brokers by URL scheme, and the queue the API uses to wake workers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import dramatiq
from dramatiq.brokers.stub import StubBroker

from examtrail.queue.registry import C, TaskFn, TaskRegistry, lane_queue

log = logging.getLogger(__name__)


class TaskQueue(Protocol):
    def send(self, task_name: str, *args: Any, delay_ms: int | None = None) -> None: ...

    def check(self) -> None: ...


def _stub(_url: str) -> dramatiq.Broker:
    return StubBroker()


def _redis(url: str) -> dramatiq.Broker:
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=url)  # type: ignore[no-untyped-call]


def _rabbitmq(url: str) -> dramatiq.Broker:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    return RabbitmqBroker(url=url)


BROKERS: dict[str, Callable[[str], dramatiq.Broker]] = {
    "": _stub,
    "redis": _redis,
    "rediss": _redis,
    "amqp": _rabbitmq,
    "amqps": _rabbitmq,
}


def build_broker(url: str, queue_name: str) -> dramatiq.Broker:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    try:
        factory = BROKERS[scheme]
    except KeyError:
        raise ValueError(f"unsupported broker URL scheme {scheme!r}") from None
    broker = factory(url)
    broker.declare_queue(queue_name)
    return broker


def declare_actors(broker: dramatiq.Broker, queue_name: str, registry: TaskRegistry[C], context: C) -> None:
    """Bind every task of ``registry`` to ``broker`` on its lane's queue, each called with
    ``context`` first."""
    for name, fn in registry.tasks.items():
        if name in broker.actors:
            continue

        def run(*args: Any, _fn: TaskFn = fn) -> None:
            _fn(context, *args)

        # Retries live in the database (job rows, delivery rows), not in the broker.
        queue = lane_queue(queue_name, registry.lane_of(name))
        dramatiq.actor(broker=broker, actor_name=name, queue_name=queue, max_retries=0)(run)


class DramatiqQueue:
    """Enqueues by actor name, so API processes need no actor objects. ``routes`` sends a
    task to its lane's queue (task name → queue name); others go to ``queue_name``."""

    def __init__(
        self, broker: dramatiq.Broker, queue_name: str, routes: Mapping[str, str] | None = None
    ) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.routes = dict(routes or {})
        for queue in set(self.routes.values()):
            broker.declare_queue(queue)

    def send(self, task_name: str, *args: Any, delay_ms: int | None = None) -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=self.routes.get(task_name, self.queue_name),
            actor_name=task_name,
            args=args,
            kwargs={},
            options={},
        )
        try:
            self.broker.enqueue(message, delay=delay_ms)
        except Exception:
            # The row is committed; the sweeper will send it again. Never fail the request.
            log.warning("could not enqueue %s; the sweeper will retry", task_name, exc_info=True)

    def check(self) -> None:
        if isinstance(self.broker, StubBroker):
            return
        client = getattr(self.broker, "client", None)
        if client is not None:  # Redis
            client.ping()
            return
        connection = getattr(self.broker, "connection", None)
        if connection is not None and not connection.is_open:  # RabbitMQ
            raise ConnectionError("broker connection is closed")
