"""Session on the ideal simulator agrees with the TTFS closed form (spike times in model units)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from itl_support import compiled_small, yinyang_like_inputs

from firstspike.runtime.session import Session, SessionError
from firstspike.runtime.ttfs.spiketime import first_spike_times
from firstspike.sim_device import SimBackend


def _closed_form(x: np.ndarray, w: np.ndarray, bias_time: float) -> np.ndarray:
    xb = np.concatenate([x, np.full((x.shape[0], 1), bias_time)], axis=1)
    return first_spike_times(torch.from_numpy(xb), torch.from_numpy(w)).numpy()


def test_layer_times_match_closed_form_on_ideal_sim():
    compiled = compiled_small(seed=1)
    session = Session(SimBackend(mismatch=False, noise=False), compiled)
    x = yinyang_like_inputs(200, seed=3)
    res = session.run(x, seed=0)
    assert [t.shape for t in res.layer_times] == [(200, 20), (200, 3)]
    wq = compiled.quantize(compiled.source.weights)
    # each layer against the closed form with the chip's quantised weights and the inputs the device received
    # (the bias spike is rounded to a tick too)
    bias_t = round(0.9 * compiled.tau_s_ticks) / compiled.tau_s_ticks
    ins = [res.input_times, res.layer_times[0]]
    for k in range(2):
        ref = _closed_form(ins[k], wq[k], bias_t)
        got = res.layer_times[k]
        both = np.isfinite(ref) & np.isfinite(got)
        agree_silent = np.mean(np.isfinite(ref) == np.isfinite(got))
        assert agree_silent >= 0.97, f"layer {k}: silent/spiking agreement {agree_silent:.3f}"
        err = np.abs(ref[both] - got[both])
        assert both.sum() > 50
        # tick resolution is 1/752 tau_s; the integer membrane adds a little
        assert np.median(err) < 0.01, f"layer {k}: median |dt| {np.median(err):.4f}"
        assert np.quantile(err, 0.95) < 0.03, f"layer {k}: 95th percentile |dt| {np.quantile(err, 0.95):.4f}"
    assert res.dropped == 0
    assert res.stats["spikes"] >= int(np.isfinite(res.layer_times[0]).sum())


def test_inputs_are_rounded_to_ticks_and_silent_inputs_stay_silent():
    compiled = compiled_small(seed=2)
    session = Session(SimBackend(mismatch=False, noise=False), compiled)
    x = yinyang_like_inputs(5, seed=1)
    x[0, :] = np.inf  # no input at all: only the bias spikes
    res = session.run(x)
    assert np.all(np.isinf(res.input_times[0]))
    ticks = res.input_times[1:] * compiled.tau_s_ticks
    assert np.allclose(ticks, np.rint(ticks))
    assert np.allclose(res.input_times[1:], x[1:], atol=0.5 / compiled.tau_s_ticks + 1e-12)


def test_run_window_covers_latest_input_plus_margin():
    compiled = compiled_small()
    session = Session(SimBackend(mismatch=False, noise=False), compiled, margin_tau=4.0)
    x = yinyang_like_inputs(3)
    res = session.run(x)
    latest = max(float(res.input_times.max()), 0.9)
    assert res.duration_ticks == int(np.ceil((latest + 4.0) * compiled.tau_s_ticks))
    fixed = Session(SimBackend(mismatch=False, noise=False), compiled, duration_ticks=5000)
    assert fixed.run(x).duration_ticks == 5000


def test_bad_input_shape_is_rejected_with_the_expected_shape():
    session = Session(SimBackend(mismatch=False, noise=False), compiled_small())
    with pytest.raises(SessionError, match=r"\(batch, 4\)"):
        session.run(np.zeros((3, 5)))
