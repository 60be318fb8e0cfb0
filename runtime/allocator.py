"""glibc malloc tuning shared by the trainers and the device server (torch-free, so the server stays light)."""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1  # glibc mallopt() parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Keep freed memory in the glibc heaps for reuse instead of returning it to the OS (process-wide).

    By default glibc serves allocations above ~128 KiB with fresh ``mmap`` pages and unmaps them on free, and
    the per-thread arenas of worker threads hand freed memory straight back, so every medium-sized temporary
    page-faults anew: for the TTFS training kernels (0.1-30 MB temporaries per step) that cost up to half the
    run time, and a simulator run on a gRPC worker thread 300-630 page faults per batch-1 call. Allocations
    below ``mmap_threshold`` bytes come from the heap; free heap memory above ``trim_threshold`` bytes goes
    back to the OS. Fixed thresholds apply to every arena, also those created before the call. Idempotent;
    returns False where not applicable (not Linux, not glibc) and changes nothing there.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
    )
