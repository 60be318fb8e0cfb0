"""hal.NeuronCalibration: applying a chip's transfer to nominal codes, its exact encoding, its identity check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.hal import chip
from firstspike.hal.config import NEURON_FIELDS, ChipConfig
from firstspike.hal.errors import CalibrationMismatchError, ConfigDecodeError
from firstspike.hal.neuron_calibration import FACTOR_FIELDS, OFFSET_FIELDS, SYNAPSE_SCALE, NeuronCalibration

N = chip.N_NEURONS


def _random_calibration(seed: int, serial: int = 3) -> NeuronCalibration:
    rng = np.random.default_rng(seed)
    factors = {f: 1 + 0.03 * rng.standard_normal(N) for f in FACTOR_FIELDS}
    offsets = {f: 2.0 * rng.standard_normal(N) for f in OFFSET_FIELDS}
    return NeuronCalibration("firstspike-sim", serial, "1.1", **factors, **offsets)


def _values(leak: int = 300, threshold: int = 600, reset: int = 300, tau: int = 188, gain: int = 640,
            refractory: int = 255) -> dict[str, np.ndarray]:
    cfg = ChipConfig()
    cfg.neurons.set(slice(None), leak=leak, threshold=threshold, reset=reset, tau_mem=tau, tau_syn_exc=tau,
                    tau_syn_inh=tau, gain_exc=gain, gain_inh=gain, refractory=refractory, enabled=1)
    return cfg.neurons.values


def test_the_nominal_calibration_changes_no_code():
    cal = NeuronCalibration.nominal("m", 0, "1.1")
    rng = np.random.default_rng(0)
    cfg = ChipConfig()
    for name, (_, lo, hi, _, _) in NEURON_FIELDS.items():
        cfg.neurons.values[name][:] = rng.integers(lo, hi + 1, N)
    out = cal.apply(cfg.neurons.values)
    for name in NEURON_FIELDS:
        assert np.array_equal(out[name], cfg.neurons.values[name]), name
        assert out[name].dtype == cfg.neurons.values[name].dtype


@pytest.mark.parametrize("targets", [dict(), dict(threshold=340, gain=90, tau=150), dict(leak=500, threshold=900,
                                                                                         reset=450, gain=800)])
def test_applied_codes_realise_the_targets_on_a_chip_with_that_transfer(targets):
    """A chip whose effective values are factor x nominal (taus, gains) and code + offset (voltages) reaches the
    targets with the applied codes within half a code step."""
    cal = _random_calibration(1)
    v = {k: a.astype(np.int64) for k, a in _values(**targets).items()}
    out = cal.apply(v)
    tau_t = v["tau_mem"].astype(float) * 4
    for name in ("tau_mem", "tau_syn_exc", "tau_syn_inh"):
        eff = out[name] * 4 * getattr(cal, name)
        step = 4 * getattr(cal, name)
        assert np.all(np.abs(eff - tau_t) <= 0.5 * step + 1e-9), name
    leak_eff = out["leak"] + cal.leak
    span_eff = (out["threshold"] + cal.leak + cal.threshold) - leak_eff
    reset_eff = (out["reset"] + cal.leak + cal.reset) - leak_eff
    span_t = (v["threshold"] - v["leak"]).astype(float)
    assert np.all(np.abs(leak_eff - v["leak"]) <= 0.5 + 1e-9)
    assert np.all(np.abs(span_eff - span_t) <= 0.5 + 1e-9)
    assert np.all(np.abs(reset_eff - (v["reset"] - v["leak"])) <= 0.5 + 1e-9)
    # the model weight of one step, gain x factor / 64 / span, is the nominal one to half a gain step
    for name in ("gain_exc", "gain_inh"):
        q_eff = out[name] * getattr(cal, name) / 64 / span_eff
        q_t = v[name] / 64 / span_t
        half_step = 0.5 * getattr(cal, name) / 64 / span_eff
        assert np.all(np.abs(q_eff - q_t) <= half_step + 1e-12), name
    assert np.array_equal(out["refractory"], v["refractory"]) and np.array_equal(out["enabled"], v["enabled"])


def test_codes_are_clipped_to_their_ranges_and_a_zero_gain_stays_zero():
    slow = NeuronCalibration.nominal("m", 0, "1").fields()
    slow = {k: np.array(a) for k, a in slow.items()}
    slow["tau_mem"][:] = 0.5  # a neuron twice as fast as nominal: code 1000 would need 2000
    slow["leak"][:] = -5.0
    cal = NeuronCalibration("m", 0, "1", **slow)
    v = _values(leak=1020, threshold=1022, reset=0, tau=1000, gain=0)
    out = cal.apply(v)
    assert out["tau_mem"].max() == chip.PARAM_MAX
    assert out["leak"].max() == chip.PARAM_MAX and out["threshold"].max() <= chip.PARAM_MAX
    assert (out["gain_exc"] == 0).all()
    assert cal.apply_to_config(ChipConfig()).validate() is not None


def test_apply_to_config_changes_only_neuron_codes():
    cal = _random_calibration(2)
    cfg = ChipConfig()
    cfg.neurons.set(slice(0, 10), enabled=1, gain_exc=500)
    cfg.synapses.weights[0, 3, :5] = 17
    cfg.neurons.merged_columns[4] = True
    out = cal.apply_to_config(cfg)
    assert np.array_equal(out.synapses.weights, cfg.synapses.weights)
    assert np.array_equal(out.neurons.merged_columns, cfg.neurons.merged_columns)
    assert not np.array_equal(out.neurons.values["gain_exc"], cfg.neurons.values["gain_exc"])
    assert cfg.neurons.values["gain_exc"][0] == 500  # the input is not modified


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), serial=st.integers(0, 2**63 - 1),
       model=st.text(min_size=1, max_size=30), version=st.text(max_size=12))
def test_encoding_round_trips_exactly(seed, serial, model, version):
    rng = np.random.default_rng(seed)
    cal = NeuronCalibration(model, serial, version,
                            **{f: rng.uniform(0.3, 3.0, N) for f in FACTOR_FIELDS},
                            **{f: rng.uniform(-150, 150, N) for f in OFFSET_FIELDS})
    data = cal.to_bytes()
    back = NeuronCalibration.from_bytes(data)
    assert back == cal and back.to_bytes() == data and back.sha256() == cal.sha256()
    assert back.identity == cal.identity


@settings(max_examples=60, deadline=None)
@given(pos=st.integers(0, 10**9), bit=st.integers(0, 7), cut=st.integers(0, 10**9))
def test_corrupted_or_truncated_bytes_are_refused(pos, bit, cut):
    data = bytearray(_random_calibration(4).to_bytes())
    flipped = bytearray(data)
    flipped[pos % len(data)] ^= 1 << bit
    with pytest.raises(ConfigDecodeError):
        NeuronCalibration.from_bytes(bytes(flipped))
    with pytest.raises(ConfigDecodeError):
        NeuronCalibration.from_bytes(bytes(data[: cut % len(data)]))


def test_implausible_values_are_refused_with_the_field_named():
    fields = {k: np.array(a) for k, a in NeuronCalibration.nominal("m", 0, "1").fields().items()}
    bad = dict(fields, gain_exc=np.full(N, 10.0))
    with pytest.raises(ValueError, match="gain_exc"):
        NeuronCalibration("m", 0, "1", **bad)
    bad = dict(fields, threshold=np.full(N, np.nan))
    with pytest.raises(ValueError, match="threshold"):
        NeuronCalibration("m", 0, "1", **bad)
    with pytest.raises(ValueError, match="shape"):
        NeuronCalibration("m", 0, "1", **dict(fields, leak=np.zeros(3)))
    with pytest.raises(ValueError, match="serial"):
        NeuronCalibration("m", -1, "1", **fields)


def test_another_chip_or_spec_is_refused_in_one_line():
    cal = _random_calibration(5, serial=3)
    cal.check_device("firstspike-sim", 3, "1.1")
    for other in (("firstspike-sim", 4, "1.1"), ("firstspike-sim", 3, "1.0"), ("other-chip", 3, "1.1")):
        with pytest.raises(CalibrationMismatchError) as e:
            cal.check_device(*other)
        msg = str(e.value)
        assert "\n" not in msg and "serial 3" in msg and f"serial {other[1]}" in msg


def test_a_later_spec_that_runs_the_same_bits_keeps_the_calibration():
    cal = _random_calibration(6, serial=3)  # measured under spec 1.1
    cal.check_device("firstspike-sim", 3, "1.2", same_bits_as=("1.1",))
    for other in (("firstspike-sim", 3, "1.2", ()), ("firstspike-sim", 3, "1.2", ("1.0",)),
                  ("firstspike-sim", 4, "1.2", ("1.1",))):
        with pytest.raises(CalibrationMismatchError):
            cal.check_device(*other)


def test_the_simulator_says_which_earlier_specs_it_runs_alike():
    from firstspike.runtime.calibration.result import same_bits_as
    from firstspike.sim_device import SimBackend
    from firstspike.sim_device.spec import SAME_BITS_AS

    with SimBackend() as dev:
        assert same_bits_as(dev.info()) == tuple(SAME_BITS_AS) == ("1.1",)


def _with_synapses(cal: NeuronCalibration, seed: int) -> NeuronCalibration:
    rng = np.random.default_rng(seed)
    return cal.with_synapses(np.exp(0.05 * rng.standard_normal((chip.N_HALVES, chip.ROWS_PER_HALF,
                                                                 chip.COLUMNS_PER_HALF))))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), serial=st.integers(0, 2**63 - 1), spread=st.floats(0.0, 0.5))
def test_synapse_factors_round_trip_exactly_on_their_grid(seed, serial, spread):
    rng = np.random.default_rng(seed)
    factors = np.clip(np.exp(spread * rng.standard_normal((2, 256, 256))), 0.25, 3.99)
    cal = _random_calibration(seed % 1000, serial=serial % 2**62).with_synapses(factors)
    assert cal.version == 2
    assert np.abs(cal.synapse - factors).max() <= 0.5 / SYNAPSE_SCALE + 1e-15  # the stored grid, 3e-5
    data = cal.to_bytes()
    back = NeuronCalibration.from_bytes(data)
    assert back == cal and back.to_bytes() == data and np.array_equal(back.synapse, cal.synapse)
    assert back.sha256() == cal.sha256() != cal.without_synapses().sha256()
    assert back.without_synapses() == cal.without_synapses() and back.without_synapses().synapse is None


def test_a_calibration_without_synapse_factors_keeps_version_1_bytes():
    cal = _random_calibration(6)
    assert cal.synapse is None and cal.version == 1
    assert cal.to_bytes()[4:6] == (1).to_bytes(2, "little")  # the container version: files of before still load
    syn = _with_synapses(cal, 1)
    assert syn.to_bytes()[4:6] == (2).to_bytes(2, "little")
    assert syn.without_synapses().to_bytes() == cal.to_bytes()
    # synapse factors do not change the neuron codes
    v = _values()
    out_a, out_b = cal.apply(v), syn.apply(v)
    assert all(np.array_equal(out_a[k], out_b[k]) for k in out_a)


@settings(max_examples=40, deadline=None)
@given(pos=st.integers(0, 10**9), bit=st.integers(0, 7), cut=st.integers(0, 10**9))
def test_corrupted_or_truncated_version_2_bytes_are_refused(pos, bit, cut):
    data = bytearray(_with_synapses(_random_calibration(4), 2).to_bytes())
    flipped = bytearray(data)
    flipped[pos % len(data)] ^= 1 << bit
    with pytest.raises(ConfigDecodeError):
        NeuronCalibration.from_bytes(bytes(flipped))
    with pytest.raises(ConfigDecodeError):
        NeuronCalibration.from_bytes(bytes(data[: cut % len(data)]))


def test_implausible_synapse_factors_are_refused_with_the_field_named():
    cal = _random_calibration(7)
    for bad, what in ((np.full((2, 256, 256), 5.0), "synapse: factors"), (np.ones((2, 256)), "synapse: shape"),
                      (np.full((2, 256, 256), np.nan), "synapse: contains")):
        with pytest.raises(ValueError, match=what):
            cal.with_synapses(bad)
