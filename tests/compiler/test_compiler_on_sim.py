"""End to end: a compiled network on the reference simulator (ideal chip) fires when the TTFS math says,
given the quantised weights: placement, labels, routes, bias channels, merged columns and the neuron codes
compose to the intended network (within the simulator's tick rounding)."""

import numpy as np
import pytest
import torch

from firstspike.compiler import Layer, Network, compile
from firstspike.runtime import ttfs
from firstspike.sim_device import analog, reference
from firstspike.sim_device import model as model_mod


def _chip_first_spikes(c, times, channels, duration_tau=10.0):
    dm = model_mod.build_model(c.config, analog.Mismatch.ideal())
    tt = np.rint(np.asarray(times) * c.tau_s_ticks).astype(np.int64)
    order = np.argsort(tt, kind="stable")
    res = reference.ReferenceEntry(dm, dm.theta, int(duration_tau * c.tau_s_ticks)).run(
        tt[order], np.asarray(channels)[order]
    )
    first: dict[int, int] = {}
    for t, n in res.spikes:
        first.setdefault(n, t)
    return [np.array([first.get(int(n), np.inf) for n in ids]) / c.tau_s_ticks for ids in c.output_neuron_ids]


@pytest.mark.parametrize("tau_ratio", [1, 2])
def test_yinyang_on_the_reference_simulator_matches_the_ttfs_math(tau_ratio):
    rng = np.random.default_rng(tau_ratio)
    net = Network(4, (Layer(rng.normal(1.5, 0.8, (5, 30)), bias_time=0.9, tau_ratio=tau_ratio),
                      Layer(rng.normal(0.5, 0.8, (31, 3)), bias_time=0.9, tau_ratio=tau_ratio)))
    c = compile(net)
    wq = [torch.tensor(w) for w in c.quantize(net.weights)]
    x = rng.random(2)
    t_in = 0.15 + np.array([x[0], x[1], 1 - x[0], 1 - x[1]]) * 1.85
    hid = ttfs.first_spike_times(torch.tensor(np.append(t_in, 0.9))[None], wq[0], tau_ratio=tau_ratio)
    out = ttfs.first_spike_times(torch.cat([hid, torch.tensor([[0.9]])], 1), wq[1], tau_ratio=tau_ratio)
    (ch_b0, tb0), (ch_b1, tb1) = c.bias_inputs
    chip_hid, chip_out = _chip_first_spikes(c, [*t_in, tb0, tb1], [*c.input_channels, ch_b0, ch_b1])
    for model_t, chip_t in ((hid.numpy()[0], chip_hid), (out.numpy()[0], chip_out)):
        assert np.array_equal(np.isinf(model_t), np.isinf(chip_t))
        fin = np.isfinite(model_t)
        assert fin.any()
        # a few ticks of rounding per layer (input times and events land on whole ticks)
        assert np.max(np.abs(model_t[fin] - chip_t[fin])) < 4 / c.tau_s_ticks
