"""The deployments the benchmark measures: databases, SeaweedFS, API servers and workers."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from tests.support.ports import free_port
from tests.support.processes import ExamtrailProcess
from tests.support.seaweedfs import SeaweedS3

from examtrail.auth import service as auth_service
from examtrail.core.db import build_engine, build_session_factory, transaction
from examtrail.core.migrate import upgrade
from examtrail.core.settings import Settings

SECRET = "bench-secret-key-0123456789abcdef0123456789abcdef"
PG_ADMIN_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


def pg_url(database: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{database}"


def sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


def recreate_pg_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name)


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Deployment:
    """One configuration of Examtrail: its settings (as env) and its processes."""

    name: str
    env: dict[str, str]
    log_dir: Path
    processes: list[ExamtrailProcess] = field(default_factory=list)
    api: ExamtrailProcess | None = None
    worker: ExamtrailProcess | None = None

    @property
    def settings(self) -> Settings:
        values: dict[str, Any] = {k.removeprefix("EXAMTRAIL_").lower(): v for k, v in self.env.items()}
        return Settings(_env_file=None, **values)

    @property
    def base_url(self) -> str:
        assert self.api is not None
        return self.api.base_url

    def migrate(self) -> None:
        upgrade(self.settings)

    def start_api(self, workers: int = 1) -> ExamtrailProcess:
        port = free_port()
        proc = ExamtrailProcess.server(self.env, self.log_dir, port=port, name=f"{self.name}-api")
        if workers > 1:
            proc.args += ["--workers", str(workers)]
        proc.start(timeout=60)
        self.processes.append(proc)
        self.api = proc
        return proc

    def start_worker(self, threads: int = 2) -> ExamtrailProcess:
        proc = ExamtrailProcess.worker(self.env, self.log_dir, name=f"{self.name}-worker", threads=threads)
        proc.start()
        self.processes.append(proc)
        self.worker = proc
        time.sleep(1.5)  # imports and broker connection
        return proc

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        self.api = self.worker = None

    def create_client(self, tenant: str) -> tuple[str, str]:
        engine = build_engine(self.settings)
        try:
            with transaction(build_session_factory(engine)) as session:
                created = auth_service.create_client(
                    session, tenant_name=tenant, scopes=frozenset({"ingest", "export"}), name="bench"
                )
        finally:
            engine.dispose()
        return created.client_id, created.api_key

    def token(self, client_id: str, api_key: str) -> str:
        response = httpx.post(
            f"{self.base_url}/api/authenticate/token/",
            params={"grant_type": "authorization_code", "client_id": client_id},
            headers={"code": api_key},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


def common_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "EXAMTRAIL_DATA_DIR": str(data_dir),
        "EXAMTRAIL_SECRET_KEY": SECRET,
        # No per-request access log lines: the benchmark measures the service, not logging.
        "EXAMTRAIL_LOG_LEVEL": "WARNING",
        "EXAMTRAIL_TOKEN_TTL_SECONDS": "86400",
        # Repeated identical exports are timed, not handed out again from the first run.
        "EXAMTRAIL_EXPORT_REUSE": "false",
        **extra,
    }


def queue_name(deployment: str) -> str:
    """The deployment's own queue in the shared Redis database. With one queue for all, any
    worker listening took any job: one variant's worker ran another's exports (A/B runs), and
    a benchmark running beside ours took our jobs, found no such job in its database and
    dropped the message; the job then waited 30 s or more for ``dispatch_due`` to send it
    again (the "stalls" of the third pass's upload settings sweep, bench/notes.md)."""
    return f"bench-{re.sub(r'[^A-Za-z0-9_.]', '_', deployment)}-{os.getpid()}"


_QUEUE_PID = re.compile(r"bench-[A-Za-z0-9_.]*?-([0-9]+)(?:[.-]|$)")


def postgres_deployment(name: str, database: str, s3: SeaweedS3, bucket: str, work: Path) -> Deployment:
    env = common_env(
        work / name,
        EXAMTRAIL_DATABASE_URL=sqlalchemy_url(pg_url(database)),
        EXAMTRAIL_BROKER_URL=REDIS_URL,
        EXAMTRAIL_QUEUE_NAME=queue_name(name),
        **s3.env(bucket),
    )
    return Deployment(name, env, work / "logs")


def postgres_local_deployment(name: str, database: str, work: Path) -> Deployment:
    """PostgreSQL + the local store (the default ``storage``) + Redis on a queue of its own."""
    data = work / name
    if data.exists():  # a previous run's export files
        shutil.rmtree(data)
    env = common_env(
        data,
        EXAMTRAIL_DATABASE_URL=sqlalchemy_url(pg_url(database)),
        EXAMTRAIL_BROKER_URL=REDIS_URL,
        EXAMTRAIL_QUEUE_NAME=queue_name(name),
    )
    return Deployment(name, env, work / "logs")


def sqlite_deployment(name: str, work: Path) -> Deployment:
    data = work / name
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    return Deployment(name, common_env(data), work / "logs")


@contextlib.contextmanager
def seaweedfs(work: Path, *, cpu_profile: Path | None = None) -> Iterator[SeaweedS3]:
    """SeaweedFS for a benchmark; with ``cpu_profile``, weed's own CPU profile (pprof) of the
    whole run is written there when it stops (``bench.weed_profile`` reads it)."""
    base = work / "seaweedfs"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    # SeaweedFS's own default volume size (30 GB; volumes are not pre-allocated). With 1 GB
    # volumes a volume filled every five 1M exports, and the upload that met it waited ~1 s
    # for the master to grow the next one: a stall of the store, not of the export.
    extra = [f"-cpuprofile={cpu_profile.resolve()}"] if cpu_profile is not None else []
    server = SeaweedS3(base, volume_size_limit_mb=30_000, extra_args=extra)
    with server:
        yield server
        if cpu_profile is not None:
            server.stop(graceful=True, timeout=60)  # weed writes the profile on SIGTERM only


def flush_redis_db() -> None:
    """Forget the queues that benchmarks no longer running left in the Redis database (a
    crashed run's messages). The queues of live benchmarks (their pid is in the queue name,
    see :func:`queue_name`) are theirs: flushing the whole database lost their messages."""
    import redis

    with contextlib.suppress(Exception):
        client: Any = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match="dramatiq:*bench-*"):
            found = _QUEUE_PID.search(key.decode(errors="replace"))
            if found is not None and not Path(f"/proc/{found.group(1)}").exists():
                client.delete(key)
        client.close()


def read_status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of ``pid``; False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_of(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process of ``pids``."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def peak_rss_mb(pid: int) -> float:
    return read_status_kb(pid, "VmHWM") / 1024


def process_tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn --workers forks children)."""
    found = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            found.extend(process_tree_pids(int(child)))
    return found


def env_mapping(env: Mapping[str, str]) -> dict[str, str]:
    return dict(env)
