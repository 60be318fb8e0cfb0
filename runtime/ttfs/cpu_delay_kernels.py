"""Fused CPU kernels (numba) for first-spike times and exact gradients when every connection has its own arrival
shift (a transmission delay): input ``i`` reaches neuron ``j`` at ``a_ij = t_i + d_ij``.

They mirror :mod:`firstspike.runtime.ttfs.cpu_kernels` (the kernels without delays) with one difference: the
causal set is ordered per (sample, neuron), because each neuron sees its own arrival times. A neuron's arrivals are
produced in time order lazily, by a small heap over a window of the sample's time-sorted inputs (an input cannot
arrive before its time plus the column's smallest delay), so the walk stops at the causal set without sorting all
arrivals; ties keep the inputs' sorted order. The exponentials of the arrivals are factorised into a per-sample
factor ``exp(t_i)`` and a per-connection factor ``exp(d_ij)`` computed once per call. With all ``d_ij = 0`` every
operation reduces to the one of the kernels without delays (the factors are exactly 1, the order is the same), so
the results are bit for bit the same.

Times are in units of tau_s, weights in threshold units (theta = ``threshold``), ``+inf`` = no spike.
"""

from __future__ import annotations

import math

import numpy as np

from firstspike.runtime.ttfs.cpu_kernels import _FACTOR_SPAN, _REANCHOR, _coefficients, _kernel_pair, njit

__all__ = ["FACTOR_MAX_DELAY", "arrival_grads", "arrival_prefix_sums"]

#: largest |delay| (tau_s) for which the exponentials of the arrivals are factorised into ``exp(t_i) exp(d_ij)``;
#: beyond it every exponential is computed directly (slower, same result up to rounding)
FACTOR_MAX_DELAY = 50.0

# Up to this many spiking inputs per sample, a neuron's arrivals are sorted outright; above, a heap yields them.
_SORT_MAX = 128


@njit(cache=True, nogil=True, inline="always")
def _before(hk, hp, a, b):  # pragma: no cover - compiled
    """Heap order: earlier arrival first, ties by position in the sample's sorted inputs (a stable order)."""
    return hk[a] < hk[b] or (hk[a] == hk[b] and hp[a] < hp[b])


@njit(cache=True, nogil=True, inline="always")
def _heap_push(hk, hp, size, key, pos):  # pragma: no cover - compiled
    i = size
    hk[i] = key
    hp[i] = pos
    while i > 0:
        parent = (i - 1) >> 1
        if _before(hk, hp, parent, i):
            break
        hk[i], hk[parent] = hk[parent], hk[i]
        hp[i], hp[parent] = hp[parent], hp[i]
        i = parent
    return size + 1


@njit(cache=True, nogil=True, inline="always")
def _heap_pop(hk, hp, size):  # pragma: no cover - compiled
    size -= 1
    hk[0] = hk[size]
    hp[0] = hp[size]
    i = 0
    while True:
        left = 2 * i + 1
        first = i
        if left < size and _before(hk, hp, left, first):
            first = left
        if left + 1 < size and _before(hk, hp, left + 1, first):
            first = left + 1
        if first == i:
            return size
        hk[i], hk[first] = hk[first], hk[i]
        hp[i], hp[first] = hp[first], hp[i]
        i = first


@njit(cache=True, nogil=True, inline="always")
def _fill(ts, idx, d, b, j, dmin, m, nxt, hk, hp, size):  # pragma: no cover - compiled
    """Push the sample's next inputs (in input-time order) until none of the rest can arrive before the heap's
    earliest: their arrival is at least ``t + dmin``. Returns ``(nxt, size)``."""
    while nxt < m and (size == 0 or ts[b, nxt] + dmin < hk[0]):
        size = _heap_push(hk, hp, size, ts[b, nxt] + d[idx[b, nxt], j], nxt)
        nxt += 1
    return nxt, size


@njit(cache=True, nogil=True, inline="always")
def _walk_step(p, q, anchor, a, a_next, c_fac, wij, factor, tau_ratio, threshold):  # pragma: no cover - compiled
    """Add the arrival at ``a`` (weight ``wij``; ``c_fac`` its factorised exponential ``exp(a)`` or ``exp(a/2)``,
    valid while the anchor is 0) to the prefix sums and test for a crossing before the next arrival ``a_next``.
    Returns ``(p, q, anchor, crossed)``; the arithmetic is that of the kernel without delays."""
    if a - anchor > _REANCHOR:
        # earlier contributions shrink by exp(-dt) (and exp(-dt/2)): rescale, no overflow
        dt = a - anchor
        if tau_ratio == 1:
            f = math.exp(-dt)
            q = (q + dt * p) * f
            p *= f
        else:
            f2 = math.exp(-0.5 * dt)
            p *= f2 * f2
            q *= f2
        anchor = a
    lo = a - anchor
    hi = a_next - anchor
    direct = not (factor and anchor == 0.0)
    if tau_ratio == 1:
        # u(t) = exp(-t) (P t + Q), P = sum w e^a, Q = -sum w a e^a; peak at t = 1 - Q/P (P > 0)
        c0 = math.exp(lo) if direct else c_fac
        c1 = -lo * c0
    else:
        # u(y) = (Q - P y) y, y = exp(-t/2), P = sum w e^a, Q = sum w e^(a/2); peak at y = Q / 2P
        c1 = math.exp(0.5 * lo) if direct else c_fac
        c0 = c1 * c1
    p += wij * c0
    q += wij * c1
    if not hi > lo:
        return p, q, anchor, False  # tied arrivals: empty interval, no crossing is attributed to this prefix
    if not p > 0.0:
        return p, q, anchor, False  # P <= 0: the membrane cannot rise to theta inside the interval
    if tau_ratio == 1:
        tp = 1.0 - q / p
        if tp <= lo:
            u = (q + p * lo) * (1.0 / c0)
        elif tp >= hi:
            u = (q + p * hi) * math.exp(-hi)
        else:
            u = (q + p * tp) * math.exp(-tp)
    else:
        y = 0.5 * q / p
        y_lo = 1.0 / c1
        if y >= y_lo:
            y = y_lo
        else:
            y_hi = math.exp(-0.5 * hi)
            if y <= y_hi:
                y = y_hi
        u = (q - p * y) * y
    return p, q, anchor, u >= threshold


@njit(cache=True, nogil=True)
def _arrival_prefix_kernel(
    idx, ts, counts, d, dmin, ed, factor, w, tau_ratio, threshold, spikes, p_out, q_out, anchor_out
):  # pragma: no cover - compiled
    n_batch, kmax = ts.shape
    n_out = w.shape[1]
    hk = np.empty(kmax)
    hp = np.empty(kmax, dtype=np.int64)
    arr = np.empty(kmax)
    order = np.empty(kmax, dtype=np.int64)
    et = np.empty(kmax)
    for b in range(n_batch):
        m = counts[b]
        if m == 0:
            continue
        if factor:
            # exp(t) (ratio 1) or exp(t/2) (ratio 2) of the sample's inputs, shared by all neurons
            for k in range(m):
                x = ts[b, k]
                if x > _REANCHOR + FACTOR_MAX_DELAY:
                    et[k] = 0.0  # never used: such an arrival is re-anchored and computed directly
                else:
                    et[k] = math.exp(x) if tau_ratio == 1 else math.exp(0.5 * x)
        if m <= _SORT_MAX:
            # few inputs: each neuron's arrivals sorted outright (stable insertion sort from the input order:
            # delays move few of them), then walked until the causal set is found
            for j in range(n_out):
                for r in range(m):
                    key = ts[b, r] + d[idx[b, r], j]
                    s = r - 1
                    while s >= 0 and arr[s] > key:
                        arr[s + 1] = arr[s]
                        order[s + 1] = order[s]
                        s -= 1
                    arr[s + 1] = key
                    order[s + 1] = r
                p = q = 0.0
                anchor = min(0.0, arr[0])  # arrivals before 0 (negative delays): anchor at the first one
                for r in range(m):
                    k = order[r]
                    i = idx[b, k]
                    a_next = arr[r + 1] if r + 1 < m else np.inf
                    p, q, anchor, crossed = _walk_step(p, q, anchor, arr[r], a_next, et[k] * ed[i, j], w[i, j],
                                                       factor, tau_ratio, threshold)
                    if crossed:
                        spikes[b, j] = True
                        p_out[b, j] = p
                        q_out[b, j] = q
                        anchor_out[b, j] = anchor
                        break
        else:
            # many inputs: arrivals produced lazily by a heap over a window of the time-sorted inputs (an input
            # cannot arrive before its time plus the column's smallest delay), so the walk stops at the causal set
            # without sorting the rest
            for j in range(n_out):
                nxt, size = _fill(ts, idx, d, b, j, dmin[j], m, 0, hk, hp, 0)
                p = q = 0.0
                anchor = min(0.0, hk[0])
                while size > 0:
                    a = hk[0]
                    k = hp[0]
                    size = _heap_pop(hk, hp, size)
                    nxt, size = _fill(ts, idx, d, b, j, dmin[j], m, nxt, hk, hp, size)
                    a_next = hk[0] if size > 0 else np.inf
                    i = idx[b, k]
                    p, q, anchor, crossed = _walk_step(p, q, anchor, a, a_next, et[k] * ed[i, j], w[i, j], factor,
                                                       tau_ratio, threshold)
                    if crossed:
                        spikes[b, j] = True
                        p_out[b, j] = p
                        q_out[b, j] = q
                        anchor_out[b, j] = anchor
                        break


def arrival_prefix_sums(
    idx: np.ndarray, ts: np.ndarray, d: np.ndarray, w: np.ndarray, tau_ratio: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Causal sets with per-connection arrival shifts: ``(spikes, P, Q, anchor)``, each (B, n_out).

    ``idx`` (B, k): input indices sorted by time per sample; ``ts`` (B, k): the sorted times shifted so that each
    sample's earliest input is at 0, ``+inf`` for silent inputs (sorted last); ``d`` (n_in, n_out): the delays in
    tau_s; ``w`` (n_in, n_out). ``P``, ``Q`` are the sums of
    :func:`firstspike.runtime.ttfs.cpu_kernels.causal_prefix_sums` over the neuron's causal set of arrivals,
    relative to ``anchor``.
    """
    n_batch, n_out = ts.shape[0], w.shape[1]
    ts = np.ascontiguousarray(ts, dtype=np.float64)
    d = np.ascontiguousarray(d, dtype=np.float64)
    counts = (ts < np.inf).sum(axis=1).astype(np.int64)
    factor = bool(d.size == 0 or float(np.abs(d).max()) <= FACTOR_MAX_DELAY)
    ed = np.exp(d if tau_ratio == 1 else 0.5 * d) if factor else d
    dmin = d.min(axis=0) if d.shape[0] else np.zeros(n_out)
    spikes = np.zeros((n_batch, n_out), dtype=np.bool_)
    p_out = np.zeros((n_batch, n_out))
    q_out = np.zeros((n_batch, n_out))
    anchor = np.zeros((n_batch, n_out))
    _arrival_prefix_kernel(
        np.ascontiguousarray(idx, dtype=np.int64), ts, counts, d, np.ascontiguousarray(dmin), np.ascontiguousarray(ed),
        factor,
        np.ascontiguousarray(w, dtype=np.float64), int(tau_ratio), float(threshold), spikes, p_out, q_out, anchor,
    )
    return spikes, p_out, q_out, anchor


@njit(cache=True, nogil=True)
def _arrival_grads_kernel(
    t_in, w, d, dmin, dmax, ed, factor, t_out, g, tau_ratio, max_dw_norm, slope_eps, need_t, need_d,
    grad_t, grad_w, grad_d,
):  # pragma: no cover - compiled
    n_batch, n_in = t_in.shape
    n_out = w.shape[1]
    half = 0.5 if tau_ratio == 2 else 1.0
    slope = np.empty(n_out)
    kmax = np.empty(n_out)
    coef_t = np.empty(n_out)
    coef_w = np.empty(n_out)
    fo = np.empty(n_out)
    to_safe = np.empty(n_out)
    kk = np.empty((n_in, n_out))  # K and w K' of every pair of the sample, kept for the second pass
    kpw = np.empty((n_in, n_out))
    for b in range(n_batch):
        base = np.inf
        top = -np.inf
        for i in range(n_in):
            ti = t_in[b, i]
            if ti < np.inf:
                base = min(base, ti + dmin[i])
                top = max(top, ti + dmax[i])
        if not base < np.inf:
            continue  # no input spike: no causal pair, zero gradient
        any_out = False
        for j in range(n_out):
            to = t_out[b, j]
            if to < np.inf:
                any_out = True
                top = max(top, to)
        if not any_out:
            continue
        # exp(-(t_out - t_i - d_ij)) = exp(t_i - base) exp(base - t_out) exp(d_ij) unless that could over/underflow
        direct = (not factor) or top - base > _FACTOR_SPAN
        for j in range(n_out):
            to = t_out[b, j]
            silent = not to < np.inf
            # silent outputs: a stand-in time no arrival precedes (base is the earliest arrival), so every pair is 0
            to_safe[j] = base if silent else to
            fo[j] = 0.0 if (silent or direct) else math.exp(half * (base - to))
            slope[j] = 0.0
            kmax[j] = 0.0
        for i in range(n_in):
            ti = t_in[b, i]
            if not ti < np.inf:
                continue
            ei = 0.0 if direct else math.exp(half * (ti - base))
            for j in range(n_out):
                s = to_safe[j] - (ti + d[i, j])
                e = 0.0
                if s > 0.0:
                    e = math.exp(-half * s) if direct else ei * fo[j] * ed[i, j]
                k, kp = _kernel_pair(s, e, tau_ratio)
                kk[i, j] = k
                kpw[i, j] = w[i, j] * kp
                slope[j] += kpw[i, j]
                kmax[j] = max(kmax[j], k)
        # the arrival-time (and so the delay) gradient keeps the columns the weight-gradient guard drops
        if not _coefficients(g[b], t_out[b], slope, kmax, slope_eps, max_dw_norm, coef_t, coef_w):
            continue
        for i in range(n_in):
            if not t_in[b, i] < np.inf:
                continue
            acc = 0.0
            for j in range(n_out):
                ga = kpw[i, j] * coef_t[j]  # dL/d(arrival of input i at neuron j)
                acc += ga
                grad_w[i, j] -= kk[i, j] * coef_w[j]
                if need_d:
                    grad_d[i, j] += ga
            if need_t:
                grad_t[b, i] = acc


def arrival_grads(
    t_in: np.ndarray,
    w: np.ndarray,
    d: np.ndarray,
    t_out: np.ndarray,
    g: np.ndarray,
    tau_ratio: int,
    max_dw_norm: float | None,
    slope_eps: float,
    need_t: bool,
    need_w: bool,
    need_d: bool,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Vector-Jacobian products with per-connection arrival shifts ``d`` (n_in, n_out):
    ``(dL/dt_in (B, n_in), dL/dw (n_in, n_out), dL/dd (n_in, n_out))`` for ``g = dL/dt_out`` (B, n_out).

    ``dL/dd[i, j]`` is the gradient with respect to the arrival of input ``i`` at neuron ``j`` summed over the
    batch; ``dL/dt_in[b, i]`` is the same summed over neurons. Evaluated at the given (computed or measured)
    output times; zero where the slope is not in ``(slope_eps, inf)``, for silent outputs and non-causal pairs.
    ``max_dw_norm`` (None = off) drops large weight-gradient columns as the kernels without delays do.
    """
    n_batch, n_in = t_in.shape
    d = np.ascontiguousarray(d, dtype=np.float64)
    factor = bool(d.size == 0 or float(np.abs(d).max()) <= FACTOR_MAX_DELAY)
    half = 1.0 if tau_ratio == 1 else 0.5
    ed = np.exp(half * d) if factor else d
    if n_in and d.shape[1]:
        dmin, dmax = d.min(axis=1), d.max(axis=1)
    else:
        dmin = dmax = np.zeros(n_in)
    grad_t = np.zeros((n_batch, n_in)) if need_t else np.zeros((0, 0))
    grad_w = np.zeros(w.shape)
    grad_d = np.zeros(d.shape) if need_d else np.zeros((0, 0))
    _arrival_grads_kernel(
        np.ascontiguousarray(t_in, dtype=np.float64), np.ascontiguousarray(w, dtype=np.float64), d,
        np.ascontiguousarray(dmin), np.ascontiguousarray(dmax), np.ascontiguousarray(ed), factor,
        np.ascontiguousarray(t_out, dtype=np.float64), np.ascontiguousarray(g, dtype=np.float64), int(tau_ratio),
        math.inf if max_dw_norm is None else float(max_dw_norm), float(slope_eps), bool(need_t), bool(need_d),
        grad_t, grad_w, grad_d,
    )
    return (grad_t if need_t else None), (grad_w if need_w else None), (grad_d if need_d else None)
