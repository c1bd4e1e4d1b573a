"""Allocator settings for the long-running processes (worker, server).

glibc gives every thread that contends for malloc an arena of its own (up to 8 per core),
and after a large buffer is freed it raises its mmap threshold to that size, so the next
multi-MiB buffers (S3 parts) come from the heap and stay resident. Both inflate the peak
RSS of an export for no speed gain here; the process caps the arenas and pins the
threshold at start, unless the operator set them through glibc's own variables.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

# glibc's <malloc.h> parameter numbers.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

DEFAULT_ARENAS = 2
DEFAULT_MMAP_THRESHOLD = 1024 * 1024


def tune_allocator(
    arenas: int = DEFAULT_ARENAS, mmap_threshold: int = DEFAULT_MMAP_THRESHOLD
) -> dict[str, int]:
    """Apply the limits through ``mallopt``; what was set (empty off glibc, e.g. musl or macOS)."""
    if not sys.platform.startswith("linux"):
        return {}
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    # glibc reads MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_ itself at start: theirs wins.
    if "MALLOC_ARENA_MAX" not in os.environ and mallopt(_M_ARENA_MAX, arenas) == 1:
        applied["arena_max"] = arenas
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1:
        applied["mmap_threshold"] = mmap_threshold
    return applied


def release_free_memory(*, collect: bool = True) -> bool:
    """Collect garbage and hand the heap's free pages back to the OS (start-up leaves
    many: parsed service models, import-time temporaries). False off glibc.

    ``collect=False``: only the trim, which runs without the GIL (ctypes releases it); a
    full collection holds every thread of the process for its duration."""
    if collect:
        gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))
