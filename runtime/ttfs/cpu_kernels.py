"""Fused CPU kernels (numba) for the exact TTFS forward pass and its implicit-function backward.

They compute exactly what the torch formulation in :mod:`firstspike.runtime.ttfs.spiketime` computes, but without the
(batch, n_in, n_out) intermediate tensors: per sample the sorted inputs are walked once, the prefix sums of
every output neuron are kept in a small vector, and a neuron stops being tested once its causal set is found.
The membrane of a prefix is evaluated at its interval ends with per-input exponentials computed once, so an
exponential per (sample, prefix, neuron) is needed only when the prefix's peak lies strictly inside its interval.
On CPU this is what makes MNIST16 training fast (see ``benchmarks/train_throughput.py``); the torch path stays
the reference (and the GPU path) and tests compare both.

Times are in units of tau_s, weights in threshold units (theta = ``threshold``), ``+inf`` = no spike.
"""

from __future__ import annotations

import math

import numpy as np

from firstspike.runtime.ttfs.row_split import blocks, run_blocks

try:  # numba is a declared dependency; the torch path is used where it is missing
    from numba import njit

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    AVAILABLE = False

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        def wrap(f):
            return f

        return wrap


__all__ = ["AVAILABLE", "causal_prefix_sums", "implicit_grads", "sorted_rows"]

# Above this spread of times within one sample (tau_s), exp(t_i - t_out) is not factorised into
# exp(t_i - base) * exp(base - t_out) (each factor alone could overflow or underflow).
_FACTOR_SPAN = 600.0


# Prefix sums are kept relative to an anchor time; once an input arrives this long after the anchor
# (tau_s) the sums are moved to a new anchor, so that exp(t - anchor) never overflows however late inputs come.
_REANCHOR = 300.0

# The cost of one input's per-sample set-up in the backward's sample kernel (an exp, loop entry), in units of one
# (input, neuron) pair: it decides how many row blocks a layer with few neurons is worth (row_split.blocks)
_INPUT_COST = 32

# Relative padding of the screen's membrane bound: the exact test's rounding is a few ulp (~1e-16) of the same terms.
_SCREEN_PAD = 1e-9


@njit(cache=True, nogil=True)
def _prefix_kernel(idx, ts, w, tau_ratio, threshold, screen, spikes, p_out, q_out, anchor_out):  # pragma: no cover
    n_batch, kmax = ts.shape
    n_out = w.shape[1]
    p = np.empty(n_out)
    q = np.empty(n_out)
    # the threshold a neuron is tested against: +inf once its causal set is found (it is never tested again)
    thr = np.empty(n_out)
    cand = np.empty(n_out, dtype=np.bool_)
    for b in range(n_batch):
        p[:] = 0.0
        q[:] = 0.0
        thr[:] = threshold
        remaining = n_out
        anchor = 0.0
        for k in range(kmax):
            if not ts[b, k] < np.inf:
                break  # silent inputs sort last
            if ts[b, k] - anchor > _REANCHOR:
                # the contributions of all earlier inputs shrink by exp(-d) (and exp(-d/2)): rescale, no overflow
                d = ts[b, k] - anchor
                if tau_ratio == 1:
                    f = math.exp(-d)
                    for j in range(n_out):
                        q[j] = (q[j] + d * p[j]) * f
                        p[j] *= f
                else:
                    f2 = math.exp(-0.5 * d)
                    f = f2 * f2
                    for j in range(n_out):
                        p[j] *= f
                        q[j] *= f2
                anchor = ts[b, k]
            lo = ts[b, k] - anchor
            hi = (ts[b, k + 1] - anchor) if k + 1 < kmax else np.inf
            i = idx[b, k]
            if tau_ratio == 1:
                # u(t) = exp(-t) (P t + Q), P = sum w e^t_i, Q = -sum w t_i e^t_i; peak at t = 1 - Q/P (P > 0)
                c0 = math.exp(lo)
                c1 = -lo * c0
                e_lo = 1.0 / c0
                e_hi = math.exp(-hi)
            else:
                # u(y) = (Q - P y) y, y = exp(-t/2), P = sum w e^t_i, Q = sum w e^(t_i/2); peak at y = Q / 2P
                c1 = math.exp(0.5 * lo)
                c0 = c1 * c1
                y_lo = 1.0 / c1
                y_hi = math.exp(-0.5 * hi)
            # One pass per input adds its weights to the sums and screens every neuron (branch-free, vectorised):
            # an upper bound of the membrane on [lo, hi], padded by far more than the rounding of the exact test
            # below, rules out most neurons without a division or an exp. A neuron it passes gets the exact test,
            # so the result is the same with or without the screen.
            n_cand = 0
            for j in range(n_out):
                wij = w[i, j]
                pj = p[j] + wij * c0
                qj = q[j] + wij * c1
                p[j] = pj
                q[j] = qj
                if tau_ratio == 1:
                    bound = (pj * hi + qj + _SCREEN_PAD * (pj * hi + abs(qj))) * e_lo
                else:
                    bound = max(qj * y_lo, qj * y_hi) - pj * y_hi * y_hi + _SCREEN_PAD * (abs(qj) + pj * y_lo) * y_lo
                c = (pj > 0.0) & (thr[j] < np.inf) & ((bound >= thr[j]) | (not screen))
                cand[j] = c
                n_cand += c
            if n_cand == 0 or not hi > lo:
                continue  # tied inputs: empty interval, no crossing is attributed to this prefix
            for j in range(n_out):
                if not cand[j]:
                    continue  # P <= 0 (no maximum inside the interval: cannot rise to theta), done or screened out
                pj = p[j]
                qj = q[j]
                if tau_ratio == 1:
                    tp = 1.0 - qj / pj
                    if tp <= lo:
                        u = (qj + pj * lo) * e_lo
                    elif tp >= hi:
                        u = (qj + pj * hi) * e_hi
                    else:
                        u = (qj + pj * tp) * math.exp(-tp)
                else:
                    y = 0.5 * qj / pj
                    if y >= y_lo:
                        y = y_lo
                    elif y <= y_hi:
                        y = y_hi
                    u = (qj - pj * y) * y
                if u >= threshold:
                    thr[j] = np.inf
                    spikes[b, j] = True
                    p_out[b, j] = pj
                    q_out[b, j] = qj
                    anchor_out[b, j] = anchor
                    remaining -= 1
            if remaining == 0:
                break


def causal_prefix_sums(
    idx: np.ndarray,
    ts: np.ndarray,
    w: np.ndarray,
    tau_ratio: int,
    threshold: float,
    *,
    threads: int | None = None,
    screen: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Find every (sample, neuron)'s causal set; return its prefix sums ``(spikes, P, Q, anchor)``, each (B, n_out).

    ``idx`` (B, k) int64: input indices sorted by time per sample; ``ts`` (B, k) float64: the sorted times,
    shifted so that each sample's earliest input is at 0, ``+inf`` for silent inputs (sorted last);
    ``w`` (n_in, n_out) float64. For ``tau_ratio`` 1, ``P = sum w e^t_i`` and ``Q = -sum w t_i e^t_i`` over
    the causal set (the spike time is then a Lambert W of them); for ``tau_ratio`` 2, ``P = sum w e^t_i``,
    ``Q = sum w e^(t_i/2)`` (a quadratic in ``exp(-t/2)``). Times inside the sums are relative to ``anchor``
    (0 unless the sample's inputs spread over more than a few hundred tau_s). All are 0 where ``spikes`` is False.

    ``threads`` (default: torch's thread count) splits the batch into row blocks (:mod:`.row_split`); ``screen``
    False turns off the cheap bound that spares most neurons the exact threshold test (for tests: the results are
    the same bit for bit either way).
    """
    n_batch, n_out = ts.shape[0], w.shape[1]
    spikes = np.zeros((n_batch, n_out), dtype=np.bool_)
    p_out = np.zeros((n_batch, n_out))
    q_out = np.zeros((n_batch, n_out))
    anchor = np.zeros((n_batch, n_out))
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    ts = np.ascontiguousarray(ts, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    tau_ratio, threshold = int(tau_ratio), float(threshold)

    def rows(a: int, b: int) -> None:
        _prefix_kernel(
            idx[a:b], ts[a:b], w, tau_ratio, threshold, screen, spikes[a:b], p_out[a:b], q_out[a:b], anchor[a:b]
        )

    run_blocks(rows, blocks(n_batch, ts.shape[1] * n_out, threads))
    return spikes, p_out, q_out, anchor


@njit(cache=True, nogil=True)
def _count_spiking(t):  # pragma: no cover - compiled
    """The largest number of finite entries in any row of ``t`` (B, n)."""
    most = 0
    for b in range(t.shape[0]):
        n = 0
        for i in range(t.shape[1]):
            if t[b, i] < np.inf:
                n += 1
        most = max(most, n)
    return most


@njit(cache=True, nogil=True)
def _gather_shifted(t, order, idx_out, ts_out, shift_out):  # pragma: no cover - compiled
    """The first ``k`` columns of ``t`` in the per-row ``order``, minus the row's first (earliest) time if it is
    finite, else minus 0: ``ts_out`` (B, k), the indices ``idx_out`` (B, k) and the shift (B, 1)."""
    for b in range(t.shape[0]):
        first = t[b, order[b, 0]]
        sh = first if first < np.inf else 0.0
        shift_out[b, 0] = sh
        for c in range(idx_out.shape[1]):
            i = order[b, c]
            idx_out[b, c] = i
            ts_out[b, c] = t[b, i] - sh


def sorted_rows(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per row of ``t`` (B, n) float64 (``+inf`` = silent, no NaN): the indices in the order of ``np.argsort``, the
    sorted times minus the row's earliest one, and that shift (B, 1), cut to the most spiking inputs of any row;
    None when no row has a finite entry. The same arrays as sorting and ``np.take_along_axis`` give, C-contiguous."""
    t = np.ascontiguousarray(t, dtype=np.float64)
    if t.shape[0] == 0 or t.shape[1] == 0:
        return None
    k = _count_spiking(t)
    if k == 0:
        return None
    order = np.argsort(t, axis=1)
    idx, ts, shift = np.empty((t.shape[0], k), dtype=order.dtype), np.empty((t.shape[0], k)), np.empty((t.shape[0], 1))
    _gather_shifted(t, order, idx, ts, shift)
    return idx, ts, shift


@njit(cache=True, nogil=True)
def _kernel_pair(s, e, tau_ratio):  # pragma: no cover - compiled
    """``(K, K')`` at ``s = t_out - t_i`` given ``e = exp(-s)`` (ratio 1) or ``exp(-s/2)`` (ratio 2); 0 if e = 0."""
    if tau_ratio == 1:
        return s * e, (1.0 - s) * e
    e2 = e * e
    return e - e2, e2 - 0.5 * e


@njit(cache=True, nogil=True)
def _decay(s, ei, fo, half, direct):  # pragma: no cover - compiled
    """``exp(-half * s)`` for a causal pair (``s > 0``), else 0; ``ei * fo`` is that product unless ``direct``."""
    if not s > 0.0:
        return 0.0
    return math.exp(-half * s) if direct else ei * fo


@njit(cache=True, nogil=True)
def _coefficients(g_b, t_out_b, slope, kmax, slope_eps, max_dw_norm, coef_t, coef_w):  # pragma: no cover
    """Per output neuron of one sample: ``coef_t = (dL/dt_out) / slope`` where the threshold crossing is valid
    (finite time, slope in ``(slope_eps, inf)``, finite gradient), else 0, and ``coef_w`` the same with the
    columns the weight-gradient guard drops (as the reference: largest entry ``kmax * |c| > max_dw_norm``) set to 0;
    the input-time gradient keeps them. Returns whether any ``coef_t`` is non-zero."""
    any_coef = False
    for j in range(slope.shape[0]):
        sl = slope[j]
        gj = g_b[j]
        ok = t_out_b[j] < np.inf and sl > slope_eps and sl < np.inf and abs(gj) < np.inf
        c = gj / sl if ok else 0.0
        coef_t[j] = c
        coef_w[j] = 0.0 if kmax[j] * abs(c) > max_dw_norm else c
        if c != 0.0:
            any_coef = True
    return any_coef


@njit(cache=True, nogil=True)
def _sample_grads_kernel(
    t_in, w, t_out, g, tau_ratio, max_dw_norm, slope_eps, need_t, grad_t, used, direct, ei, fo, to_safe, coef_w
):  # pragma: no cover - compiled
    """Per sample (row): the coefficients of the weight gradient and the input-time gradient ``grad_t``.

    Writes for each sample ``used`` (it contributes to the weight gradient), ``direct`` (exp(-s) computed
    directly: the times spread too far to factorise), ``ei`` (B, n_in) = exp(half (t_i - base)), ``fo`` (B, n_out)
    = exp(half (base - t_out)), ``to_safe`` (output times, silent ones replaced by a time no input precedes) and
    ``coef_w`` (B, n_out), which :func:`_weight_grads_kernel` combines into the weight gradient."""
    n_batch, n_in = t_in.shape
    n_out = w.shape[1]
    half = 0.5 if tau_ratio == 2 else 1.0
    slope = np.empty(n_out)
    kmax = np.empty(n_out)
    coef_t = np.empty(n_out)
    for b in range(n_batch):
        used[b] = False
        base = np.inf
        top = -np.inf
        for i in range(n_in):
            ti = t_in[b, i]
            if ti < np.inf:
                base = min(base, ti)
                top = max(top, ti)
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
        # exp(-(t_out - t_i)) = exp(t_i - base) * exp(base - t_out) unless the spread could over/underflow
        dr = top - base > _FACTOR_SPAN
        direct[b] = dr
        for j in range(n_out):
            to = t_out[b, j]
            silent = not to < np.inf
            # silent outputs: a finite stand-in time that no input precedes, so every pair with them is 0
            to_safe[b, j] = base if silent else to
            fo[b, j] = 0.0 if (silent or dr) else math.exp(half * (base - to))
            slope[j] = 0.0
            kmax[j] = 0.0
        for i in range(n_in):
            ti = t_in[b, i]
            if not ti < np.inf:
                continue
            e_i = 0.0 if dr else math.exp(half * (ti - base))
            ei[b, i] = e_i
            for j in range(n_out):
                s = to_safe[b, j] - ti
                e = _decay(s, e_i, fo[b, j], half, dr)
                k, kp = _kernel_pair(s, e, tau_ratio)
                slope[j] += w[i, j] * kp
                kmax[j] = max(kmax[j], k)
        if not _coefficients(g[b], t_out[b], slope, kmax, slope_eps, max_dw_norm, coef_t, coef_w[b]):
            continue
        used[b] = True
        if not need_t:
            continue
        for i in range(n_in):
            ti = t_in[b, i]
            if not ti < np.inf:
                continue
            e_i = ei[b, i]
            acc = 0.0
            for j in range(n_out):
                s = to_safe[b, j] - ti
                e = _decay(s, e_i, fo[b, j], half, dr)
                acc += w[i, j] * _kernel_pair(s, e, tau_ratio)[1] * coef_t[j]
            grad_t[b, i] = acc


@njit(cache=True, nogil=True)
def _weight_grads_kernel(
    t_in, tau_ratio, used, direct, ei, fo, to_safe, coef_w, i0, i1, grad_w
):  # pragma: no cover - compiled
    """``grad_w[i] -= sum_b K(t_out - t_i) coef_w`` for the inputs ``i0 <= i < i1``, summed over the samples in
    order (so the result is the same, bit for bit, however the inputs are split)."""
    n_batch = t_in.shape[0]
    n_out = grad_w.shape[1]
    half = 0.5 if tau_ratio == 2 else 1.0
    for b in range(n_batch):
        if not used[b]:
            continue
        dr = direct[b]
        for i in range(i0, i1):
            ti = t_in[b, i]
            if not ti < np.inf:
                continue
            e_i = ei[b, i]
            for j in range(n_out):
                s = to_safe[b, j] - ti
                e = _decay(s, e_i, fo[b, j], half, dr)
                grad_w[i, j] -= _kernel_pair(s, e, tau_ratio)[0] * coef_w[b, j]


def implicit_grads(
    t_in: np.ndarray,
    w: np.ndarray,
    t_out: np.ndarray,
    g: np.ndarray,
    tau_ratio: int,
    max_dw_norm: float | None,
    slope_eps: float,
    need_t: bool,
    need_w: bool,
    *,
    threads: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Vector-Jacobian products ``(dL/dt_in (B, n_in), dL/dw (n_in, n_out))`` for ``g = dL/dt_out`` (B, n_out).

    Evaluated at the given output times ``t_out`` (computed or measured), float64, times in tau_s. Pairs with
    a silent or non-causal input, silent outputs and slopes ``du/dt`` not in ``(slope_eps, inf)`` contribute
    zero. ``max_dw_norm`` (None = off) drops a (sample, neuron) weight-gradient column whose largest entry
    exceeds it in magnitude; the input-time gradient keeps it. ``threads`` (default: torch's thread count): the
    samples, then the weight-gradient rows, are split into blocks run in parallel; the weight gradient is summed
    over the samples in order either way, so the results do not depend on it.
    """
    n_batch, n_in = t_in.shape
    n_out = w.shape[1]
    t_in = np.ascontiguousarray(t_in, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    t_out = np.ascontiguousarray(t_out, dtype=np.float64)
    g = np.ascontiguousarray(g, dtype=np.float64)
    grad_t = np.zeros((n_batch, n_in)) if need_t else np.zeros((0, 0))
    grad_w = np.zeros(w.shape)
    used = np.zeros(n_batch, dtype=np.bool_)
    direct = np.zeros(n_batch, dtype=np.bool_)
    ei = np.zeros((n_batch, n_in))
    fo = np.zeros((n_batch, n_out))
    to_safe = np.zeros((n_batch, n_out))
    coef_w = np.zeros((n_batch, n_out))
    tau_ratio = int(tau_ratio)
    dw_norm = math.inf if max_dw_norm is None else float(max_dw_norm)

    def samples(a: int, b: int) -> None:
        _sample_grads_kernel(
            t_in[a:b], w, t_out[a:b], g[a:b], tau_ratio, dw_norm, float(slope_eps), bool(need_t),
            grad_t[a:b] if need_t else grad_t, used[a:b], direct[a:b], ei[a:b], fo[a:b], to_safe[a:b], coef_w[a:b],
        )

    # passes over (input, neuron) pairs: per sample once for the slopes, once more for the input-time gradient;
    # each input also costs an exp and its loop set-up, worth about _INPUT_COST pairs (few outputs: most of it)
    run_blocks(samples, blocks(n_batch, n_in * (n_out * (1 + need_t) + _INPUT_COST), threads))
    if need_w and used.any():

        def inputs(a: int, b: int) -> None:
            _weight_grads_kernel(t_in, tau_ratio, used, direct, ei, fo, to_safe, coef_w, a, b, grad_w)

        run_blocks(inputs, blocks(n_in, n_batch * n_out, threads))
    return (grad_t if need_t else None), (grad_w if need_w else None)
