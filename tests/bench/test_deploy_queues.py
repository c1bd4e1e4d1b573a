"""Benchmark deployments each have their own queue in the shared Redis database.

With one queue for all, a worker of one deployment (an A/B variant, or another benchmark
running at the same time on its own database) took another's export job, found no such job
and dropped the message: the job then waited 30 s or more for ``dispatch_due`` (the
"concurrency stalls" of the third pass). Starting a benchmark must not drop the queues of
one still running either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import redis

from bench import deploy
from examtrail.core.settings import Settings


class _S3:
    def env(self, bucket: str) -> dict[str, str]:
        return {"EXAMTRAIL_STORAGE": "s3", "EXAMTRAIL_S3_BUCKET": bucket}


def test_each_deployment_has_its_own_valid_queue(tmp_path: Path) -> None:
    made = [
        deploy.postgres_deployment(name, "db", _S3(), "bucket", tmp_path)  # type: ignore[arg-type]
        for name in ("pg-main", "pg-new", "pg-c3=x")
    ]
    made.append(deploy.postgres_local_deployment("pg-local", "db", tmp_path))
    queues = [d.env["EXAMTRAIL_QUEUE_NAME"] for d in made]
    assert len(set(queues)) == 4
    for queue in queues:
        assert str(os.getpid()) in queue
        assert Settings(_env_file=None, queue_name=queue).queue_name == queue


def _dead_pid() -> int:
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid += 1
    return pid


def test_flush_drops_only_the_queues_of_ended_benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    client: Any = redis.Redis.from_url(deploy.REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis")
    token = os.urandom(4).hex()
    live = f"dramatiq:bench-t{token}-{os.getpid()}.msgs"
    live_lane = f"dramatiq:bench-t{token}-{os.getpid()}-webhooks"
    ended = f"dramatiq:bench-t{token}-{_dead_pid()}.DQ.msgs"
    other = f"dramatiq:t{token}.msgs"  # not a benchmark's queue
    keys = (live, live_lane, ended, other)
    try:
        for key in keys:
            client.hset(key, "m", "1")
        deploy.flush_redis_db()
        assert [bool(client.exists(key)) for key in keys] == [True, True, False, True]
    finally:
        client.delete(*keys)
        client.close()
