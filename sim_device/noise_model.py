"""The simulated chip's published noise model (``DeviceInfo.extra["noise_model"]``), derived from the magnitudes
of the analog model (:mod:`firstspike.sim_device.analog`, docs/device-spec.md section 6), not restated."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from firstspike.hal import chip
from firstspike.hal.noise_model import DeviceNoiseModel
from firstspike.sim_device import analog
from firstspike.sim_device.spec import FACTOR_ONE, V_ONE

__all__ = ["published_noise_model", "published_noise_model_dict"]


def published_noise_model_dict(mismatch: bool, noise: bool) -> dict[str, Any]:
    """:func:`published_noise_model` in its published (JSON) form, a fresh copy (the model is built once per switch
    setting: ``info()`` runs on every ``run()``)."""
    return dict(_published_dict(bool(mismatch), bool(noise)))


@lru_cache(maxsize=4)
def _published_dict(mismatch: bool, noise: bool) -> dict[str, Any]:
    return published_noise_model(mismatch, noise).to_dict()


def published_noise_model(mismatch: bool, noise: bool) -> DeviceNoiseModel:
    """What ``sim://`` documents: the fixed pattern if ``mismatch``, the per-run noise if ``noise`` (standard
    deviations as specified; the integer normal variate's own standard deviation is 0.9995 of them)."""
    fixed = {
        "tau_fixed_rel": analog.SIGMA_TAU_Q16 / FACTOR_ONE,
        "gain_fixed_rel": analog.SIGMA_GAIN_Q16 / FACTOR_ONE,
        "synapse_fixed_rel": analog.SIGMA_SYNAPSE_Q16 / FACTOR_ONE,
        "leak_fixed_lsb": analog.SIGMA_LEAK_Q12 / V_ONE,
        "threshold_fixed_lsb": analog.SIGMA_THRESHOLD_Q12 / V_ONE,
        "reset_fixed_lsb": analog.SIGMA_RESET_Q12 / V_ONE,
    } if mismatch else {}
    trial = {
        "threshold_trial_lsb": analog.SIGMA_NOISE_THRESHOLD_Q12 / V_ONE,
        "input_jitter_ticks": float(analog.SIGMA_JITTER_TICKS),
        "input_loss_probability": 2.0 ** -analog.LOSS_BITS,
    } if noise else {}
    return DeviceNoiseModel(weight_bits=chip.WEIGHT_BITS, **fixed, **trial)
