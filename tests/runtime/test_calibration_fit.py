"""The calibration's analytic responses and fits, on synthetic data with known answers (no device)."""

from __future__ import annotations

import numpy as np
import pytest

from firstspike.runtime.calibration.fit import fit_membrane, fit_synaptic, leak_from_trace
from firstspike.runtime.calibration.kernels import log_kernel, relaxation_interval
from firstspike.runtime.calibration.synapses import fit_synapses


def _integrate(jump: float, tau_m: float, tau_x: float, t_end: float,
               dt: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Independent check: the membrane after a current jump by classic RK4 on the two ODEs."""
    def f(y: np.ndarray) -> np.ndarray:
        u, i = y
        return np.array([(-u + i) / tau_m, -i / tau_x])

    n = round(t_end / dt)
    y = np.array([0.0, jump])
    out = np.empty(n + 1)
    out[0] = 0.0
    for k in range(n):
        k1 = f(y)
        k2 = f(y + 0.5 * dt * k1)
        k3 = f(y + 0.5 * dt * k2)
        k4 = f(y + dt * k3)
        y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out[k + 1] = y[0]
    return np.arange(n + 1) * dt, out


@pytest.mark.parametrize("tau_m,tau_x", [(752.0, 752.0), (3600.0, 752.0), (4.0, 752.0), (752.0, 700.0),
                                         (751.9999, 752.0)])
def test_the_kernel_matches_an_independent_integration(tau_m, tau_x):
    fast = tau_m < 10
    t, u = _integrate(1.0, tau_m, tau_x, 400.0 if fast else 3000.0, dt=0.05 if fast else 0.5)
    sel = slice(10, None, 97)
    k = np.exp(log_kernel(t[sel], tau_m, tau_x))
    assert np.max(np.abs(k - u[sel]) / np.max(u)) < 1e-7


def test_the_kernel_is_finite_where_naive_forms_overflow_or_cancel():
    t = np.array([1.0, 100.0, 5000.0, 20000.0])
    assert np.isfinite(log_kernel(t, 4.0, 752.0)).all()  # exp(t / 4) would overflow
    a = log_kernel(t, 752.0, 752.0)
    b = log_kernel(t, 752.0 * (1 + 1e-12), 752.0)
    assert np.allclose(a, b, rtol=0, atol=1e-9)


def test_fit_membrane_recovers_tau_and_offsets():
    rng = np.random.default_rng(0)
    n = 64
    tau = np.stack([rng.uniform(700, 800, n), rng.uniform(3300, 3900, n)])
    d_t, d_r = rng.normal(0, 2, n), rng.normal(0, 2, n)
    xs = np.array([30, 120, 30, 60, 100], dtype=float)
    ys = np.array([500, 500, 250, 350, 250], dtype=float)
    group = np.array([0, 0, 0, 0, 1])
    x = np.repeat(xs[:, None], n, axis=1)
    y = np.repeat(ys[:, None], n, axis=1)
    isi = tau[group] * np.log((y - d_r) / (x - d_t))
    fit = fit_membrane(isi, x, y, group)
    assert np.allclose(fit.tau_m, tau, rtol=1e-9)
    assert np.allclose(fit.threshold, d_t, atol=1e-7) and np.allclose(fit.reset, d_r, atol=1e-7)
    isi[2, 5] = np.nan
    fit = fit_membrane(isi, x, y, group)
    assert np.isnan(fit.tau_m[:, 5]).all() and np.isfinite(fit.tau_m[:, 4]).all()


def _crossing(amp: np.ndarray, tau_m: np.ndarray, tau_x: np.ndarray, rising: bool) -> np.ndarray:
    """Crossing times of amp K(t) = 1 by bisection on the rising (first) or falling (last) side."""
    t = np.arange(1, 4000, 4, dtype=float)
    k = amp[..., None] * np.exp(log_kernel(t, tau_m[..., None], tau_x[..., None]))
    above = k >= 1
    out = np.full(amp.shape, np.nan)
    has = above.any(axis=-1)
    idx = np.argmax(above, axis=-1) if rising else above.shape[-1] - 1 - np.argmax(above[..., ::-1], axis=-1)
    lo = np.where(rising, t[np.maximum(idx - 1, 0)], t[idx])
    hi = np.where(rising, t[idx], t[np.minimum(idx + 1, len(t) - 1)])
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        val = amp * np.exp(log_kernel(mid, tau_m, tau_x))
        go_hi = (val >= 1) if rising else (val < 1)
        hi = np.where(go_hi, mid, hi)
        lo = np.where(go_hi, lo, mid)
    out[has] = 0.5 * (lo + hi)[has]
    return out


@pytest.mark.parametrize("rising", [True, False])
def test_fit_synaptic_recovers_tau_and_row_jumps_and_drops_an_outlier(rising):
    rng = np.random.default_rng(1)
    n, rows_n = 40, 8
    tau = rng.uniform(700, 800, n)
    tau_m = np.full(n, 3600.0) if rising else np.full(n, 4.0)
    level = rng.uniform(380, 420, n)
    jump = rng.uniform(300, 350, (rows_n, n))
    ks = np.array([11, 13, 16]) if rising else np.array([2, 3, 4])
    rows = np.repeat(np.arange(rows_n), len(ks))
    kk = np.tile(ks, rows_n)
    amp = kk[:, None] * jump[rows] / level[None, :]
    t = _crossing(amp, tau_m[None, :].repeat(len(rows), 0), tau[None, :].repeat(len(rows), 0), rising)
    assert np.isfinite(t).all()
    t_noisy = t + rng.normal(0, 0.3, t.shape)
    t_noisy[4, 3] *= 1.3  # one corrupted entry of neuron 3
    fit = fit_synaptic(t_noisy, rows, kk, level, tau_m, np.full(n, 752.0))
    assert np.max(np.abs(fit.tau / tau - 1)) < 3e-3
    assert np.max(np.abs(fit.jump / jump - 1)) < 3e-3
    assert fit.used[3] == len(rows) - 1 and fit.used[2] == len(rows)
    exact = fit_synaptic(t, rows, kk, level, tau_m, tau * 1.1)
    assert np.max(np.abs(exact.tau / tau - 1)) < 1e-6


def test_fit_synaptic_leaves_undetermined_neurons_nan():
    t = np.full((6, 3), 300.0)
    t[:, 1] = np.nan  # no spike at all
    t[[1, 2, 4, 5], 2] = np.nan  # only one k per row left
    fit = fit_synaptic(t, np.array([0, 0, 0, 1, 1, 1]), np.array([1, 2, 3, 1, 2, 3]), np.full(3, 100.0),
                       np.full(3, 752.0), np.full(3, 752.0))
    assert np.isfinite(fit.tau[0]) and np.isnan(fit.tau[1]) and np.isnan(fit.tau[2])
    assert np.isnan(fit.jump[:, 1]).all()


def test_leak_from_floored_relaxation():
    leak, depth, tau = 600.37, 499.6, 760.0
    ticks = np.arange(0, 2100, 4)
    v = leak - depth * np.exp(-(ticks - 1) / tau)
    samples = np.floor(v)
    samples[0] = 600  # before the reset
    est = leak_from_trace(samples, ticks, 1, depth, tau)
    assert abs(est - leak) < 0.03
    assert np.isnan(leak_from_trace(samples, ticks, 1, np.nan, tau))
    assert relaxation_interval(tau, 30.0, 500.0) == pytest.approx(tau * np.log(500 / 30))


def _rising_crossing(amplitude: np.ndarray, tau_m: np.ndarray, tau_e: np.ndarray) -> np.ndarray:
    """Earliest t with amplitude x K(t) = 1 (bisection on the rising side of the kernel), ticks."""
    peak = np.log(tau_m / tau_e) / (1 / tau_e - 1 / tau_m)
    lo, hi = np.full(np.shape(amplitude), 1e-6), np.broadcast_to(peak, np.shape(amplitude)).copy()
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        above = np.log(amplitude) + log_kernel(mid, tau_m, tau_e) >= 0
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return 0.5 * (lo + hi)


def test_fit_synapses_recovers_the_factors_and_drops_an_entry_with_a_lost_event():
    rng = np.random.default_rng(5)
    n, repeats, k, level = 512, 3, 4, 320.0
    tau_m = 3600 * (1 + 0.03 * rng.standard_normal(n))
    tau_e = 752 * (1 + 0.03 * rng.standard_normal(n))
    neuron_gain = 1 + 0.03 * rng.standard_normal(n)
    factor = np.exp(0.05 * rng.standard_normal((256, n)))  # (row, neuron)
    rows = np.repeat(np.arange(256), repeats)
    events = np.full(len(rows), k, dtype=float)
    events[7] = k - 1  # one event of entry 7 lost: every neuron sees 3/4 of the jump
    jump = 836.7 * neuron_gain[None, :] * factor[rows]
    noisy_level = level + rng.standard_normal((len(rows), n))  # 1-LSB threshold noise per entry and neuron
    t = np.round(_rising_crossing(events[:, None] * jump / noisy_level, tau_m[None, :], tau_e[None, :]))
    ref = np.arange(128)
    gain, stderr, dropped = fit_synapses(t, rows, np.full(n, level), k, tau_m, tau_e, ref)
    assert dropped == 1
    true = factor / factor[ref].mean(axis=0)
    true = true.reshape(256, 2, 256).transpose(1, 0, 2)
    resid = np.log(gain / true)
    assert resid.std() < 0.0035 and np.abs(resid).max() < 0.02
    # the standard error from the repeats' scatter is the real error (threshold noise 0.3 % / sqrt(3) + rounding)
    assert 0.7 < np.sqrt(np.mean(stderr**2)) / resid.std() < 1.4
    # the row with the lost event keeps its two sound entries
    assert np.abs(resid[:, 7 // repeats, :]).max() < 0.03
