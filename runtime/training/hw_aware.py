"""Hardware-aware training in software: a forward pass on a freshly sampled chip, from the distortions a device
publishes about itself (:class:`~firstspike.hal.noise_model.DeviceNoiseModel`), so that a network trained without
a chip is robust on one.

Each minibatch runs on a new virtual chip:

* the weights are quantised as the compiler would (per layer the automatic scale: the smallest step with max |w|
  at 63 steps, :func:`firstspike.compiler.quantize.choose_scale`), and the layer's threshold-leak span at that
  scale converts the device's LSB figures into model units;
* every synapse's weight is multiplied by its own factor (``synapse_fixed_rel``), every neuron's incoming
  weights by its gain factor (``gain_fixed_rel``);
* every neuron's threshold is offset by its fixed pattern (``threshold_fixed``) and by trial-to-trial noise
  (``threshold_trial``); a threshold theta is a division of the neuron's weights by theta (u = theta  <=>
  u / theta = 1). The trial-to-trial draw is one per neuron and minibatch, not per sample: the closed form takes
  one weight matrix per batch;
* every input event (data and bias spikes) is jittered (``input_jitter``) and lost with
  ``input_loss_probability``.

The first-spike times of that chip are handed to the model as measured times, exactly as a device in the loop
hands its own: the exact gradient is evaluated there with the float weights. Time-constant mismatch is not
sampled (the closed form needs tau_m / tau_s to be exactly 1 or 2); calibration brings it below 1 %
(docs/calibration.md).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from firstspike.compiler.quantize import choose_scale
from firstspike.hal import chip
from firstspike.hal.noise_model import DeviceNoiseModel, ModelNoise
from firstspike.runtime.ttfs.layers import TTFSLinear, TTFSNetwork
from firstspike.runtime.ttfs.spiketime import first_spike_times

__all__ = ["SampledChip", "noise_model_for"]


def noise_model_for(device: Any, calibration: Any = None) -> DeviceNoiseModel:
    """The noise model to train for: ``device`` is a :class:`DeviceNoiseModel` (used as is), a ``Backend`` or a URI
    (its published model). ``calibration`` (a file or a calibration result of that device): what remains of the
    model on a calibrated chip. Raises ValueError if the device publishes no noise model."""
    from firstspike.runtime.calibration import CalibrationResult, load_calibration
    from firstspike.runtime.calibration.noise import calibrated_noise_model, device_noise_model

    if isinstance(device, DeviceNoiseModel):
        model = device
    else:
        if isinstance(device, str):
            from firstspike.runtime.devices import open as open_device

            with open_device(device) as dev:
                info = dev.info()
        else:
            info = device.info()
        published = device_noise_model(info)
        if published is None:
            raise ValueError(f"device {getattr(info, 'model', device)!r} publishes no noise model "
                             "(DeviceInfo.extra['noise_model']); give one explicitly")
        model = published
    if calibration is not None:
        result = calibration if isinstance(calibration, CalibrationResult) else load_calibration(calibration)
        model = calibrated_noise_model(model, result)
    return model


class SampledChip(nn.Module):
    """``net`` as it runs on a random chip of the family ``noise`` describes (see the module docstring).

    ``forward(times)`` returns every layer's first-spike times (no gradient), like ``net``'s. ``generator``:
    where the chips come from; ``tau_s_ticks``: the compiled tau_s (the unit of the jitter).
    """

    def __init__(self, net: TTFSNetwork, noise: DeviceNoiseModel, generator: torch.Generator,
                 tau_s_ticks: float = float(chip.NOMINAL_TAU_S_TICKS)) -> None:
        super().__init__()
        self.net = net
        self.noise = noise
        self.generator = generator
        self.tau_s_ticks = float(tau_s_ticks)

    def _normal(self, shape: tuple[int, ...], std: float) -> torch.Tensor | None:
        if std <= 0:
            return None
        return torch.randn(shape, dtype=torch.float64, generator=self.generator).mul_(std)

    def _events(self, times: torch.Tensor, noise: ModelNoise) -> torch.Tensor:
        """Input events as the chip receives them: jittered (reflected at 0, as the data jitter is) and some lost."""
        t = times
        jitter = self._normal(tuple(t.shape), noise.input_jitter)
        if jitter is not None:
            t = (t + jitter).abs()
        if noise.input_loss_probability > 0:
            lost = torch.rand(tuple(t.shape), dtype=torch.float64, generator=self.generator)
            t = torch.where(lost < noise.input_loss_probability, torch.full_like(t, torch.inf), t)
        return t

    def _weights(self, weight: torch.Tensor, noise: ModelNoise, q: float) -> torch.Tensor:
        """A layer's weights on the sampled chip, thresholds folded in (u = theta <=> u / theta = 1). ``q``: the
        compiler's step for this chip's 6-bit weights, rescaled for a device of another resolution."""
        w_max = float(2 ** noise.weight_bits - 1)
        q = q * chip.WEIGHT_MAX / w_max
        w = torch.round(weight / q).clamp_(-w_max, w_max).mul_(q)
        n_in, n_out = w.shape
        syn = self._normal((n_in, n_out), noise.synapse_fixed)
        if syn is not None:
            w = w * (1.0 + syn)
        per_neuron = torch.ones(n_out, dtype=torch.float64)
        gain = self._normal((n_out,), noise.gain_fixed)
        if gain is not None:
            per_neuron = per_neuron * (1.0 + gain)
        theta = torch.ones(n_out, dtype=torch.float64)
        for std in (noise.threshold_fixed, noise.threshold_trial):
            d = self._normal((n_out,), std)
            if d is not None:
                theta = theta + d
        # a threshold at or below the leak fires at once; keep it physical (a small positive span)
        theta = theta.clamp_min_(0.05)
        return w * (per_neuron / theta)

    @torch.no_grad()
    def forward(self, input_times: torch.Tensor, measured_times: Any = None) -> list[torch.Tensor]:
        x = input_times.to(torch.float64)
        out: list[torch.Tensor] = []
        for k, module in enumerate(self.net.layers):
            layer = cast(TTFSLinear, module)
            weight = layer.weight.detach()
            finite = weight[torch.isfinite(weight)]
            scale = choose_scale(float(finite.abs().max()) if finite.numel() else 0.0)
            noise = self.noise.in_model_units(scale.span, self.tau_s_ticks)
            n_data = x.shape[1]
            x_chip = layer.with_bias(x)
            # the host's events (the data into layer 0, every layer's bias spike) are jittered and may be lost;
            # spikes routed between layers on the chip are not
            first = 0 if k == 0 else n_data
            if x_chip.shape[1] > first:
                x_chip = torch.cat([x_chip[:, :first], self._events(x_chip[:, first:], noise)], dim=1)
            x = first_spike_times(x_chip, self._weights(weight, noise, scale.q), layer.tau_ratio)
            out.append(x)
        return out
