"""Forward spike times against an independent fine-step (RK4) integration of the neuron ODE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firstspike.runtime.ttfs.spiketime import first_spike_times, membrane_potential, membrane_slope

HORIZON = 30.0  # integrate until this long after the last input spike (units of tau_s)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def integrate_first_spikes(
    t_in: np.ndarray, w: np.ndarray, tau_ratio: int, n_sub: int = 60, n_tail: int = 2000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RK4 of ``tau_m du/dt = -u + I, dI/dt = -I`` with ``I += w_i`` at ``t_i``; threshold 1.

    All samples at once: the run is split into segments between consecutive (sorted) input spikes, each
    integrated with ``n_sub`` RK4 steps (per-sample step sizes), plus a tail of ``n_tail`` steps. Returns
    (first crossing times, largest local membrane maximum before the crossing, membrane slope at the
    crossing); crossing times are refined inside the step by cubic Hermite interpolation and bisection.
    """
    tau_m = float(tau_ratio)
    B, n = t_in.shape
    m = w.shape[1]
    order = np.argsort(t_in, axis=1)
    ts = np.take_along_axis(t_in, order, axis=1)
    finite = np.isfinite(ts)
    last = np.where(finite.any(1), np.max(np.where(finite, ts, -np.inf), axis=1), 0.0)
    bounds = np.where(finite, ts, last[:, None])  # silent inputs: zero-length segments at the end
    bounds = np.concatenate([bounds, (last + HORIZON)[:, None]], axis=1)
    u = np.zeros((B, m))
    cur = np.zeros((B, m))
    t_spike = np.full((B, m), np.inf)
    slope_at = np.full((B, m), np.nan)
    peak = np.full((B, m), -np.inf)

    def f(u_: np.ndarray, i_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (-u_ + i_) / tau_m, -i_

    for k in range(n):
        # input k of every sample (its k-th earliest; silent ones inject nothing) starts segment k
        cur = cur + w[order[:, k]] * finite[:, k : k + 1]
        t0, t1 = bounds[:, k], bounds[:, k + 1]
        steps = n_tail if k == n - 1 else n_sub  # the last segment is the tail after the last input
        h = ((t1 - t0) / steps)[:, None]
        t = t0[:, None] * np.ones((1, m))
        du_prev = f(u, cur)[0]
        for _ in range(steps):
            k1u, k1i = f(u, cur)
            k2u, k2i = f(u + 0.5 * h * k1u, cur + 0.5 * h * k1i)
            k3u, k3i = f(u + 0.5 * h * k2u, cur + 0.5 * h * k2i)
            k4u, k4i = f(u + h * k3u, cur + h * k3i)
            u_new = u + h / 6 * (k1u + 2 * k2u + 2 * k3u + k4u)
            i_new = cur + h / 6 * (k1i + 2 * k2i + 2 * k3i + k4i)
            du_new = f(u_new, i_new)[0]
            open_ = ~np.isfinite(t_spike) & (h > 0)
            # local maxima of the membrane before the first crossing
            is_peak = open_ & (du_prev > 0) & (du_new <= 0)
            peak = np.where(is_peak, np.maximum(peak, np.maximum(u, u_new)), peak)
            crossed = open_ & (u < 1.0) & (u_new >= 1.0)
            for b, j in zip(*np.nonzero(crossed), strict=True):
                hb = h[b, 0]
                p0, p1, d0, d1 = u[b, j] - 1.0, u_new[b, j] - 1.0, du_prev[b, j] * hb, du_new[b, j] * hb
                lo, hi = 0.0, 1.0
                for _ in range(60):
                    s = 0.5 * (lo + hi)
                    val = ((2 * s**3 - 3 * s**2 + 1) * p0 + (s**3 - 2 * s**2 + s) * d0
                           + (-2 * s**3 + 3 * s**2) * p1 + (s**3 - s**2) * d1)
                    lo, hi = (s, hi) if val < 0 else (lo, s)
                t_spike[b, j] = t[b, j] + 0.5 * (lo + hi) * hb
                slope_at[b, j] = du_new[b, j]
            u, cur, du_prev = u_new, i_new, du_new
            t = t + h
    return t_spike, peak, slope_at


times_st = st.one_of(st.floats(0.0, 3.0), st.just(math.inf))


@st.composite
def layer_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    tau_ratio = draw(st.sampled_from([1, 2]))
    B = draw(st.integers(1, 3))
    n = draw(st.integers(1, 6))
    m = draw(st.integers(1, 4))
    t_in = np.array([[draw(times_st) for _ in range(n)] for _ in range(B)], dtype=np.float64)
    mean = draw(st.floats(0.0, 2.5 if tau_ratio == 1 else 4.0))
    w = np.array([[draw(st.floats(-3.0, 3.0)) + mean for _ in range(m)] for _ in range(n)])
    return t_in, w, tau_ratio


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_case())
def test_forward_matches_ode_integration(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    t_in, w, tau_ratio = case
    ours = first_spike_times(torch.from_numpy(t_in), torch.from_numpy(w), tau_ratio).numpy()
    ref, peak, slope = integrate_first_spikes(t_in, w, tau_ratio)
    last = np.where(np.isfinite(t_in), t_in, -np.inf).max(axis=1, initial=0.0)[:, None]
    # stay away from threshold-grazing cases (decision ill-conditioned) and from the integration horizon
    assume(np.all(np.abs(peak - 1.0) > 1e-3))
    assume(np.all(~np.isfinite(ref) | (slope > 1e-3)))
    assume(np.all(~np.isfinite(ours) | (ours < last + HORIZON - 1.0)))
    assert not np.isnan(ours).any()
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(ref), err_msg="silent sets differ")
    spikes = np.isfinite(ref)
    np.testing.assert_allclose(ours[spikes], ref[spikes], rtol=0, atol=1e-6)


@pytest.mark.parametrize("tau_ratio", [1, 2])
def test_forward_matches_ode_on_random_layer(tau_ratio: int) -> None:
    rng = np.random.default_rng(7 + tau_ratio)
    t_in = rng.uniform(0.0, 2.0, size=(8, 5))
    t_in[rng.random(t_in.shape) < 0.2] = np.inf
    w = rng.normal(1.0 if tau_ratio == 1 else 2.0, 1.5, size=(5, 6))
    ours = first_spike_times(torch.from_numpy(t_in), torch.from_numpy(w), tau_ratio).numpy()
    ref, peak, slope = integrate_first_spikes(t_in, w, tau_ratio)
    ok = (np.abs(peak - 1.0) > 1e-3) & (~np.isfinite(ref) | (slope > 1e-3))
    assert ok.mean() > 0.8
    assert np.isfinite(ours).any() and (~np.isfinite(ours)).any()
    np.testing.assert_array_equal(np.isfinite(ours)[ok], np.isfinite(ref)[ok])
    both = ok & np.isfinite(ref)
    np.testing.assert_allclose(ours[both], ref[both], atol=1e-6, rtol=0)


@pytest.mark.parametrize("tau_ratio", [1, 2])
def test_threshold_is_reached_at_spike_time(tau_ratio: int) -> None:
    g = torch.Generator().manual_seed(3)
    t_in = torch.rand(50, 10, generator=g, dtype=torch.float64) * 2
    w = torch.randn(10, 20, generator=g, dtype=torch.float64) + (0.6 if tau_ratio == 1 else 0.2)
    t_out = first_spike_times(t_in, w, tau_ratio)
    spikes = torch.isfinite(t_out)
    assert 0.2 < spikes.double().mean() < 1.0
    u = membrane_potential(t_out, t_in, w, tau_ratio)
    torch.testing.assert_close(u[spikes], torch.ones_like(u[spikes]), atol=1e-11, rtol=0)
    # a first crossing is an upward crossing
    assert (membrane_slope(t_out, t_in, w, tau_ratio)[spikes] >= 0).all()
    # and nothing crossed earlier: the membrane on a fine grid before t_out stays below threshold
    grid = torch.linspace(0, 1, 400, dtype=torch.float64)
    for k in range(0, 400, 7):
        t_probe = torch.where(spikes, t_out * grid[k], 10.0 * grid[k])
        assert (membrane_potential(t_probe, t_in, w, tau_ratio)[spikes] <= 1.0 + 1e-12).all()


def test_no_inputs_and_all_silent_inputs() -> None:
    w = torch.ones(3, 2, dtype=torch.float64)
    t = torch.full((4, 3), math.inf, dtype=torch.float64)
    assert torch.isinf(first_spike_times(t, w)).all()
    t[1, 2] = float("nan")  # NaN input = no spike
    assert torch.isinf(first_spike_times(t, w)).all()
    assert first_spike_times(torch.zeros(0, 3, dtype=torch.float64), w).shape == (0, 2)


def test_single_input_closed_form() -> None:
    # one input of weight w at t=0 with tau_m = tau_s: w t e^-t = 1 -> t = -W0(-1/w) (earliest root)
    w = torch.tensor([[3.0, math.e, 2.0]], dtype=torch.float64)
    t = first_spike_times(torch.zeros(1, 1, dtype=torch.float64), w, 1)
    assert t[0, 0] == pytest.approx(0.6190612867359451, abs=1e-14)  # -W0(-1/3)
    assert t[0, 1] == pytest.approx(1.0, abs=2e-8)  # grazes exactly at the peak (branch point)
    assert math.isinf(t[0, 2])  # peak 2/e < 1
    # tau_m = 2 tau_s: w (e^-t/2 - e^-t) = 1 -> y = e^-t/2 = (1 + sqrt(1 - 4/w))/2
    w2 = torch.tensor([[8.0]], dtype=torch.float64)
    t2 = first_spike_times(torch.zeros(1, 1, dtype=torch.float64), w2, 2)
    assert t2[0, 0] == pytest.approx(-2 * math.log((1 + math.sqrt(0.5)) / 2), abs=1e-14)


def test_time_shift_invariance_and_late_inputs() -> None:
    g = torch.Generator().manual_seed(5)
    t_in = torch.rand(20, 6, generator=g, dtype=torch.float64) * 2
    w = torch.randn(6, 7, generator=g, dtype=torch.float64) + 1.0
    base = first_spike_times(t_in, w)
    for shift in (5.0, 700.0, 1e4):  # exp(t) would overflow without the per-sample shift
        shifted = first_spike_times(t_in + shift, w)
        torch.testing.assert_close(shifted, base + shift, atol=1e-9 * shift, rtol=0)


def test_tied_inputs_match_merged_input() -> None:
    # two inputs at the same time act like one input with the summed weight
    t = torch.tensor([[0.5, 0.5, 1.0]], dtype=torch.float64)
    w = torch.tensor([[1.0], [1.5], [0.2]], dtype=torch.float64)
    merged = first_spike_times(torch.tensor([[0.5, 1.0]], dtype=torch.float64),
                               torch.tensor([[2.5], [0.2]], dtype=torch.float64))
    torch.testing.assert_close(first_spike_times(t, w), merged, atol=1e-13, rtol=0)


def test_chunked_forward_equals_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    import firstspike.runtime.ttfs.spiketime as st_mod

    g = torch.Generator().manual_seed(9)
    t_in = torch.rand(37, 8, generator=g, dtype=torch.float64) * 2
    w = torch.randn(8, 5, generator=g, dtype=torch.float64) + 1.0
    full = first_spike_times(t_in, w)
    monkeypatch.setattr(st_mod, "_MAX_CHUNK_ELEMENTS", 8 * 5 * 4)
    torch.testing.assert_close(first_spike_times(t_in, w), full, atol=0, rtol=0)


def test_layouts_agree() -> None:
    # the (batch, prefix, neuron) layout switches with n_out vs n_in; both must give the same times
    g = torch.Generator().manual_seed(11)
    t_in = torch.rand(10, 12, generator=g, dtype=torch.float64) * 2
    w = torch.randn(12, 30, generator=g, dtype=torch.float64) + 0.5
    wide = first_spike_times(t_in, w)  # n_out >= n_in
    narrow = torch.cat([first_spike_times(t_in, w[:, j : j + 3]) for j in range(0, 30, 3)], dim=1)
    torch.testing.assert_close(wide, narrow, atol=1e-12, rtol=0)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tau_ratio"):
        first_spike_times(torch.zeros(1, 2, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match="rows"):
        first_spike_times(torch.zeros(1, 2, dtype=torch.float64), torch.ones(3, 1, dtype=torch.float64))


def test_sanitized_times_are_float64_with_every_non_finite_time_a_silent_input() -> None:
    from firstspike.runtime.ttfs.spiketime import _sanitize_times

    t = torch.tensor([[0.5, -0.0, float("nan"), -math.inf, math.inf, -2.0, 1e308]], dtype=torch.float64)
    got = _sanitize_times(t)
    want = torch.tensor([[0.5, -0.0, math.inf, math.inf, math.inf, -2.0, 1e308]], dtype=torch.float64)
    assert got.dtype == torch.float64 and torch.equal(got, want)
    assert torch.signbit(got[0, 1])  # a finite time is kept as it is, -0.0 included
    assert got.data_ptr() != t.data_ptr()  # a new tensor: the caller's is never changed
    half = _sanitize_times(torch.tensor([[0.25, float("nan")]], dtype=torch.float32))
    assert half.dtype == torch.float64 and half.tolist() == [[0.25, math.inf]]
