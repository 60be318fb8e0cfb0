"""Process-level performance settings for CPU training (threads, glibc malloc)."""

from __future__ import annotations

import os

import torch

from firstspike.runtime.allocator import tune_malloc

__all__ = ["configure_threads", "tune_malloc"]

def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count (default: all available cores, at most 2); returns it."""
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = min(2, cores)
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    return threads
