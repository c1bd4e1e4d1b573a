"""Real ``examtrail`` processes (API servers and workers) for end-to-end and fault tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.support.ports import free_port


def examtrail_env(settings_env: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without EXAMTRAIL_* leftovers, plus ``settings_env``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXAMTRAIL_")}
    env.update(settings_env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class ExamtrailProcess:
    """One ``examtrail serve`` or ``examtrail worker`` child process, logging to a file."""

    def __init__(
        self, args: list[str], env: Mapping[str, str], log_path: Path, port: int | None = None
    ) -> None:
        self.args = args
        self.env = examtrail_env(env)
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def server(
        cls, env: Mapping[str, str], log_dir: Path, port: int | None = None, name: str = "api"
    ) -> ExamtrailProcess:
        port = port or free_port()
        env = {"EXAMTRAIL_PUBLIC_URL": f"http://127.0.0.1:{port}", **env}
        args = [sys.executable, "-m", "examtrail", "serve", "--host", "127.0.0.1", "--port", str(port)]
        return cls(args, env, log_dir / f"{name}-{port}.log", port)

    @classmethod
    def worker(
        cls, env: Mapping[str, str], log_dir: Path, name: str = "worker", threads: int = 2
    ) -> ExamtrailProcess:
        args = [sys.executable, "-m", "examtrail", "worker", "--threads", str(threads)]
        return cls(args, env, log_dir / f"{name}.log")

    @property
    def base_url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 90.0) -> ExamtrailProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait and self.port is not None:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"process exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.args} not healthy after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> ExamtrailProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def run_cli(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examtrail", *args],
        env=examtrail_env(env),
        capture_output=True,
        text=True,
        check=False,
    )
