"""Axonal delays on the chip, end to end: a model with delays compiled onto the route delay lines runs on the ideal
simulated chip as the software model says; sessions send weight and delay changes as one diff; training in the loop
moves the delays and leaves the device holding exactly the quantised model delays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import firstspike as fs
from firstspike.runtime.training.datasets import load_dataset
from firstspike.runtime.ttfs.layers import TTFSNetwork

QUIET = {"progress": False, "log": lambda _: None}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def delay_net(tau_ratio: int, seed: int = 1, scale: float = 2.0) -> TTFSNetwork:
    """4 -> 30 -> 3 with axonal delays around scale / 2 tau_s (up to ~scale)."""
    bias = (0.9, 0.9) if tau_ratio == 1 else (None, None)
    means, stds = ((1.5, 0.5), (0.8, 0.8)) if tau_ratio == 1 else ((2.0, 2.0), (2.0, 2.0))
    return TTFSNetwork(4, (30, 3), bias, tau_ratio=tau_ratio, weight_means=means, weight_stds=stds,
                       generator=torch.Generator().manual_seed(seed), delays="axonal", delay_max=4.0,
                       delay_init_scale=scale, delay_init_std=1.0)


def software_times(model: TTFSNetwork, compiled: fs.CompiledNetwork, x: np.ndarray,
                   delays: list[np.ndarray] | None) -> list[np.ndarray]:
    """The model's times with the chip's (quantised) weights and the given delays (None: no delays)."""
    ref = TTFSNetwork.from_dict(model.to_dict())
    with torch.no_grad():
        for k, (layer, w) in enumerate(zip(ref.layers, compiled.quantize(model.weights()), strict=True)):
            layer.weight.copy_(torch.from_numpy(w))
            layer.delay.copy_(torch.from_numpy(delays[k]) if delays is not None else torch.zeros_like(layer.delay))
        return [t.numpy() for t in ref(torch.from_numpy(x))]


@pytest.mark.parametrize("tau_ratio", [1, 2])
def test_axonal_delays_on_the_ideal_chip_match_the_software_model(tau_ratio: int) -> None:
    """The faithfulness criterion of the weights (fired/silent >= 99 %, mean |dt| < 1 % tau_s), per layer."""
    model = delay_net(tau_ratio)
    x = load_dataset("yinyang", "test").subset(200).times.numpy()
    compiled = fs.compile(model)
    assert compiled.config.routing.delayed
    with fs.open_device("sim://?ideal=1") as chip:
        res = fs.Session(chip, compiled).run(x)
    realised = compiled.realised_delays()
    with_delays = software_times(model, compiled, res.input_times, realised)
    without = software_times(model, compiled, res.input_times, None)
    for k, (dev, sw) in enumerate(zip(res.layer_times, with_delays, strict=True)):
        assert not np.isnan(dev).any()
        agree = np.mean(np.isfinite(dev) == np.isfinite(sw))
        both = np.isfinite(dev) & np.isfinite(sw)
        assert agree >= 0.99 and both.mean() > 0.5, (k, agree, both.mean())
        assert np.abs(dev[both] - sw[both]).mean() < 0.01, k
    # the delays matter: without them the output layer is far off (the check above could not pass by accident)
    both = np.isfinite(res.layer_times[1]) & np.isfinite(without[1])
    assert np.abs(res.layer_times[1][both] - without[1][both]).mean() > 0.3


def test_a_session_sends_weight_and_delay_changes_as_one_diff() -> None:
    model = delay_net(1, seed=2)
    compiled = fs.compile(model)
    x = load_dataset("yinyang", "test").subset(50).times.numpy()
    with fs.open_device("sim://?ideal=1") as chip:
        session = fs.Session(chip, compiled)
        before = session.run(x)
        delays = [d.detach().numpy().copy() for d in model.delays()]
        delays[1][:] += 0.5  # every source of the output layer half a tau_s later
        diff = session.update_parameters(model.weights(), delays)
        assert diff is not None and session.uploads.full_configs == 1 and session.uploads.diffs == 1
        # only routes changed (the weights are the same): one entry per route of the output layer
        n_routes = int(np.count_nonzero(session.stage_configs[0].routing.routes["delay"]
                                        != compiled.config.routing.routes["delay"]))
        assert diff.changed_entries() == n_routes > 0
        held = chip.mirror.config
        assert held is not None and np.array_equal(held.routing.routes["delay"],
                                                   session.stage_configs[0].routing.routes["delay"])
        for got, d in zip(session.quantized_delays(), delays, strict=True):
            assert np.array_equal(got, np.rint(d * compiled.tau_s_ticks / 8) * 8 / compiled.tau_s_ticks)
        after = session.run(x)
        assert session.update_weights(model.weights()) is not None  # weights alone keep the delays
        assert np.array_equal(session.stage_configs[0].routing.routes["delay"], held.routing.routes["delay"])
    # the output layer now fires about half a tau_s later; the hidden layer is untouched
    assert np.array_equal(before.layer_times[0], after.layer_times[0])
    both = np.isfinite(before.layer_times[1]) & np.isfinite(after.layer_times[1])
    assert 0.4 < np.mean(after.layer_times[1][both] - before.layer_times[1][both]) < 0.6


def test_training_axonal_delays_in_the_loop_learns_and_the_device_holds_the_model_delays() -> None:
    train = load_dataset("yinyang", "train").subset(300)
    val = load_dataset("yinyang", "val").subset(150)
    model = delay_net(2, seed=3, scale=1.0)
    start = [d.detach().clone() for d in model.delays()]
    with fs.open_device("sim://") as chip:
        h = fs.fit(model, train, val, epochs=4, device=chip, lr=0.01, delay_lr=0.005, batch_size=50,
                   select="final", **QUIET)
        session = h.session
        assert session is not None
        held = chip.mirror.config
        assert held is not None and held.routing.delayed
        tau = session.compiled.tau_s_ticks
        for got, d in zip(session.compiled.realised_delays([held]), model.delays(), strict=True):
            want = np.rint(d.detach().numpy() * tau / 8) * 8 / tau
            assert np.array_equal(got, want)
    assert h.val is not None and h.val.accuracy > 0.5  # chance is 1/3
    moved = [float((d.detach() - s).abs().max()) for d, s in zip(model.delays(), start, strict=True)]
    assert min(moved) > 8 / tau  # every layer's delays moved by more than one delay-line step
    assert h.device is not None and h.device["delay_step"] == 8 / tau
    stats = h.device_stats["total"]
    assert stats.config_diffs >= 4 * 6  # one diff per step (6 steps per epoch), weights and delays together
