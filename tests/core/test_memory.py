"""The allocator limits the worker and the server apply at start (issue #15, peak RSS)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from examtrail.core.memory import tune_allocator

_PROBE = "from examtrail.core.memory import tune_allocator; print(sorted(tune_allocator().items()))"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_limits_are_applied_on_glibc() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[('arena_max', 2), ('mmap_threshold', 1048576)]"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_the_operators_glibc_variables_win() -> None:
    env = {"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert tune_allocator() == {}
