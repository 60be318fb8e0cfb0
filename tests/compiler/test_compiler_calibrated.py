"""compiler.apply_calibration: a compiled network carries one chip's calibrated codes, nothing else changes, the
artifact records which chip, and weight updates keep the calibrated codes."""

from __future__ import annotations

import numpy as np
import pytest

from firstspike.compiler import CompiledNetwork, CompileError, Layer, Network, apply_calibration, compile
from firstspike.compiler.readback import effective_steps
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


def _syn_cal(serial: int = 7, spread: float = 0.05) -> NeuronCalibration:
    rng = np.random.default_rng(100 + serial)
    return _cal(serial).with_synapses(np.exp(spread * rng.standard_normal((2, 256, 256))))


def _independent_steps(compiled: CompiledNetwork, cal: NeuronCalibration, weights: list[np.ndarray]
                       ) -> list[np.ndarray]:
    """Signed steps each weight should get, computed from the synapse array's coordinates directly: the synapse of
    the weight's sign in the neuron's half, its row from the layer's source rows."""
    out = []
    for L, w in zip(compiled.layers, weights, strict=True):
        steps = np.zeros(w.shape, dtype=np.int64)
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                nid = int(L.neuron_ids[j])
                half, col = nid // 256, nid % 256
                row = L.source_rows[i, half, 1 if w[i, j] < 0 else 0]
                f = cal.synapse[half, row, col]
                d = min(round(abs(w[i, j]) / (L.q * f)), chip.WEIGHT_MAX)
                steps[i, j] = -d if w[i, j] < 0 else d
        out.append(steps)
    return out


def test_synapse_factors_are_divided_out_of_every_weight_before_rounding():
    net = _net()
    compiled = compile(net, weight_scale=30.0)
    cal = _syn_cal()
    out = apply_calibration(compiled, cal)
    want = _independent_steps(compiled, cal, [L.weights for L in net.layers])
    for L, steps in zip(out.layers, want, strict=True):
        assert np.array_equal(effective_steps(out.stages[L.stage].config, L), steps)
        assert L.synapse_gain is not None
    changed = sum(int(np.sum(effective_steps(out.config, L) != effective_steps(compiled.config, L)))
                  for L in out.layers)
    assert changed > 50  # 5 % factors move many of the ~160 weights by a step or more
    # quantize() reports what the chip realises: steps x q x the synapse's factor, close to the float weights
    for L, wq, w in zip(out.layers, out.quantize(net.weights), net.weights, strict=True):
        big = (np.abs(w) > 20 * L.q) & (np.abs(w) < 50 * L.q)  # below it the rounding, above it clipping at 63
        assert big.sum() > 20 and np.abs(wq[big] / w[big] - 1).max() < 0.5 / 20 / 0.8
    # the neuron codes are those of the calibration without synapse factors
    plain = apply_calibration(compiled, cal.without_synapses())
    for k, v in out.config.neurons.values.items():
        assert np.array_equal(v, plain.config.neurons.values[k]), k
    assert all(L.synapse_gain is None for L in plain.layers)
    assert np.array_equal(plain.config.synapses.weights, compiled.config.synapses.weights)


def test_a_synapse_calibrated_artifact_round_trips_and_weight_updates_keep_the_correction(tmp_path):
    net = _net()
    compiled = compile(net, weight_scale=30.0)
    cal = _syn_cal()
    out = apply_calibration(compiled, cal)
    path = tmp_path / "n.fsn"
    out.save(path)
    back = CompiledNetwork.load(path)
    assert back == out and back.calibration == cal.identity
    assert all(np.array_equal(a.synapse_gain, b.synapse_gain) for a, b in zip(out.layers, back.layers, strict=True))
    rng = np.random.default_rng(3)
    new = [L.weights * rng.uniform(0.8, 1.2, L.weights.shape) for L in net.layers]
    cfg = back.update_weights(new)
    for L, steps in zip(back.layers, _independent_steps(compiled, cal, new), strict=True):
        assert np.array_equal(effective_steps(cfg, L), steps)
    # the configs apply_calibration wrote are what update_weights writes for the source weights
    assert out.update_weights(net.weights) == out.config


def test_without_a_source_network_the_compiled_steps_are_corrected():
    net = _net()
    compiled = compile(net, weight_scale=30.0, keep_source=False)
    assert compiled.source is None
    cal = _syn_cal()
    out = apply_calibration(compiled, cal)
    digital = [effective_steps(compiled.config, L).astype(np.float64) * L.q for L in compiled.layers]
    for L, steps in zip(out.layers, _independent_steps(compiled, cal, digital), strict=True):
        assert np.array_equal(effective_steps(out.config, L), steps)
