"""A network split into two chip configurations runs stage by stage and still matches the TTFS closed form."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from itl_support import SpyBackend, yinyang_like_inputs

from firstspike.compiler import CompileOptions, Layer, Network, compile
from firstspike.hal.config import ConfigDiff
from firstspike.runtime.session import Session
from firstspike.runtime.ttfs.spiketime import first_spike_times
from firstspike.sim_device import SimBackend


def _net(seed: int = 0) -> Network:
    g = torch.Generator().manual_seed(seed)
    w1 = (torch.randn(5, 200, generator=g, dtype=torch.float64) * 0.8 + 1.5).numpy()
    w2 = (torch.randn(200, 200, generator=g, dtype=torch.float64) * 0.2 + 0.12).numpy()
    w3 = (torch.randn(200, 3, generator=g, dtype=torch.float64) * 0.2 + 0.12).numpy()
    return Network(4, (Layer(w1, bias_time=0.9), Layer(w2), Layer(w3)), "three")


def test_two_stage_network_runs_stage_by_stage_and_matches_the_closed_form():
    compiled = compile(_net(), CompileOptions(weight_scale=(12.0, 40.0, 40.0)))
    assert compiled.n_stages == 2  # 200 + 2 x 200 merged circuits do not fit 512
    spy = SpyBackend(SimBackend(mismatch=False, noise=False))
    session = Session(spy, compiled)
    x = yinyang_like_inputs(60, seed=5)
    res = session.run(x)
    assert len(res.stage_events) == 2 and len(spy.runs) == 2
    wq = compiled.quantize(compiled.source.weights)
    bias_t = round(0.9 * compiled.tau_s_ticks) / compiled.tau_s_ticks
    ins = [np.concatenate([res.input_times, np.full((60, 1), bias_t)], axis=1), res.layer_times[0],
           res.layer_times[1]]
    for k in range(3):
        ref = first_spike_times(torch.from_numpy(ins[k]), torch.from_numpy(wq[k])).numpy()
        got = res.layer_times[k]
        assert np.mean(np.isfinite(ref) == np.isfinite(got)) >= 0.97, k
        both = np.isfinite(ref) & np.isfinite(got)
        assert both.sum() > 30, k
        assert np.median(np.abs(ref[both] - got[both])) < 0.01, k
    # weight updates of a split network: the loaded stage gets a diff now, the other one when it is loaded
    w = [np.array(a) * 1.1 for a in compiled.source.weights]
    n_before = len(spy.configs)
    session.update_weights(w)
    session.run(x[:5])
    sent = spy.configs[n_before:]
    assert sent and all(isinstance(c, ConfigDiff) for c in sent)
    for held, want in zip(session.stage_configs, compiled.update_stage_weights(w), strict=True):
        assert held == want
