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
    O(n log n). Input with a descent at more than one position in eight (spikes in neuron order, not time order)
    goes to ``a.sort()`` at once: the insertion sort would spend its budget first."""
    n = a.shape[0]
    descents = 0
    for x in range(1, n):
        if a[x] < a[x - 1]:
            descents += 1
    if descents == 0:
        return
    if 8 * descents > n:
        a.sort()
        return
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


@njit(cache=True)
def sort_runs(a, starts, tmp):  # pragma: no cover - compiled
    """Sort the int64 array ``a`` in place, given as consecutive runs ``a[starts[k]:starts[k+1]]`` (``starts[0]``
    = 0, the last = ``len(a)``) that are each almost in order: each run by :func:`sort_nearly`, then merged into the
    sorted prefix one after the other through ``tmp`` (at least ``len(a)`` long). (Two almost sorted runs one after
    the other are not almost sorted as one: the insertion sort would move each element of the second past all
    later ones of the first, and fall back to a full sort.)"""
    for k in range(starts.shape[0] - 1):
        sort_nearly(a[starts[k] : starts[k + 1]])
    for k in range(1, starts.shape[0] - 1):
        mid, end = starts[k], starts[k + 1]
        if mid == 0 or mid == end or a[mid - 1] <= a[mid]:
            continue  # nothing to merge, or already in order
        x, y, z = 0, mid, 0
        while x < mid and y < end:
            if a[y] < a[x]:  # ties: the earlier run first
                tmp[z] = a[y]
                y += 1
            else:
                tmp[z] = a[x]
                x += 1
            z += 1
        while x < mid:
            tmp[z] = a[x]
            x += 1
            z += 1
        while y < end:
            tmp[z] = a[y]
            y += 1
            z += 1
        for w in range(end):
            a[w] = tmp[w]
