"""Reading a device's published noise model (:mod:`firstspike.hal.noise_model`), and what remains of it on a
calibrated chip: the per-neuron fixed pattern shrinks to the calibration's measured residual, the per-synapse
pattern to the measurement error of the synapse factors when the calibration corrects the synapses (else it stays),
the trial-to-trial noise stays."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from firstspike.hal.backend import Backend, DeviceInfo
from firstspike.hal.noise_model import NOISE_MODEL_KEY, DeviceNoiseModel
from firstspike.runtime.calibration.result import CalibrationResult
from firstspike.runtime.calibration.search import TARGETS

__all__ = ["NOISE_MODEL_KEY", "calibrated_noise_model", "device_noise_model"]


def device_noise_model(device: Backend | DeviceInfo) -> DeviceNoiseModel | None:
    """The noise model ``device`` publishes in ``info().extra["noise_model"]`` (None if it publishes none).
    Raises ValueError (naming the field) if the published model is malformed."""
    info = device.info() if isinstance(device, Backend) else device
    return DeviceNoiseModel.from_extra(info.extra)


def _std(a: np.ndarray) -> float:
    ok = np.asarray(a, dtype=np.float64)
    ok = ok[np.isfinite(ok)]
    return float(ok.std()) if ok.size else float("nan")


def calibrated_noise_model(model: DeviceNoiseModel, result: CalibrationResult) -> DeviceNoiseModel:
    """``model`` on the chip ``result`` calibrated: the neurons' time constants, gains and voltage offsets spread
    only as much as the calibration's verification measured (its ``after``; measurement noise included, so an
    upper bound); the synapses' own mismatch as published, or, when the calibration carries per-synapse factors
    (which the compiler divides out of every weight), their measured standard error; the weight resolution and the
    per-run noise as published. Without a verification round the published neuron fixed pattern is kept."""
    residual = result.synapse_residual_rel
    synapse = model.synapse_fixed_rel if residual is None else min(residual, model.synapse_fixed_rel)
    after = result.after
    if not after:
        return replace(model, synapse_fixed_rel=synapse)
    taus = [np.asarray(after[k]) / TARGETS[k] - 1 for k in ("tau_mem", "tau_syn_exc", "tau_syn_inh") if k in after]
    tau = _std(np.concatenate(taus)) if taus else model.tau_fixed_rel
    gains = [np.asarray(after[k]) - 1 for k in ("gain_exc", "gain_inh") if k in after]
    gain = _std(np.concatenate(gains)) if gains else model.gain_fixed_rel
    span = _std(after["span_error"]) if "span_error" in after else float("nan")
    reset = _std(after["reset_error"]) if "reset_error" in after else float("nan")

    def keep(value: float, fallback: float) -> float:
        return value if np.isfinite(value) else fallback

    return DeviceNoiseModel(
        weight_bits=model.weight_bits,
        tau_fixed_rel=keep(tau, model.tau_fixed_rel),
        gain_fixed_rel=keep(gain, model.gain_fixed_rel),
        synapse_fixed_rel=synapse,
        # the spans are measured relative to the leak: their spread is the threshold's; the leak's own only
        # moves the rails
        leak_fixed_lsb=0.0,
        threshold_fixed_lsb=keep(span, float(np.hypot(model.threshold_fixed_lsb, model.leak_fixed_lsb))),
        reset_fixed_lsb=keep(reset, float(np.hypot(model.reset_fixed_lsb, model.leak_fixed_lsb))),
        threshold_trial_lsb=model.threshold_trial_lsb,
        input_jitter_ticks=model.input_jitter_ticks,
        input_loss_probability=model.input_loss_probability,
    )
