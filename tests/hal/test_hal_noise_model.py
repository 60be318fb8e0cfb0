"""hal.DeviceNoiseModel: the published form round-trips, malformed input is refused by name, model units."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.hal.noise_model import NOISE_MODEL_FORMAT, NOISE_MODEL_KEY, DeviceNoiseModel

_finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=80, deadline=None)
@given(bits=st.integers(1, 32), values=st.lists(_finite, min_size=8, max_size=8), loss=st.floats(0, 1))
def test_the_published_form_round_trips(bits, values, loss):
    names = ["tau_fixed_rel", "gain_fixed_rel", "synapse_fixed_rel", "leak_fixed_lsb", "threshold_fixed_lsb",
             "reset_fixed_lsb", "threshold_trial_lsb", "input_jitter_ticks"]
    m = DeviceNoiseModel(weight_bits=bits, input_loss_probability=loss, **dict(zip(names, values, strict=True)))
    d = m.to_dict()
    assert d["format"] == NOISE_MODEL_FORMAT
    assert DeviceNoiseModel.from_dict(d) == m
    assert DeviceNoiseModel.from_extra({NOISE_MODEL_KEY: d}) == m


@settings(max_examples=80, deadline=None)
@given(key=st.sampled_from(["weight_bits", "tau_fixed_rel", "input_loss_probability", "threshold_trial_lsb"]),
       value=st.one_of(st.just(-1), st.just(float("nan")), st.just(float("inf")), st.just("1"), st.just(True),
                       st.just(None), st.just(2.5e9), st.just(33)))
def test_malformed_fields_are_refused_by_name(key, value):
    d = DeviceNoiseModel(weight_bits=6, tau_fixed_rel=0.03).to_dict()
    d[key] = value
    if key != "weight_bits" and value in (2.5e9, 33) and key != "input_loss_probability":
        DeviceNoiseModel.from_dict(d)  # large but valid standard deviations
        return
    with pytest.raises(ValueError, match=key):
        DeviceNoiseModel.from_dict(d)


@pytest.mark.parametrize("bad", [None, [], "x", {"weight_bits": 6}, {"format": "other", "weight_bits": 6},
                                 {"format": NOISE_MODEL_FORMAT}, {"format": NOISE_MODEL_FORMAT, "weight_bits": 6,
                                                                  "colour": 1}])
def test_malformed_objects_are_refused(bad):
    with pytest.raises(ValueError, match="noise model"):
        DeviceNoiseModel.from_dict(bad)


def test_no_model_published_is_none():
    assert DeviceNoiseModel.from_extra({"mismatch": True}) is None


def test_model_units_at_an_operating_point():
    m = DeviceNoiseModel(weight_bits=6, tau_fixed_rel=0.03, gain_fixed_rel=0.03, synapse_fixed_rel=0.05,
                         leak_fixed_lsb=2, threshold_fixed_lsb=2, reset_fixed_lsb=2, threshold_trial_lsb=1,
                         input_jitter_ticks=2, input_loss_probability=2**-12)
    u = m.in_model_units(span_lsb=300, tau_s_ticks=752)
    assert u.threshold_fixed == pytest.approx(math.hypot(2, 2) / 300)
    assert u.threshold_trial == pytest.approx(1 / 300)
    assert u.input_jitter == pytest.approx(2 / 752)
    assert (u.tau_fixed, u.gain_fixed, u.synapse_fixed, u.weight_bits) == (0.03, 0.03, 0.05, 6)
    assert not m.noise_free and m.without_fixed_pattern().tau_fixed_rel == 0
    with pytest.raises(ValueError):
        m.in_model_units(0, 752)
