"""Process-level performance settings for CPU training (threads, glibc malloc)."""

from __future__ import annotations

import ctypes
import os
import sys

import torch

__all__ = ["configure_threads", "tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned = False


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed tensor memory in the glibc heap instead of returning it to the OS.

    By default glibc serves allocations above ~128 KiB with fresh ``mmap`` pages and unmaps them on
    free, so every medium-sized temporary tensor page-faults anew; for the TTFS kernels (many 0.1-30 MB
    temporaries per step) that costs up to half the run time. Raising the mmap and trim thresholds makes
    the allocator reuse warm memory. Process-wide and idempotent; returns False where not applicable
    (non-glibc platforms) and leaves everything unchanged there.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
    )
    _tuned = ok
    return ok


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count (default: all available cores, at most 2); returns it."""
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = min(2, cores)
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    return threads
