"""sim:// publishes its noise model, derived from the analog model's magnitudes and its switches."""

from __future__ import annotations

import pytest

from firstspike.hal.noise_model import DeviceNoiseModel
from firstspike.runtime import open as open_device
from firstspike.sim_device import analog


def _published(uri: str) -> DeviceNoiseModel:
    with open_device(uri) as dev:
        m = DeviceNoiseModel.from_extra(dev.info().extra)
    assert m is not None
    return m


def test_the_realistic_chip_publishes_the_analog_models_magnitudes():
    m = _published("sim://?serial=4")
    assert m.weight_bits == 6
    assert m.tau_fixed_rel == pytest.approx(analog.SIGMA_TAU_Q16 / 65536)
    assert m.synapse_fixed_rel == pytest.approx(analog.SIGMA_SYNAPSE_Q16 / 65536)
    assert (m.leak_fixed_lsb, m.threshold_fixed_lsb, m.reset_fixed_lsb) == (2.0, 2.0, 2.0)
    assert (m.threshold_trial_lsb, m.input_jitter_ticks) == (1.0, float(analog.SIGMA_JITTER_TICKS))
    assert m.input_loss_probability == 2.0 ** -analog.LOSS_BITS


def test_the_switches_switch_the_published_parts():
    assert _published("sim://?ideal=1").noise_free
    no_mismatch = _published("sim://?mismatch=0")
    assert no_mismatch.tau_fixed_rel == 0 and no_mismatch.synapse_fixed_rel == 0 and no_mismatch.input_jitter_ticks > 0
    no_noise = _published("sim://?noise=0")
    assert no_noise.threshold_trial_lsb == 0 and no_noise.input_loss_probability == 0 and no_noise.tau_fixed_rel > 0
