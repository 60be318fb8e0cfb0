"""Quantisation: scale choice uses the range, fixed scales are met, codes follow the calibration."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.compiler import compile
from firstspike.compiler.quantize import MAX_ABS_WEIGHT, Q_MIN, choose_scale, digitize, neuron_codes, tau_codes
from firstspike.hal import calibration, chip


@settings(max_examples=200, deadline=None)
@given(st.floats(63 * Q_MIN * 1.01, MAX_ABS_WEIGHT))
def test_auto_scale_never_clips_and_uses_the_range(max_abs):
    s = choose_scale(max_abs)
    assert s.q == calibration.model_weight_per_lsb(s.gain, s.threshold, s.leak)
    assert 1 <= s.gain <= chip.PARAM_MAX and 0 <= s.leak < s.threshold <= chip.PARAM_MAX
    steps = max_abs / s.q
    assert steps <= chip.WEIGHT_MAX + 1e-9  # no clipping
    assert steps >= 61.0  # the largest weight lands near 63


def test_fixed_scale_of_the_reference_is_exact():
    s = choose_scale(5.0, weight_scale=30.0)
    assert s.q == 1 / 30 and s.fixed and s.gain == 640 and s.span == 300


def test_out_of_range_requests_raise():
    with pytest.raises(ValueError):
        choose_scale(MAX_ABS_WEIGHT * 1.1)
    with pytest.raises(ValueError):
        choose_scale(1.0, weight_scale=0.5)


def test_digitize_rounds_magnitudes_onto_the_sign_row_and_clips():
    q = 0.1
    d, neg = digitize(np.array([0.0, 0.04, 0.06, -0.26, 7.0, -100.0]), q)
    assert d.tolist() == [0, 0, 1, 3, 63, 63] and neg.tolist() == [False, False, False, True, False, True]


def test_time_constants_and_neuron_codes():
    assert tau_codes(750, 1.0) == (188, 188) and calibration.tau_code_to_ticks(188) == 752
    assert tau_codes(750, 2.0) == (188, 376)
    s = choose_scale(2.0)
    c = neuron_codes(s, 2.0, 0.999, 750)
    assert c.reset < c.threshold and c.refractory == chip.REFRACTORY_MAX and c.gain == s.gain
    c = neuron_codes(s, 1.0, -1.0, 750)
    assert c.reset == s.leak - s.span >= 0


def test_report_counts_clipping_and_errors(yinyang_net):
    c = compile(yinyang_net, weight_scale=30.0)
    assert c.tau_s_ticks == 752.0
    for L, r in zip(yinyang_net.layers, c.quantization, strict=True):
        wq = c.quantize([x.weights for x in yinyang_net.layers])[r.layer]
        err = np.abs(L.weights - wq)
        assert r.max_abs_error == err.max() and r.mean_abs_error == pytest.approx(err.mean())
        assert r.clipped == int((np.rint(np.abs(L.weights) * 30) > 63).sum()) and r.q == 1 / 30
    auto = compile(yinyang_net)
    assert all(r.clipped == 0 and r.max_steps == 63 for r in auto.quantization)
    assert all(r.max_abs_error <= r.q / 2 * (1 + 1e-12) for r in auto.quantization)
