"""Process-level performance settings for CPU training (threads, glibc malloc)."""

from __future__ import annotations

import os

import torch

from firstspike.runtime.allocator import tune_malloc
from firstspike.runtime.ttfs.row_split import set_threads

__all__ = ["configure_threads", "start_numba_threads", "tune_malloc"]

def configure_threads(threads: int | None = None, torch_threads: int = 1) -> int:
    """Use ``threads`` cores (default: all available, at most 2) for the TTFS CPU kernels; returns it.

    The kernels (:mod:`firstspike.runtime.ttfs.row_split`) split a batch over that many threads. Torch's own
    intra-op threads (``torch_threads``, default 1) stay apart: at these tensor sizes they gain nothing, and their
    spinning OpenMP workers would compete with the kernels' threads for the same cores. Give ``torch_threads`` for
    the batched torch formulation (``set_kernels("torch")``) on CPU. Starts numba's threading layer first
    (:func:`start_numba_threads`), so that torch's count holds.
    """
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = min(2, cores)
    threads = max(1, int(threads))
    set_threads(threads)
    start_numba_threads()
    torch.set_num_threads(max(1, int(torch_threads)))
    return threads


def start_numba_threads() -> None:
    """Start numba's threading layer now rather than on its first use.

    numba starts it lazily, e.g. when the embedded simulator asks for its thread count on its first run. With the
    OpenMP layer that start sets the process's OpenMP thread count to numba's (all cores), and torch's intra-op
    pool follows the same setting: torch's count set before is silently replaced. In-the-loop training on
    ``sim://`` with one torch thread then ran its backward pass on two (measured: 8-14 ms instead of 1.4-2.5 ms
    per yin-yang step with another job on the second core)."""
    try:
        import numba
    except ImportError:  # no numba, no threading layer to start
        return
    numba.get_num_threads()
