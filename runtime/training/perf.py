"""Process-level performance settings for CPU training (threads, glibc malloc)."""

from __future__ import annotations

import os

import torch

from firstspike.runtime.allocator import tune_malloc
from firstspike.runtime.ttfs.row_split import set_threads

__all__ = ["configure_threads", "tune_malloc"]

def configure_threads(threads: int | None = None, torch_threads: int = 1) -> int:
    """Use ``threads`` cores (default: all available, at most 2) for the TTFS CPU kernels; returns it.

    The kernels (:mod:`firstspike.runtime.ttfs.row_split`) split a batch over that many threads. Torch's own
    intra-op threads (``torch_threads``, default 1) stay apart: at these tensor sizes they gain nothing, and their
    spinning OpenMP workers would compete with the kernels' threads for the same cores. Give ``torch_threads`` for
    the batched torch formulation (``set_kernels("torch")``) on CPU.
    """
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = min(2, cores)
    threads = max(1, int(threads))
    set_threads(threads)
    torch.set_num_threads(max(1, int(torch_threads)))
    return threads
