"""In-the-loop training smoke tests: a tiny yin-yang run on the noisy simulator learns and writes its outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from firstspike.runtime.training.energy import EnergyModel, format_energy
from firstspike.runtime.training.forward import compile_for_device, fixed_weight_scales
from firstspike.runtime.training.presets import build_network, device_task, get_task
from firstspike.runtime.training.tasks import train_task
from firstspike.runtime.ttfs.export import to_network
from firstspike.sim_device import SimBackend


def test_two_epochs_on_the_noisy_sim_reduce_the_loss_and_write_the_outputs(tmp_path):
    metrics = train_task("yinyang", device=SimBackend(serial=1), epochs=2, seed=3, out_dir=tmp_path,
                         train_size=300, eval_size=100, progress=False, device_uri="sim://?serial=1", select="final")
    h = metrics["history"]
    assert metrics["mode"] == "in-the-loop" and metrics["epochs"] == 2 and metrics["selected_epoch"] == 2
    assert metrics["final_test_accuracy"] == metrics["test_accuracy"]
    assert all(math.isfinite(v) for v in h["train_loss"])
    assert h["train_loss"][1] < h["train_loss"][0]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    dev = metrics["device"]
    assert dev["headroom"] == 2.0  # yin-yang's default range: 2 x the largest initial |w| per layer
    assert dev["training"]["runs"] == 2 * 2  # two batches of 150 per epoch
    assert dev["training"]["spikes"] > 0 and dev["training"]["synaptic_events"] > 0
    assert dev["total"]["config_diffs"] >= 1
    assert dev["total"]["energy_per_sample_j"] > 0
    for name in ("model.pt", "metrics.json", "training.png", "network.fsn"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    from firstspike.runtime.ttfs.layers import TTFSNetwork

    model = TTFSNetwork.load(tmp_path / "model.pt")
    assert model.metadata["device_weight_scale"] == dev["weight_scales"]
    # weights stay within what the fixed scale represents
    for layer, lim in zip(model.layers, dev["max_abs_weight"], strict=True):
        assert float(layer.weight.detach().abs().max()) <= lim + 1e-12


def test_gradients_at_measured_times_are_finite_and_change_the_weights():
    from firstspike.runtime.session import Session
    from firstspike.runtime.training.loop import train_step
    from firstspike.runtime.training.presets import make_optimizer
    from firstspike.runtime.ttfs.loss import WeightBumper

    cfg = device_task("yinyang")
    net = build_network(cfg, torch.Generator().manual_seed(0))
    compiled = compile_for_device(net, fixed_weight_scales(net))
    session = Session(SimBackend(serial=2), compiled)
    session.update_weights([layer.weight for layer in net.layers])
    from firstspike.runtime.training.datasets import load_dataset

    data = load_dataset("yinyang", "train", size=150)
    res = session.run(data.times.numpy(), seed=11)
    before = [layer.weight.detach().clone() for layer in net.layers]
    opt, _ = make_optimizer(net, cfg)
    measured = [torch.from_numpy(t) for t in res.layer_times]
    # no bumping here: the gradient path itself
    loss, times, bumped = train_step(net, opt, None, torch.from_numpy(res.input_times), data.labels, cfg.loss(),
                                     measured_times=measured)
    assert bumped is None and loss is not None and math.isfinite(float(loss))
    assert all(torch.equal(t, m) for t, m in zip(times, measured, strict=True))  # the forward IS the measured times
    for layer, b in zip(net.layers, before, strict=True):
        assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
        assert not torch.equal(layer.weight.detach(), b)
    assert WeightBumper  # imported API exists


def test_fixed_weight_scales_and_device_task():
    net = build_network(get_task("yinyang"), torch.Generator().manual_seed(0))
    scales = fixed_weight_scales(net, headroom=2.0)
    for s, layer in zip(scales, net.layers, strict=True):
        assert s == pytest.approx(63 / (2.0 * float(layer.weight.detach().abs().max())))
    assert fixed_weight_scales(net, max_weights=[3.0, 6.3]) == pytest.approx((21.0, 10.0))
    with pytest.raises(ValueError, match="must be > 0"):
        fixed_weight_scales(net, max_weights=[0.0, 1.0])
    assert device_task("mnist16").layer_sizes == (246, 10)
    from firstspike.runtime.training.presets import DEFAULT_HEADROOM, DEVICE_HEADROOM

    assert DEVICE_HEADROOM.get("mnist16", DEFAULT_HEADROOM) == 1.5 and DEVICE_HEADROOM["yinyang"] == 2.0
    assert device_task("yinyang").layer_sizes == (120, 3)
    with pytest.raises(ValueError, match="layer sizes"):
        device_task("yinyang", layer_sizes=(10,))


def test_to_network_copies_weights_and_biases_exactly():
    net = build_network(get_task("yinyang"), torch.Generator().manual_seed(1))
    ir = to_network(net)
    assert ir.n_inputs == 4 and ir.name == "yinyang"
    for L, layer in zip(ir.layers, net.layers, strict=True):
        np.testing.assert_array_equal(L.weights, layer.weight.detach().numpy())
        assert L.bias_time == layer.bias_time and L.tau_ratio == layer.tau_ratio
    assert net.to_network() == ir  # the method on the model is the same conversion
    with pytest.raises(TypeError, match="TTFS network"):
        to_network(object())


def test_energy_model_terms_and_units():
    e = EnergyModel(synaptic_event_j=1e-12, spike_j=2e-12, static_w=0.5)
    est = e.estimate({"synaptic_events": 1000, "spikes": 10, "input_events": 5}, chip_seconds=2e-6, samples=2)
    assert est.synaptic_j == pytest.approx(1e-9)
    assert est.spike_j == pytest.approx(30e-12)
    assert est.static_j == pytest.approx(1e-6)
    assert est.per_sample_j == pytest.approx((1e-9 + 30e-12 + 1e-6) / 2)
    assert format_energy(33.7e-6) == "33.7 uJ" and format_energy(4.2e-9) == "4.2 nJ"
    with pytest.raises(ValueError, match="static_w"):
        EnergyModel(static_w=-1.0)


def test_weight_average_leaves_training_unchanged_and_is_what_gets_selected(tmp_path):
    from firstspike.runtime.ttfs.layers import TTFSNetwork

    common = dict(epochs=3, seed=4, train_size=300, eval_size=100, progress=False, select="final")
    plain = train_task("yinyang", device=SimBackend(serial=1), out_dir=tmp_path / "raw", **common)
    avg = train_task("yinyang", device=SimBackend(serial=1), ema=0.9, out_dir=tmp_path / "ema", **common)
    # the raw trajectory is the same run: same losses, same validation of the raw weights
    assert avg["history"]["train_loss"] == plain["history"]["train_loss"]
    assert avg["history"]["val_accuracy_raw"] == plain["history"]["val_accuracy"]
    assert avg["ema"] == 0.9 and plain["ema"] is None
    # what is kept is the average: not the raw final weights, and within the representable range
    model = TTFSNetwork.load(tmp_path / "ema" / "model.pt")
    raw = TTFSNetwork.load(tmp_path / "raw" / "model.pt")
    for a, r, lim in zip(model.layers, raw.layers, avg["device"]["max_abs_weight"], strict=True):
        assert not torch.equal(a.weight, r.weight)
        assert float(a.weight.detach().abs().max()) <= lim + 1e-12
    with pytest.raises(ValueError, match="ema"):
        train_task("yinyang", device=SimBackend(serial=1), ema=1.0, **common)
