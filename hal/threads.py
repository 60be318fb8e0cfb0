"""One process-wide pool of worker threads for compiled kernels that release the GIL (numba ``nogil``).

The simulator's engine and the TTFS CPU kernels hand blocks of a batch to it through :func:`run_items`; the calling
thread works on blocks too. The pool grows to the largest number of workers asked for and is made anew in a forked
child (threads do not survive a fork).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["run_items", "worker_pool"]

_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
_POOL_LOCK = threading.Lock()


def worker_pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool of at least ``workers`` threads, for this process."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or os.getpid() != _POOL_PID or _POOL._max_workers < workers:
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="firstspike-worker")
            _POOL_PID = os.getpid()
        return _POOL


def run_items(work: Callable[[int], object], n_items: int, threads: int) -> None:
    """``work(k)`` for every ``k < n_items``, on this thread and up to ``threads - 1`` pool threads, each taking the
    next item not yet taken: a thread the OS leaves waiting on a busy machine delays only the item it holds. The
    items must be independent (disjoint outputs), so the order changes no result. All are awaited; the first
    exception is raised here once every thread has stopped (after one, no new item is started)."""
    threads = max(1, min(int(threads), n_items))
    if threads == 1:
        for k in range(n_items):
            work(k)
        return
    taken = itertools.count()  # next() on it is atomic under the GIL
    failed: list[BaseException] = []

    def take() -> None:
        while not failed and (k := next(taken)) < n_items:
            try:
                work(k)
            except BaseException as e:  # re-raised in the caller below
                failed.append(e)

    futures = [worker_pool(threads - 1).submit(take) for _ in range(threads - 1)]
    try:
        take()
    finally:
        for f in futures:
            f.result()
    if failed:
        raise failed[0]
