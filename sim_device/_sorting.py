"""An in-place sort for int64 keys that arrive almost in order (spikes as a level emits them, jittered input
events), used by :mod:`firstspike.sim_device.engine`. Compiled with numba when it is there (cached like the
engine's kernels); the same code runs as Python without it."""

from __future__ import annotations

try:
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        if args and callable(args[0]):
            return args[0]
        return lambda f: f


@njit(cache=True)
def sort_nearly(a):  # pragma: no cover - compiled
    """Sort the int64 array ``a`` in place. An insertion sort finishes almost sorted input in about one pass; it
    hands over to ``a.sort()`` once it has moved more than four elements per element, so the worst case stays
    O(n log n)."""
    n = a.shape[0]
    budget = 4 * n
    for x in range(1, n):
        v = a[x]
        y = x - 1
        while y >= 0 and a[y] > v:
            a[y + 1] = a[y]
            y -= 1
            budget -= 1
        a[y + 1] = v
        if budget < 0:
            a.sort()
            return
