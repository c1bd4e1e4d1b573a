"""Free loopback ports for servers the tests start, picked outside the kernel's ephemeral range.

A port from ``bind(("127.0.0.1", 0))`` lies in the ephemeral range, which every outgoing
connection on the machine (to PostgreSQL, Redis, S3, ...) also draws its local port from.
A server restarted on the same port (fault tests) then fails now and then with "address
already in use", because a client socket took the port while the server was down. Ports
below the ephemeral range are never handed out that way; each pytest-xdist worker draws from
its own slice so workers do not race each other either.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
_LOWEST = 10_000
_SLICE = 2_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _worker_slice() -> range:
    """This process's slice of [10000, ephemeral low): by xdist worker number, else by pid."""
    top = _ephemeral_low()
    slices = max(1, (top - _LOWEST) // _SLICE)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else os.getpid()
    start = _LOWEST + (index % slices) * _SLICE
    return range(start, min(start + _SLICE, top))


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that can be bound now, below the ephemeral range."""
    candidates = list(_worker_slice())
    random.shuffle(candidates)
    picked: list[int] = []
    for port in candidates:
        if _bindable(port):
            picked.append(port)
            if len(picked) == count:
                return picked
    raise RuntimeError(f"no {count} free loopback ports in {candidates[0]}..{candidates[-1]}")


def free_port() -> int:
    return free_ports(1)[0]
