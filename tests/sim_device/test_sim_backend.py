"""sim:// as a hal Backend: URI options, info, configure semantics, determinism, buffers, stats, readout."""

from __future__ import annotations

import numpy as np
import pytest

from firstspike.hal.backend import RunOptions
from firstspike.hal.config import ChipConfig
from firstspike.hal.errors import BackendError, CapacityError, ConfigError, FieldRangeError
from firstspike.hal.events import InputSpikes
from firstspike.hal.registry import DeviceURI, open_backend
from firstspike.sim_device.backend import SimBackend
from firstspike.sim_device.examples import yinyang_inputs, yinyang_network
from firstspike.sim_device.spec import SPEC_VERSION


@pytest.fixture(scope="module")
def yy():
    rng = np.random.default_rng(3)
    net = yinyang_network(rng)
    t = yinyang_inputs(rng, 20)
    times = np.concatenate([t, t[:, 4:5]], axis=1) * 752
    ch = np.r_[net.input_channels, net.bias_channels[0], net.bias_channels[1]]
    return net, InputSpikes.from_times(times, ch)


def test_uri_options() -> None:
    d = open_backend("sim://?serial=7&noise=0")
    info = d.info()
    assert info.model == "firstspike-sim" and info.serial == 7 and info.version == SPEC_VERSION
    assert info.extra["mismatch"] is True and info.extra["noise"] is False
    assert info.deterministic and info.membrane_readout == 8
    ideal = open_backend("sim://?ideal=1").info()
    assert ideal.extra["mismatch"] is False and ideal.extra["noise"] is False
    default = SimBackend.from_uri(DeviceURI.parse("sim://")).info()
    assert default.extra["mismatch"] and default.extra["noise"]
    for bad in ("sim://?seriall=1", "sim://?noise=2", "sim://?ideal=1&noise=1", "sim://?engine=gpu"):
        with pytest.raises(ValueError):
            open_backend(bad)


def test_same_inputs_and_seed_give_the_same_bits(yy) -> None:
    net, inputs = yy
    a, b = SimBackend(serial=5), SimBackend(serial=5)
    a.configure(net.config)
    b.configure(net.config)
    opts = RunOptions(duration_ticks=5000, seed=11)
    ra, rb = a.run(inputs, opts), b.run(inputs, opts)
    assert ra.spikes == rb.spikes and ra.stats == rb.stats
    assert a.run(inputs, opts).spikes == ra.spikes  # and again
    rc = a.run(inputs, RunOptions(duration_ticks=5000, seed=12))
    assert rc.spikes != ra.spikes  # temporal noise follows the seed
    other = SimBackend(serial=6)
    other.configure(net.config)
    assert other.run(inputs, opts).spikes != ra.spikes  # another chip, another mismatch


def test_ideal_chip_ignores_the_seed(yy) -> None:
    net, inputs = yy
    d = SimBackend(mismatch=False, noise=False)
    d.configure(net.config)
    assert d.run(inputs, RunOptions(seed=1)).spikes == d.run(inputs, RunOptions(seed=2)).spikes


def test_split_batches_with_entry_offset_reproduce_the_whole(yy) -> None:
    net, inputs = yy
    d = SimBackend(serial=1)
    d.configure(net.config)
    whole = d.run(inputs, RunOptions(duration_ticks=5000, seed=4, record="all"))
    parts = inputs.split([7, 13])
    r1 = d.run(parts[0], RunOptions(duration_ticks=5000, seed=4, record="all", entry_offset=0))
    r2 = d.run(parts[1], RunOptions(duration_ticks=5000, seed=4, record="all", entry_offset=7))
    from firstspike.hal.events import SpikeEvents

    assert SpikeEvents.concatenate([r1.spikes, r2.spikes]) == whole.spikes


def test_entries_start_from_reset(yy) -> None:
    net, inputs = yy
    d = SimBackend(mismatch=False, noise=False)
    d.configure(net.config)
    opts = RunOptions(duration_ticks=5000)
    whole = d.run(inputs, opts).spikes.first_spike_ticks()
    alone = d.run(inputs.split([3, 17])[1], opts).spikes.first_spike_ticks()
    assert np.array_equal(whole[3:], alone)


def test_results_are_sorted_and_first_is_a_subset_of_all(yy) -> None:
    net, inputs = yy
    d = SimBackend(serial=2)
    d.configure(net.config)
    first = d.run(inputs, RunOptions(duration_ticks=6000, record="first", seed=1))
    everything = d.run(inputs, RunOptions(duration_ticks=6000, record="all", seed=1))
    ev = everything.spikes.events
    key = ev["batch"].astype(np.int64) << 40 | ev["time"].astype(np.int64) << 10 | ev["label"]
    assert np.all(np.diff(key) > 0)
    assert np.array_equal(first.spikes.first_spike_ticks(), everything.spikes.first_spike_ticks())
    assert len(everything.spikes) >= len(first.spikes)
    assert first.stats["spikes"] == everything.stats["spikes"]


def test_events_beyond_the_buffer_are_counted(yy) -> None:
    net, inputs = yy
    d = SimBackend(mismatch=False, noise=False, max_events=50)
    d.configure(net.config)
    full = SimBackend(mismatch=False, noise=False)
    full.configure(net.config)
    r, f = d.run(inputs, RunOptions()), full.run(inputs, RunOptions())
    assert len(r.spikes) == 50 and r.dropped == len(f.spikes) - 50
    assert np.array_equal(r.spikes.events, f.spikes.events[:50])
    assert d.info().max_events == 50


def test_stats_count_inputs_synapses_and_spikes(yy) -> None:
    net, inputs = yy
    d = SimBackend(mismatch=False, noise=False)
    d.configure(net.config)
    r = d.run(inputs, RunOptions(duration_ticks=6000, record="all"))
    assert r.stats["input_events"] == len(inputs) and r.stats["lost_input_events"] == 0
    assert r.stats["spikes"] == len(r.spikes)
    # every input reaches its layer's synapses with non-zero weight; every hidden spike reaches 3 outputs
    w = net.config.synapses.weights
    assert r.stats["synaptic_events"] > len(inputs) * 50
    assert r.stats["synaptic_events"] <= len(inputs) * 120 + r.stats["spikes"] * 3
    assert int(w.astype(bool).sum()) > 0


def test_configure_accepts_a_diff_and_rejects_invalid_configs(yy) -> None:
    net, inputs = yy
    d = SimBackend(mismatch=False, noise=False)
    d.configure(net.config)
    before = d.run(inputs, RunOptions())
    target = net.config.copy()
    target.synapses.weights[0, 0, :10] = 63
    d.configure(d.config.diff(target))
    assert d.config == target
    assert d.run(inputs, RunOptions()).spikes != before.spikes
    bad = target.copy()
    bad.neurons.values["threshold"] = bad.neurons.values["threshold"].astype(np.int64)  # wrong dtype
    with pytest.raises(ConfigError):
        d.configure(bad)
    with pytest.raises(ConfigError):
        d.configure(net.config.diff(net.config))  # a diff against another base
    assert d.config == target  # still the previous config
    with pytest.raises(TypeError):
        d.configure("not a config")  # type: ignore[arg-type]


def test_run_limits_are_checked(yy) -> None:
    _, inputs = yy
    d = SimBackend()
    with pytest.raises(FieldRangeError):
        d.run(inputs, RunOptions(duration_ticks=100))  # inputs beyond the run
    with pytest.raises(CapacityError):
        d.run(InputSpikes(inputs.events[:0], 1), RunOptions(readout=tuple(range(9))))


def test_membrane_readout(yy) -> None:
    net, inputs = yy
    d = SimBackend(mismatch=False, noise=False)
    d.configure(net.config)
    r = d.run(inputs, RunOptions(duration_ticks=3000, readout=(0, 300), readout_period=10))
    assert r.membrane.shape == (20, 2, 300) and r.membrane.dtype == np.int32
    assert np.all(r.membrane[:, 1] == 300)  # a disabled neuron rests at its leak code (300)
    m = r.membrane[:, 0]
    assert m[:, 0].tolist() == [300] * 20  # entries start at the leak potential
    assert 480 <= m.max() < 520  # neuron 0 climbs to its threshold (500; sampled every 10 ticks) ...
    assert m.min() == 0  # ... and resets to 0


def test_closed_device_refuses_calls() -> None:
    d = SimBackend()
    d.close()
    d.close()
    with pytest.raises(BackendError):
        d.info()
    with pytest.raises(BackendError):
        d.configure(ChipConfig())


def test_reference_engine_via_uri(yy) -> None:
    net, inputs = yy
    small = inputs.split([2, 18])[0]
    f = open_backend("sim://?serial=3")
    r = open_backend("sim://?serial=3&engine=reference")
    for d in (f, r):
        d.configure(net.config)
    opts = RunOptions(duration_ticks=4000, seed=2)
    assert f.run(small, opts).spikes == r.run(small, opts).spikes
