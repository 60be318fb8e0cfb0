"""Transmission delays in the exact TTFS math: forward times and gradients for axonal, synaptic and dendritic delays.

Checked against an independent event-driven simulation of the neuron ODE (exact propagation of the membrane state
between arrivals, first threshold crossing by grid search and bisection; no closed form, no causal-set logic), its
finite differences (gradients), finite differences of the closed form, and the identities between the kinds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firstspike.runtime.ttfs import cpu_delay_kernels
from firstspike.runtime.ttfs.delays import (
    DelayedSpikeTimeFn,
    delay_matrix,
    delay_shape,
    delayed_first_spike_times,
    delayed_spike_time_jacobians,
    delayed_spike_times,
)
from firstspike.runtime.ttfs.spiketime import first_spike_times, set_kernels, spike_times

KINDS = ("axonal", "synaptic", "dendritic")
INF = math.inf


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _default_kernels() -> Iterator[None]:
    previous = set_kernels("auto")
    yield
    set_kernels(previous)


# --- the independent reference: event-driven simulation of one neuron ---------------------------------------------


def _propagate(u: np.ndarray, cur: float, h: np.ndarray, tau_ratio: int) -> np.ndarray:
    """Membrane after ``h`` (array) of free evolution of ``tau_m du/dt = -u + I, dI/dt = -I`` from ``(u, I)``."""
    if tau_ratio == 1:
        return (u + cur * h) * np.exp(-h)
    return u * np.exp(-0.5 * h) + cur * (np.exp(-0.5 * h) - np.exp(-h))


def _local_max(vals: np.ndarray) -> float:
    """Largest interior local maximum of a sampled curve (-inf if none)."""
    if len(vals) < 3:
        return -INF
    is_max = (vals[1:-1] >= vals[:-2]) & (vals[1:-1] >= vals[2:])
    return float(vals[1:-1][is_max].max(initial=-INF))


def simulate_neuron(arrivals: np.ndarray, w: np.ndarray, tau_ratio: int, horizon: float = 40.0,
                    grid: float = 2e-3) -> tuple[float, float]:
    """First threshold (1) crossing of one neuron whose input ``i`` (weight ``w[i]``) arrives at ``arrivals[i]``
    (``inf`` = never), and the largest membrane maximum before it: local maxima and the values at arrivals (where
    an inhibitory input makes a kink); a value near 1 marks a threshold-grazing, ill-conditioned case.

    The state ``(u, I)`` is propagated exactly from arrival to arrival; inside each interval the membrane is
    sampled on a fine grid and the first upward crossing is refined by bisection on the exact propagation.
    """
    order = np.argsort(arrivals, kind="stable")
    t_ev = arrivals[order]
    w_ev = w[order]
    n = int(np.isfinite(t_ev).sum())
    if n == 0:
        return INF, 0.0
    u, cur, peak = 0.0, 0.0, -INF
    for k in range(n):
        cur += w_ev[k]
        t0 = t_ev[k]
        t1 = t_ev[k + 1] if k + 1 < n else t0 + horizon
        span = t1 - t0
        if span <= 0:
            continue
        hs = np.linspace(0.0, span, max(2, int(span / grid) + 2))
        us = _propagate(np.full_like(hs, u), cur, hs, tau_ratio)
        above = np.nonzero(us >= 1.0)[0]
        if above.size:
            j = int(above[0])
            peak = max(peak, _local_max(us[:j]))
            if j == 0:
                return t0, peak  # at threshold right at the arrival (a jump in I never jumps u)
            lo, hi = hs[j - 1], hs[j]
            for _ in range(80):
                mid = 0.5 * (lo + hi)
                if _propagate(np.array([u]), cur, np.array([mid]), tau_ratio)[0] >= 1.0:
                    hi = mid
                else:
                    lo = mid
            return t0 + 0.5 * (lo + hi), peak
        peak = max(peak, _local_max(us), float(us[-1]))
        u = float(_propagate(np.array([u]), cur, np.array([span]), tau_ratio)[0])
        cur *= math.exp(-span)
    return INF, peak


def simulate_layer(t_in: np.ndarray, w: np.ndarray, d: np.ndarray, tau_ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """Spike times (B, m) and pre-crossing membrane maxima of a layer with per-connection delays ``d`` (n, m)."""
    B, m = t_in.shape[0], w.shape[1]
    times, peaks = np.full((B, m), INF), np.zeros((B, m))
    for b in range(B):
        for j in range(m):
            times[b, j], peaks[b, j] = simulate_neuron(t_in[b] + d[:, j], w[:, j], tau_ratio)
    return times, peaks


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


@st.composite
def delayed_layer(draw: st.DrawFn, max_n: int = 5, max_m: int = 3, max_b: int = 3) -> tuple:
    kind = draw(st.sampled_from(KINDS))
    tau_ratio = draw(st.sampled_from([1, 2]))
    seed = draw(st.integers(0, 2**31 - 1))
    B, n, m = draw(st.integers(1, max_b)), draw(st.integers(1, max_n)), draw(st.integers(1, max_m))
    rng = np.random.default_rng(seed)
    t_in = rng.uniform(0.0, 2.0, size=(B, n))
    t_in[rng.random(t_in.shape) < 0.15] = INF
    w = rng.normal(draw(st.floats(0.4, 1.5)) * tau_ratio, 1.2 * tau_ratio, size=(n, m))
    d = rng.uniform(0.0, draw(st.sampled_from([0.5, 2.0, 4.0])), size=delay_shape(kind, n, m))
    return kind, tau_ratio, t_in, w, d


def _well_conditioned(t_in: np.ndarray, w: np.ndarray, D: np.ndarray, t_out: np.ndarray, peak: np.ndarray,
                      tau_ratio: int) -> np.ndarray:
    """(B, m) outputs whose time is smooth in the parameters: a clear crossing away from every arrival."""
    arrivals = t_in[:, :, None] + D[None]
    gap = np.abs(np.where(np.isfinite(t_out), t_out, 0.0)[:, None, :] - arrivals)
    gap = np.where(np.isfinite(gap), gap, INF).min(axis=1)
    slope = delayed_slope(t_in, w, D, t_out, tau_ratio)
    return np.isfinite(t_out) & (gap > 2e-3) & (slope > 0.05) & (np.abs(peak - 1.0) > 1e-3)


def delayed_slope(t_in: np.ndarray, w: np.ndarray, D: np.ndarray, t: np.ndarray, tau_ratio: int) -> np.ndarray:
    """du/dt at times ``t`` (B, m) with arrivals ``t_in + D`` (direct sum over causal arrivals, for masks)."""
    s = np.where(np.isfinite(t), t, 0.0)[:, None, :] - (t_in[:, :, None] + D[None])
    causal = np.isfinite(s) & (s > 0)
    s = np.where(causal, s, 0.0)
    kp = (1 - s) * np.exp(-s) if tau_ratio == 1 else np.exp(-s) - 0.5 * np.exp(-0.5 * s)
    return np.where(np.isfinite(t), (np.where(causal, kp, 0.0) * w[None]).sum(1), 0.0)


# --- forward against the simulation --------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delayed_layer())
def test_forward_matches_event_driven_simulation(case: tuple) -> None:
    kind, tau_ratio, t_in, w, d = case
    D = delay_matrix(_tensor(d), kind, *w.shape).numpy()
    ref, peak = simulate_layer(t_in, w, D, tau_ratio)
    assume(np.all(np.abs(peak - 1.0) > 1e-3))  # threshold-grazing decisions are ill-conditioned
    ours = delayed_first_spike_times(_tensor(t_in), _tensor(w), _tensor(d), kind, tau_ratio).numpy()
    assert not np.isnan(ours).any()
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(ref), err_msg="silent sets differ")
    fire = np.isfinite(ref)
    np.testing.assert_allclose(ours[fire], ref[fire], rtol=0, atol=1e-9)


@pytest.mark.parametrize("tau_ratio", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_forward_matches_simulation_on_a_random_layer(kind: str, tau_ratio: int) -> None:
    rng = np.random.default_rng(3 + tau_ratio)
    t_in = rng.uniform(0.0, 2.0, size=(6, 5))
    t_in[rng.random(t_in.shape) < 0.2] = INF
    w = rng.normal(0.8 * tau_ratio, 1.2 * tau_ratio, size=(5, 4))
    d = rng.uniform(0.0, 3.0, size=delay_shape(kind, 5, 4))
    D = delay_matrix(_tensor(d), kind, 5, 4).numpy()
    ref, peak = simulate_layer(t_in, w, D, tau_ratio)
    ours = delayed_first_spike_times(_tensor(t_in), _tensor(w), _tensor(d), kind, tau_ratio).numpy()
    ok = np.abs(peak - 1.0) > 1e-3
    assert ok.mean() > 0.8 and np.isfinite(ours).any() and (~np.isfinite(ours)).any()
    np.testing.assert_array_equal(np.isfinite(ours)[ok], np.isfinite(ref)[ok])
    both = ok & np.isfinite(ref)
    np.testing.assert_allclose(ours[both], ref[both], rtol=0, atol=1e-9)


# --- gradients -----------------------------------------------------------------------------------------------------


def _grads(kind: str, tau_ratio: int, t_in: np.ndarray, w: np.ndarray, d: np.ndarray, g: np.ndarray,
           output_times: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    tr, wr, dr = _tensor(t_in).requires_grad_(), _tensor(w).requires_grad_(), _tensor(d).requires_grad_()
    out = delayed_spike_times(tr, wr, dr, kind, tau_ratio, output_times=output_times)
    (torch.where(torch.isfinite(out), out, 0.0) * _tensor(g)).sum().backward()
    return out.detach(), tr.grad, wr.grad, dr.grad


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delayed_layer(max_n=4, max_m=3, max_b=2))
def test_arrival_jacobian_matches_simulation_finite_differences(case: tuple) -> None:
    """dt_out/d(arrival of input i at neuron j), closed-form backward vs central differences of the simulation."""
    kind, tau_ratio, t_in, w, d = case
    D = delay_matrix(_tensor(d), kind, *w.shape).numpy()
    ref, peak = simulate_layer(t_in, w, D, tau_ratio)
    good = _well_conditioned(t_in, w, D, ref, peak, tau_ratio)
    assume(bool(good.any()))
    t_out = delayed_first_spike_times(_tensor(t_in), _tensor(w), _tensor(d), kind, tau_ratio)
    jac = delayed_spike_time_jacobians(_tensor(t_in), _tensor(w), _tensor(d), kind, t_out, tau_ratio).numpy()
    h = 1e-5
    for b, j in zip(*np.nonzero(good), strict=True):
        for i in range(w.shape[0]):
            if not np.isfinite(t_in[b, i]):
                assert jac[b, i, j] == 0.0
                continue
            a = t_in[b] + D[:, j]
            ap, am = a.copy(), a.copy()
            ap[i] += h
            am[i] -= h
            fd = (simulate_neuron(ap, w[:, j], tau_ratio)[0] - simulate_neuron(am, w[:, j], tau_ratio)[0]) / (2 * h)
            assert jac[b, i, j] == pytest.approx(fd, abs=1e-6, rel=1e-5), (b, i, j)


def _fd_delays(kind: str, tau_ratio: int, t_in: np.ndarray, w: np.ndarray, d: np.ndarray, g: np.ndarray,
               h: float = 1e-6) -> np.ndarray:
    def loss(dd: np.ndarray) -> float:
        out = delayed_first_spike_times(_tensor(t_in), _tensor(w), _tensor(dd), kind, tau_ratio).numpy()
        return float((np.where(np.isfinite(out), out, 0.0) * g).sum())

    fd = np.zeros_like(d)
    for k in np.ndindex(d.shape):
        dp, dm = d.copy(), d.copy()
        dp[k] += h
        dm[k] -= h
        fd[k] = (loss(dp) - loss(dm)) / (2 * h)
    return fd


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delayed_layer(), st.integers(0, 2**31 - 1))
def test_delay_gradients_match_finite_differences(case: tuple, gseed: int) -> None:
    kind, tau_ratio, t_in, w, d = case
    D = delay_matrix(_tensor(d), kind, *w.shape).numpy()
    out = delayed_first_spike_times(_tensor(t_in), _tensor(w), _tensor(d), kind, tau_ratio).numpy()
    _, peak = simulate_layer(t_in, w, D, tau_ratio)
    good = _well_conditioned(t_in, w, D, out, peak, tau_ratio)
    assume(bool(good.any()))
    # upstream gradient only on well-conditioned outputs, so that the loss is smooth within +-h
    g = np.random.default_rng(gseed).normal(size=out.shape) * good
    _, gt, gw, gd = _grads(kind, tau_ratio, t_in, w, d, g)
    assert torch.isfinite(gt).all() and torch.isfinite(gw).all() and torch.isfinite(gd).all()
    np.testing.assert_allclose(gd.numpy(), _fd_delays(kind, tau_ratio, t_in, w, d, g), rtol=1e-5, atol=1e-6)
    # the input-time gradient is the arrival gradient summed over the neurons (finite differences in t_in)
    h = 1e-6
    for b, i in np.ndindex(t_in.shape):
        if not np.isfinite(t_in[b, i]):
            assert gt[b, i] == 0.0
            continue
        tp, tm = t_in.copy(), t_in.copy()
        tp[b, i] += h
        tm[b, i] -= h
        fp = delayed_first_spike_times(_tensor(tp), _tensor(w), _tensor(d), kind, tau_ratio).numpy()
        fm = delayed_first_spike_times(_tensor(tm), _tensor(w), _tensor(d), kind, tau_ratio).numpy()
        fd = (np.where(np.isfinite(fp), fp, 0) - np.where(np.isfinite(fm), fm, 0)) * g
        assert float(gt[b, i]) == pytest.approx(fd.sum() / (2 * h), abs=1e-6, rel=1e-5)


@pytest.mark.parametrize("tau_ratio", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_weight_gradient_with_delays_matches_finite_differences(kind: str, tau_ratio: int) -> None:
    rng = np.random.default_rng(17 + tau_ratio)
    t_in = rng.uniform(0.0, 2.0, size=(5, 4))
    w = rng.normal(1.0 * tau_ratio, 0.8 * tau_ratio, size=(4, 3))
    d = rng.uniform(0.0, 2.0, size=delay_shape(kind, 4, 3))
    D = delay_matrix(_tensor(d), kind, 4, 3).numpy()
    out = delayed_first_spike_times(_tensor(t_in), _tensor(w), _tensor(d), kind, tau_ratio).numpy()
    good = _well_conditioned(t_in, w, D, out, np.zeros_like(out), tau_ratio)
    assert good.sum() >= 5
    g = rng.normal(size=out.shape) * good
    _, _, gw, _ = _grads(kind, tau_ratio, t_in, w, d, g)
    h = 1e-6
    for k in np.ndindex(w.shape):
        wp, wm = w.copy(), w.copy()
        wp[k] += h
        wm[k] -= h
        fp = delayed_first_spike_times(_tensor(t_in), _tensor(wp), _tensor(d), kind, tau_ratio).numpy()
        fm = delayed_first_spike_times(_tensor(t_in), _tensor(wm), _tensor(d), kind, tau_ratio).numpy()
        fd = ((np.where(np.isfinite(fp), fp, 0) - np.where(np.isfinite(fm), fm, 0)) * g).sum() / (2 * h)
        assert float(gw[k]) == pytest.approx(fd, abs=1e-6, rel=1e-5)


@pytest.mark.parametrize("tau_ratio", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_two_layers_with_delays_match_finite_differences(kind: str, tau_ratio: int) -> None:
    g = torch.Generator().manual_seed(31 + tau_ratio)
    x = torch.rand(6, 4, generator=g, dtype=torch.float64) * 2
    w1 = torch.randn(4, 8, generator=g, dtype=torch.float64) * 0.8 * tau_ratio + 1.5 * tau_ratio
    w2 = torch.randn(8, 3, generator=g, dtype=torch.float64) * 0.5 * tau_ratio + 1.0 * tau_ratio
    d1 = torch.rand(delay_shape(kind, 4, 8), generator=g, dtype=torch.float64)
    d2 = torch.rand(delay_shape(kind, 8, 3), generator=g, dtype=torch.float64)

    def net(d1_: torch.Tensor) -> torch.Tensor:
        h = delayed_first_spike_times(x, w1, d1_, kind, tau_ratio)
        out = delayed_first_spike_times(h, w2, d2, kind, tau_ratio)
        return torch.where(torch.isfinite(out), out, 0.0)

    d1r = d1.clone().requires_grad_()
    out = delayed_spike_times(delayed_spike_times(x, w1, d1r, kind, tau_ratio), w2, d2, kind, tau_ratio)
    assert torch.isfinite(out).double().mean() > 0.5
    torch.where(torch.isfinite(out), out, 0.0).sum().backward()
    num = torch.zeros_like(d1)
    for k in np.ndindex(tuple(d1.shape)):
        dp, dm = d1.clone(), d1.clone()
        dp[k] += 1e-6
        dm[k] -= 1e-6
        num[k] = ((net(dp) - net(dm)) / 2e-6).sum()
    torch.testing.assert_close(d1r.grad, num, rtol=1e-5, atol=1e-6)


# --- identities between the kinds ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(delayed_layer(max_n=8, max_m=6, max_b=6), st.sampled_from(["numba", "torch"]))
def test_zero_delays_equal_no_delays(case: tuple, kernels: str) -> None:
    """Zero delays give exactly the results without delays: bit for bit with the default CPU kernels, to rounding
    with the batched torch formulation (a different summation layout)."""
    kind, tau_ratio, t_in, w, _ = case
    set_kernels(kernels)
    zero = np.zeros(delay_shape(kind, *w.shape))
    rng = np.random.default_rng(1)
    g = rng.normal(size=(t_in.shape[0], w.shape[1]))
    out, gt, gw, gd = _grads(kind, tau_ratio, t_in, w, zero, g)
    assert torch.isfinite(gd).all()
    tr, wr = _tensor(t_in).requires_grad_(), _tensor(w).requires_grad_()
    ref = spike_times(tr, wr, tau_ratio)
    (torch.where(torch.isfinite(ref), ref, 0.0) * _tensor(g)).sum().backward()
    exact = kernels == "numba"
    tol = {"rtol": 0.0, "atol": 0.0} if exact else {"rtol": 1e-12, "atol": 1e-11}
    torch.testing.assert_close(out, ref.detach(), **tol)
    torch.testing.assert_close(gt, tr.grad, **tol)
    torch.testing.assert_close(gw, wr.grad, **tol)


@settings(max_examples=40, deadline=None)
@given(delayed_layer(max_n=8, max_m=6, max_b=6))
def test_dendritic_delay_shifts_the_output_by_exactly_d(case: tuple) -> None:
    """Delaying every input of neuron j by d_j (as synaptic delays d_ij = d_j, through the per-neuron causal sets)
    delays its output by d_j, and the dendritic delay's gradient is the output-time gradient."""
    _, tau_ratio, t_in, w, _ = case
    n, m = w.shape
    dd = np.random.default_rng(2).uniform(0.0, 4.0, size=m)
    base = first_spike_times(_tensor(t_in), _tensor(w), tau_ratio)
    as_synaptic = delayed_first_spike_times(_tensor(t_in), _tensor(w), _tensor(np.tile(dd, (n, 1))), "synaptic",
                                            tau_ratio)
    expected = base + _tensor(dd)
    torch.testing.assert_close(as_synaptic, expected, rtol=0, atol=1e-12)
    dendritic = delayed_first_spike_times(_tensor(t_in), _tensor(w), _tensor(dd), "dendritic", tau_ratio)
    torch.testing.assert_close(dendritic, expected, rtol=0, atol=0)
    g = np.random.default_rng(3).normal(size=base.shape)
    out, _, _, gd = _grads("dendritic", tau_ratio, t_in, w, dd, g)
    np.testing.assert_allclose(gd.numpy(), (g * np.isfinite(out.numpy())).sum(0), rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(delayed_layer(max_n=8, max_m=6, max_b=6), st.sampled_from(["numba", "torch"]))
def test_axonal_delays_equal_synaptic_delays_equal_per_source(case: tuple, kernels: str) -> None:
    _, tau_ratio, t_in, w, _ = case
    set_kernels(kernels)
    n, m = w.shape
    da = np.random.default_rng(4).uniform(0.0, 3.0, size=n)
    g = np.random.default_rng(5).normal(size=(t_in.shape[0], m))
    out_a, gt_a, gw_a, gd_a = _grads("axonal", tau_ratio, t_in, w, da, g)
    out_s, gt_s, gw_s, gd_s = _grads("synaptic", tau_ratio, t_in, w, np.tile(da[:, None], (1, m)), g)
    torch.testing.assert_close(out_s, out_a, rtol=0, atol=1e-12)
    torch.testing.assert_close(gt_s, gt_a, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(gw_s, gw_a, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(gd_s.sum(1), gd_a, rtol=1e-9, atol=1e-10)
    # and an axonal delay is the same as moving the source's spike
    shifted = first_spike_times(_tensor(t_in + da), _tensor(w), tau_ratio)
    torch.testing.assert_close(out_a, shifted, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(delayed_layer(max_n=8, max_m=6, max_b=6))
def test_synaptic_delays_equal_each_neuron_seeing_its_own_shifted_inputs(case: tuple) -> None:
    """Per neuron, synaptic delays are input shifts: the per-(sample, neuron) causal-set order (often different
    from the input order: delays up to 4 tau_s reorder inputs spread over 2 tau_s) matches the kernel without
    delays run on that neuron's arrival times."""
    _, tau_ratio, t_in, w, _ = case
    n, m = w.shape
    ds = np.random.default_rng(6).uniform(0.0, 4.0, size=(n, m))
    out = delayed_first_spike_times(_tensor(t_in), _tensor(w), _tensor(ds), "synaptic", tau_ratio)
    for j in range(m):
        col = first_spike_times(_tensor(t_in + ds[:, j]), _tensor(w[:, j : j + 1]), tau_ratio)
        torch.testing.assert_close(out[:, j : j + 1], col, rtol=0, atol=1e-12)


def test_a_delay_can_reorder_the_causal_set() -> None:
    # input 0 at t=0 (strong), input 1 at t=0.5 (inhibitory). Delaying input 0 by 1.0 makes the inhibition arrive
    # first: the neuron fires later, and the arrival order is what the closed form has to follow.
    t_in = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    w = torch.tensor([[4.0, 4.0], [-1.0, -1.0]], dtype=torch.float64)
    d = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)  # only neuron 0's input 0 is delayed
    out = delayed_first_spike_times(t_in, w, d, "synaptic", 1)
    undelayed = first_spike_times(t_in, w[:, :1], 1)
    reordered = first_spike_times(torch.tensor([[1.0, 0.5]], dtype=torch.float64), w[:, :1], 1)
    assert out[0, 1] == undelayed[0, 0]
    assert out[0, 0] == pytest.approx(float(reordered[0, 0]), abs=1e-13)
    ref = simulate_neuron(np.array([1.0, 0.5]), np.array([4.0, -1.0]), 1)[0]
    assert out[0, 0] == pytest.approx(ref, abs=1e-9)
    # the gradient w.r.t. that delay, across the reordering, still matches finite differences
    dr = d.clone().requires_grad_()
    delayed_spike_times(t_in, w, dr, "synaptic", 1)[0, 0].backward()
    fd = (simulate_neuron(np.array([1.0 + 1e-6, 0.5]), np.array([4.0, -1.0]), 1)[0]
          - simulate_neuron(np.array([1.0 - 1e-6, 0.5]), np.array([4.0, -1.0]), 1)[0]) / 2e-6
    assert dr.grad[0, 0].item() == pytest.approx(fd, rel=1e-5)
    assert dr.grad[:, 1].abs().sum() == 0  # neuron 1 does not depend on neuron 0's delays


# --- edge cases ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_silent_neurons_and_silent_inputs_have_zero_gradient(kind: str) -> None:
    t_in = torch.tensor([[0.0, INF, 0.3], [INF, INF, INF]], dtype=torch.float64)
    w = torch.tensor([[3.0, 0.1], [5.0, 0.1], [1.0, 0.1]], dtype=torch.float64)  # neuron 1 never fires
    d = torch.full(delay_shape(kind, 3, 2), 0.4, dtype=torch.float64)
    out, gt, gw, gd = _grads(kind, 1, t_in.numpy(), w.numpy(), d.numpy(), np.ones((2, 2)))
    assert torch.isfinite(out[0, 0]) and torch.isinf(out[0, 1]) and torch.isinf(out[1]).all()
    assert gt[:, 1].abs().sum() == 0 and gt[1].abs().sum() == 0  # silent inputs, a sample with no input
    assert gw[:, 1].abs().sum() == 0 and gw[1].abs().sum() == 0  # silent neuron; silent input's weight
    Dg = gd if kind == "synaptic" else (gd.unsqueeze(1) if kind == "axonal" else gd.unsqueeze(0))
    if kind != "axonal":
        assert Dg[..., 1].abs().sum() == 0
    if kind != "dendritic":
        assert Dg[1].abs().sum() == 0
    assert gd.abs().sum() > 0


@pytest.mark.parametrize("kernels", ["numba", "torch"])
@pytest.mark.parametrize("tau_ratio", [1, 2])
def test_very_late_and_widely_spread_arrivals(kernels: str, tau_ratio: int) -> None:
    set_kernels(kernels)
    g = torch.Generator().manual_seed(8)
    t_in = torch.rand(10, 6, generator=g, dtype=torch.float64) * 2
    w = torch.randn(6, 5, generator=g, dtype=torch.float64) + tau_ratio
    d = torch.rand(6, 5, generator=g, dtype=torch.float64) * 3
    base = delayed_first_spike_times(t_in, w, d, "synaptic", tau_ratio)
    for shift in (5.0, 650.0) if kernels == "torch" else (5.0, 650.0, 1e4):
        torch.testing.assert_close(delayed_first_spike_times(t_in + shift, w, d, "synaptic", tau_ratio),
                                   base + shift, atol=1e-9 * shift, rtol=0)
    if kernels == "numba":
        # arrivals of one sample 400-800 tau_s apart (the kernels re-anchor their sums) and delays beyond the
        # factorised range: each neuron still matches the kernel without delays on its own arrival times
        d_far = d.clone()
        d_far[0] += 400.0
        d_far[3, 1] = 800.0
        out = delayed_first_spike_times(t_in, w, d_far, "synaptic", tau_ratio)
        for j in range(5):
            col = first_spike_times(t_in + d_far[:, j], w[:, j : j + 1], tau_ratio)
            torch.testing.assert_close(out[:, j : j + 1], col, rtol=0, atol=1e-9)
        assert cpu_delay_kernels.FACTOR_MAX_DELAY < 800.0


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(KINDS),
       st.lists(st.sampled_from([-5.0, -0.5, 0.0, 0.3, 1.0, 2.5, 50.0, 800.0, INF, -INF, math.nan]),
                min_size=12, max_size=12))
def test_arbitrary_measured_times_never_give_nan(kind: str, values: list[float]) -> None:
    g = torch.Generator().manual_seed(1)
    t_in = torch.rand(4, 5, generator=g, dtype=torch.float64) * 2
    t_in[0, 1] = INF
    measured = torch.tensor(values, dtype=torch.float64).view(4, 3)
    d = torch.rand(delay_shape(kind, 5, 3), generator=g, dtype=torch.float64)
    out, gt, gw, gd = _grads(kind, 1, t_in.numpy(), torch.randn(5, 3, generator=g).double().numpy(), d.numpy(),
                             torch.randn(4, 3, generator=g).double().numpy(), output_times=measured)
    assert not torch.isnan(out).any()
    assert torch.isfinite(gt).all() and torch.isfinite(gw).all() and torch.isfinite(gd).all()


@pytest.mark.parametrize("kind", KINDS)
def test_measured_times_off_threshold_give_zero_gradient(kind: str) -> None:
    # one input of weight 3 at t=0 (ratio 1): the membrane peaks at t=1; t=2.5 is on its falling flank, and a time
    # before the (delayed) arrival has no causal input: neither satisfies the threshold, both give no gradient
    t_in = torch.zeros(2, 1, dtype=torch.float64)
    w = torch.tensor([[3.0]], dtype=torch.float64)
    d = torch.full(delay_shape(kind, 1, 1), 0.5, dtype=torch.float64)
    measured = torch.tensor([[3.0], [0.2]], dtype=torch.float64)
    out, gt, gw, gd = _grads(kind, 1, t_in.numpy(), w.numpy(), d.numpy(), np.ones((2, 1)), output_times=measured)
    torch.testing.assert_close(out, measured)
    assert gt.abs().sum() == 0 and gw.abs().sum() == 0 and gd.abs().sum() == 0
    # at the computed time the same call has a gradient
    _, _, gw2, gd2 = _grads(kind, 1, t_in.numpy(), w.numpy(), d.numpy(), np.ones((2, 1)))
    assert gw2.abs().sum() > 0 and gd2.abs().sum() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_measured_times_equal_to_computed_give_identical_gradients(kind: str) -> None:
    rng = np.random.default_rng(9)
    t_in, w = rng.uniform(0, 2, (12, 6)), rng.normal(1.0, 1.0, (6, 5))
    d = rng.uniform(0, 2, delay_shape(kind, 6, 5))
    g = rng.normal(size=(12, 5))
    a = _grads(kind, 1, t_in, w, d, g)
    b = _grads(kind, 1, t_in, w, d, g, output_times=a[0].clone())
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 10), st.integers(1, 40), st.integers(1, 12), st.sampled_from([1, 2]),
       st.sampled_from([0.0, 0.3, 0.8]), st.sampled_from([0.0, 0.25]), st.sampled_from(KINDS))
def test_cpu_kernels_agree_with_torch(seed: int, n_batch: int, n_in: int, n_out: int, tau_ratio: int,
                                      sparsity: float, grid: float, kind: str) -> None:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 2.5, (n_batch, n_in))
    if grid:  # a coarse time grid (and delays on it): tied arrivals
        t = np.round(t / grid) * grid
    t[rng.random(t.shape) < sparsity] = INF
    mean = (1.5 if tau_ratio == 1 else 3.0) / max(1.0, math.sqrt(n_in))
    w = rng.normal(mean, 2.0 * mean, (n_in, n_out))
    d = rng.uniform(0.0, 2.0, delay_shape(kind, n_in, n_out))
    if grid:
        d = np.round(d / grid) * grid
    g = rng.normal(size=(n_batch, n_out))
    res = {}
    for kernels in ("numba", "torch"):
        set_kernels(kernels)
        res[kernels] = _grads(kind, tau_ratio, t, w, d, g)
    a, b = res["numba"], res["torch"]
    assert torch.equal(torch.isfinite(a[0]), torch.isfinite(b[0]))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)


def test_rejects_bad_delays() -> None:
    t, w = torch.zeros(1, 2, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        delayed_first_spike_times(t, w, torch.zeros(2, dtype=torch.float64), "synaptic")
    with pytest.raises(ValueError, match="finite"):
        delayed_first_spike_times(t, w, torch.tensor([0.0, math.nan], dtype=torch.float64), "axonal")
    with pytest.raises(ValueError, match="delay kind"):
        delayed_first_spike_times(t, w, torch.zeros(3, dtype=torch.float64), "somatic")
    with pytest.raises(ValueError, match="shape"):
        DelayedSpikeTimeFn.apply(t, w, torch.zeros(3, dtype=torch.float64), "dendritic", 1,
                                 torch.zeros(1, 5, dtype=torch.float64), None, 1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_torch_path_equals_unchunked(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import firstspike.runtime.ttfs.delays as delays_mod

    set_kernels("torch")
    rng = np.random.default_rng(12)
    t_in, w = rng.uniform(0, 2, (37, 6)), rng.normal(1.0, 1.0, (6, 5))
    d = rng.uniform(0, 2, delay_shape(kind, 6, 5))
    g = rng.normal(size=(37, 5))
    full = _grads(kind, 1, t_in, w, d, g)
    monkeypatch.setattr(delays_mod, "_MAX_CHUNK_ELEMENTS", 6 * 5 * 4)
    chunked = _grads(kind, 1, t_in, w, d, g)
    for a, b in zip(full, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
