"""Run a nogil kernel on disjoint row blocks from a few threads (the TTFS CPU kernels' batch parallelism).

Each block is computed by the same compiled kernel on a contiguous slice of the rows, so a split changes no result
bit: rows are independent, and a reduction across rows is left to a kernel that walks the rows in order.
The thread count is :func:`set_threads`'s (what :func:`firstspike.runtime.training.perf.configure_threads` sets),
else torch's intra-op thread count.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from firstspike.hal.threads import run_items

__all__ = ["blocks", "get_threads", "run_blocks", "set_threads"]

#: below this many inner-loop steps per block, handing a block to another thread costs more than it saves
MIN_WORK_PER_BLOCK = 200_000

_THREADS: int | None = None


def set_threads(threads: int | None) -> int | None:
    """Use ``threads`` (>= 1; None = follow ``torch.get_num_threads()``) for the kernels; returns the previous."""
    global _THREADS
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    previous, _THREADS = _THREADS, None if threads is None else int(threads)
    return previous


def get_threads() -> int:
    """The number of threads the kernels split their work over."""
    return torch.get_num_threads() if _THREADS is None else _THREADS


def blocks(n_rows: int, work_per_row: float, threads: int | None = None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: ``n_rows`` cut into at most ``threads`` (default: :func:`get_threads`) contiguous
    blocks of about equal size, fewer when a block would hold less than :data:`MIN_WORK_PER_BLOCK` inner steps."""
    threads = get_threads() if threads is None else threads
    n = max(1, min(threads, n_rows, int(n_rows * work_per_row // MIN_WORK_PER_BLOCK)))
    edges = [n_rows * k // n for k in range(n + 1)]
    return [(edges[k], edges[k + 1]) for k in range(n)]


def run_blocks(call: Callable[[int, int], object], spans: list[tuple[int, int]]) -> None:
    """``call(start, stop)`` for every span, on this thread and the process's worker pool, one thread per span
    (:func:`firstspike.hal.threads.run_items`); an exception in any is raised here after every block has ended."""
    run_items(lambda k: call(*spans[k]), len(spans), len(spans))
