"""Faithfulness: the ideal simulated chip agrees with the closed-form TTFS model (Göltz et al. 2021).

Random layered networks (tau_m = tau_s) are mapped with one fixed scale (firstspike.sim_device.examples.map_layered) and
run on ``sim://?ideal=1``; an independent float64 closed form (Lambert W by Halley's method, causal-set
search) predicts every neuron's first spike from the *realised* (6-bit) weights and the input ticks, with
times converted by the chip's actual tau (code 188 = 752 ticks, not the nominal 750). Criterion of issue 4:
fired/silent agreement >= 99 % of neurons and mean |t_device - t_model| < 1 % of tau_s.
"""

from __future__ import annotations

import numpy as np
import pytest

from firstspike.hal.backend import RunOptions
from firstspike.hal.calibration import tau_code_to_ticks
from firstspike.hal.events import InputSpikes
from firstspike.sim_device.backend import SimBackend
from firstspike.sim_device.examples import Scale, random_layered


def lambertw0(z: np.ndarray) -> np.ndarray:
    """Principal branch W0 on [-1/e, 0] by Halley's iteration from the branch-point series (float64)."""
    z = np.asarray(z, dtype=np.float64)
    p = np.sqrt(np.maximum(2.0 * (np.e * z + 1.0), 0.0))
    w = -1.0 + p - p * p / 3.0 + 11.0 / 72.0 * p**3
    w = np.where(z > -0.25, z * (1.0 - z), w)  # near 0: W(z) ~ z - z^2
    for _ in range(30):
        ew = np.exp(w)
        f = w * ew - z
        d = ew * (w + 1.0)
        step = f / np.where(d == 0.0, 1e-300, d - (w + 2.0) * f / (2.0 * w + 2.0 + 1e-300))
        w = np.maximum(w - step, -1.0)
    return w


def closed_form_layer(t_in: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(batch, n_out) first-spike times (units of tau, inf = silent) of LIF neurons with tau_m = tau_s,
    threshold 1, for input times ``t_in`` (batch, n_in; inf = no spike) and weights ``w`` (n_in, n_out)."""
    bsz = t_in.shape[0]
    out = np.full((bsz, w.shape[1]), np.inf)
    for b in range(bsz):
        order = np.argsort(t_in[b])
        ts = t_in[b, order]
        ok = np.isfinite(ts)
        ts, ws = ts[ok], w[order][ok]
        if not len(ts):
            continue
        shift = ts[0]
        x = ts - shift
        e = np.exp(x)
        a = np.cumsum(ws * e[:, None], axis=0)
        bb = np.cumsum(ws * (x * e)[:, None], axis=0)
        nxt = np.r_[x[1:], np.inf]
        done = np.zeros(w.shape[1], dtype=bool)
        for k in range(len(ts)):
            ak, bk = a[k], bb[k]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                z = -np.exp(bk / ak) / ak
                valid = (ak > 0) & (z >= -1.0 / np.e) & ~done
                cand = bk / ak - lambertw0(np.where(valid, z, -0.1))
            hit = valid & (cand >= x[k]) & (cand < nxt[k])
            out[b, hit] = cand[hit] + shift
            done |= hit
    return out


def run_case(seed: int, batch: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Device and closed-form first-spike times (units of tau) of all hidden and output neurons."""
    rng = np.random.default_rng(seed)
    scale = Scale()
    net = random_layered(rng, [8, 50, 10], [0.6, 0.3], [0.7, 0.7], scale=scale)
    tau = tau_code_to_ticks(scale.tau_code)  # 752 ticks: the chip's tau, not the nominal 750
    t_model = 0.1 + rng.random((batch, 8)) * 2.0
    t_model[rng.random((batch, 8)) < 0.15] = np.inf
    ticks = np.where(np.isfinite(t_model), np.rint(t_model * tau), -1)
    t_in = np.where(ticks >= 0, ticks / tau, np.inf)  # what the chip actually receives
    dev = SimBackend(mismatch=False, noise=False)
    dev.configure(net.config)
    res = dev.run(InputSpikes.from_times(ticks, net.input_channels), RunOptions(duration_ticks=int(7 * tau)))
    ids = np.concatenate(net.neurons)
    device = res.spikes.first_spike_model_times(ids, tau)
    hidden = closed_form_layer(t_in, net.weights[0])
    output = closed_form_layer(hidden, net.weights[1])
    model = np.concatenate([hidden, output], axis=1)
    model[model >= 7.0] = np.inf  # the run ends after 7 tau
    return device, model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ideal_chip_matches_closed_form(seed: int) -> None:
    device, model = run_case(seed)
    fired_d, fired_m = np.isfinite(device), np.isfinite(model)
    agreement = float((fired_d == fired_m).mean())
    both = fired_d & fired_m
    err = np.abs(device[both] - model[both])
    assert fired_m.mean() > 0.3 and (~fired_m).mean() > 0.05, "the random networks must have both outcomes"
    assert agreement >= 0.99, f"fired/silent agreement {agreement:.4f} < 0.99"
    assert err.mean() < 0.01, f"mean |dt| {err.mean():.5f} tau >= 1 % of tau_s"
    # the errors are small and not biased (time-stamping to the nearer tick, 1-tick routing delay only)
    assert abs(float(np.mean(device[both] - model[both]))) < 0.005


def test_lambertw0_is_accurate() -> None:
    z = np.linspace(-1 / np.e, 0.0, 2001)
    w = lambertw0(z)
    assert np.max(np.abs(w * np.exp(w) - z)) < 1e-12
    assert np.all(w >= -1.0)
