"""Hardware-aware training: virtual chips sampled from a device's published noise model, and the one loop
training on them."""

from __future__ import annotations

import math

import pytest
import torch

import firstspike as fs
from firstspike.compiler.quantize import choose_scale
from firstspike.hal.noise_model import DeviceNoiseModel
from firstspike.runtime.cli import main
from firstspike.runtime.training.hw_aware import SampledChip
from firstspike.runtime.ttfs.spiketime import first_spike_times


def _net(seed: int = 0) -> fs.TTFSNetwork:
    return fs.TTFSNetwork(4, [12, 3], bias_times=[0.9, 0.9], weight_means=[1.5, 0.5], weight_stds=[0.8, 0.8],
                          seed=seed)


def _inputs(n: int = 40, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.15 + 1.85 * torch.rand(n, 4, dtype=torch.float64, generator=g)


def test_a_noise_free_chip_is_the_model_with_quantised_weights():
    net = _net()
    x = _inputs()
    chip = SampledChip(net, DeviceNoiseModel(weight_bits=6), torch.Generator().manual_seed(0))
    got = chip(x)
    h = x
    for layer, t in zip(net.layers, got, strict=True):
        w = layer.weight.detach()
        q = choose_scale(float(w.abs().max())).q
        expect = first_spike_times(layer.with_bias(h), torch.round(w / q).clamp(-63, 63) * q)
        torch.testing.assert_close(t, expect, rtol=0, atol=0)
        h = t
    # with 32-bit weights the chip is the model itself, up to rounding
    fine = SampledChip(net, DeviceNoiseModel(weight_bits=32), torch.Generator().manual_seed(0))(x)
    with torch.no_grad():
        exact = net(x)
    for a, b in zip(fine, exact, strict=True):
        assert torch.equal(torch.isfinite(a), torch.isfinite(b))
        torch.testing.assert_close(a[torch.isfinite(a)], b[torch.isfinite(b)], rtol=0, atol=1e-6)


def test_a_sampled_threshold_is_the_closed_form_with_that_threshold():
    """The chip folds a neuron's threshold theta into its weights (u = theta <=> u / theta = 1): check against
    first_spike_times with the threshold itself, neuron by neuron, for the draw the chip made."""
    net = fs.TTFSNetwork(4, [6], bias_times=[0.9], weight_means=[1.5], weight_stds=[0.8], seed=3)
    x = _inputs(25, 4)
    noise = DeviceNoiseModel(weight_bits=32, threshold_fixed_lsb=30.0, threshold_trial_lsb=10.0)
    got = SampledChip(net, noise, torch.Generator().manual_seed(5))(x)[0]
    # replay the chip's draws: weights need no quantisation at 32 bits; then two normals per neuron
    w = net.layers[0].weight.detach()
    span = choose_scale(float(w.abs().max())).span
    model = noise.in_model_units(span, 750.0)
    g = torch.Generator().manual_seed(5)
    theta = 1.0 + torch.randn(6, dtype=torch.float64, generator=g) * model.threshold_fixed
    theta = theta + torch.randn(6, dtype=torch.float64, generator=g) * model.threshold_trial
    xb = net.layers[0].with_bias(x)
    assert float((theta - 1).abs().max()) > 0.02  # the draw is not negligible
    for n in range(6):
        expect = first_spike_times(xb, w[:, n : n + 1], threshold=float(theta[n]))[:, 0]
        finite = torch.isfinite(expect)
        assert torch.equal(finite, torch.isfinite(got[:, n]))
        torch.testing.assert_close(got[finite, n], expect[finite], rtol=1e-9, atol=1e-6)


def test_inputs_are_jittered_and_lost_but_on_chip_spikes_are_not():
    net = _net()
    x = _inputs(200, 2)
    lossy = DeviceNoiseModel(weight_bits=32, input_loss_probability=1.0)
    out = SampledChip(net, lossy, torch.Generator().manual_seed(0))(x)
    assert not torch.isfinite(out[0]).any()  # every input event lost: nothing fires
    jitter = DeviceNoiseModel(weight_bits=32, input_jitter_ticks=75.0)  # 0.1 tau_s at 750 ticks
    a = SampledChip(net, jitter, torch.Generator().manual_seed(0))(x)
    b = SampledChip(net, DeviceNoiseModel(weight_bits=32), torch.Generator().manual_seed(0))(x)
    both = torch.isfinite(a[0]) & torch.isfinite(b[0])
    shift = (a[0][both] - b[0][both]).abs()
    assert 0.005 < float(shift.mean()) < 0.5


def test_fit_trains_on_virtual_chips_of_the_simulators_published_model():
    noise = fs.noise_model("sim://")
    assert noise.weight_bits == 6 and noise.threshold_fixed_lsb > 0 and noise.synapse_fixed_rel > 0
    data = fs.load_dataset("yinyang", "train", size=600)
    val = fs.load_dataset("yinyang", "val", size=200)
    quiet = {"progress": False, "log": lambda _: None}
    h = fs.fit(_net(), data, val, epochs=4, hw_aware=noise, seed=1, **quiet)
    again = fs.fit(_net(), data, val, epochs=4, hw_aware=noise, seed=1, **quiet)
    assert h["train_loss"] == again["train_loss"]  # the chips come from the seed: reproducible
    plain = fs.fit(_net(), data, val, epochs=4, seed=1, **quiet)
    assert h["train_loss"] != plain["train_loss"]
    losses = [v for v in h["train_loss"] if math.isfinite(v)]
    assert len(losses) >= 2 and losses[-1] < losses[0]  # it learns on the virtual chips
    assert h.val is not None and all(math.isfinite(v) for v in h["val_accuracy"])
    with pytest.raises(ValueError, match="give one of them"):
        fs.fit(_net(), data, val, epochs=1, hw_aware=noise, device="sim://", **quiet)
    with pytest.raises(TypeError, match="DeviceNoiseModel"):
        fs.fit(_net(), data, val, epochs=1, hw_aware="sim://", **quiet)


def test_the_train_command_refuses_contradictory_options(capsys):
    assert main(["train", "yinyang", "--hw-aware", "sim://", "--device", "sim://", "--epochs", "1"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main(["train", "yinyang", "--calibration", "x.fscal", "--epochs", "1"]) == 2
    assert "--calibration applies to a device" in capsys.readouterr().err
