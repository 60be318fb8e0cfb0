"""One process-wide pool of worker threads for compiled kernels that release the GIL (numba ``nogil``).

The simulator's engine and the TTFS CPU kernels hand blocks of a batch to it; the calling thread works on a block
too. The pool grows to the largest number of workers asked for and is made anew in a forked child (threads do not
survive a fork).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["worker_pool"]

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
