"""compiler.apply_calibration: a compiled network carries one chip's calibrated codes, nothing else changes, the
artifact records which chip, and weight updates keep the calibrated codes."""

from __future__ import annotations

import numpy as np
import pytest

from firstspike.compiler import CompiledNetwork, CompileError, Layer, Network, apply_calibration, compile
from firstspike.hal import chip
from firstspike.hal.neuron_calibration import FACTOR_FIELDS, OFFSET_FIELDS, NeuronCalibration

N = chip.N_NEURONS


def _net() -> Network:
    rng = np.random.default_rng(0)
    return Network(n_inputs=4, layers=(Layer(rng.normal(1.0, 0.8, (5, 20)), bias_time=0.9),
                                       Layer(rng.normal(0.5, 0.8, (21, 3)), bias_time=0.9)), name="t")


def _cal(serial: int = 7) -> NeuronCalibration:
    rng = np.random.default_rng(serial)
    return NeuronCalibration("firstspike-sim", serial, "1.1", **{f: 1 + 0.03 * rng.standard_normal(N)
                                                                 for f in FACTOR_FIELDS},
                             **{f: 2 * rng.standard_normal(N) for f in OFFSET_FIELDS})


def test_only_neuron_codes_change_and_they_are_the_calibrations():
    compiled = compile(_net(), weight_scale=30.0)
    cal = _cal()
    out = apply_calibration(compiled, cal)
    a, b = compiled.config, out.config
    assert np.array_equal(a.synapses.weights, b.synapses.weights)
    assert np.array_equal(a.synapses.labels, b.synapses.labels)
    assert np.array_equal(a.row_modes, b.row_modes)
    assert np.array_equal(a.routing.routes, b.routing.routes)
    expected = cal.apply(a.neurons.values)
    for k, v in b.neurons.values.items():
        assert np.array_equal(v, expected[k]), k
    assert out.weight_steps == compiled.weight_steps and out.tau_s_ticks == compiled.tau_s_ticks
    assert out.calibration == cal.identity and compiled.calibration is None
    ids = np.concatenate(out.output_neuron_ids)
    assert not np.array_equal(b.neurons.values["tau_mem"][ids], a.neurons.values["tau_mem"][ids])


def test_the_artifact_records_the_calibration_and_uncalibrated_bytes_are_unchanged():
    compiled = compile(_net())
    out = apply_calibration(compiled, _cal(9))
    back = CompiledNetwork.from_bytes(out.to_bytes())
    assert back.calibration == out.calibration and back == out
    assert "calibration" not in compiled._header()
    assert CompiledNetwork.from_bytes(compiled.to_bytes()).calibration is None


def test_weight_updates_keep_the_calibrated_codes():
    compiled = compile(_net(), weight_scale=30.0)
    out = apply_calibration(compiled, _cal())
    w = [L.weights * 0.9 for L in _net().layers]
    cfg = out.update_weights(w)
    for k, v in cfg.neurons.values.items():
        assert np.array_equal(v, out.config.neurons.values[k]), k
    d = out.config.diff(cfg)
    assert set(d.patches) <= {"synapses.weights"} and not d.replaced and not d.empty


def test_a_calibration_is_applied_once():
    out = apply_calibration(compile(_net()), _cal())
    with pytest.raises(CompileError, match="already carries the calibration of firstspike-sim serial 7"):
        apply_calibration(out, _cal(8))
    with pytest.raises(TypeError):
        apply_calibration(compile(_net()), {"tau_mem": 1})  # type: ignore[arg-type]
