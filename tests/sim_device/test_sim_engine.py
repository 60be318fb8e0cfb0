"""The fast engine is bit-identical to the reference (the executable spec) on random configurations."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstspike.hal.backend import RunOptions
from firstspike.sim_device.backend import SimBackend
from firstspike.sim_device.examples import random_config, random_inputs, yinyang_inputs, yinyang_network


def _both(cfg, inputs, opts, **dev):
    out = []
    for engine in ("fast", "reference"):
        d = SimBackend(engine=engine, **dev)
        d.configure(cfg)
        out.append(d.run(inputs, opts))
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    recurrent=st.booleans(),
    mismatch=st.booleans(),
    noise=st.booleans(),
    record=st.sampled_from(["first", "all"]),
    n=st.integers(1, 12),
)
def test_engine_matches_reference_on_random_configs(seed, recurrent, mismatch, noise, record, n) -> None:
    rng = np.random.default_rng(seed)
    cfg = random_config(rng, n_neurons=n, recurrent=recurrent)
    dur = int(rng.integers(300, 1600))
    inputs = random_inputs(rng, int(rng.integers(1, 4)), 4, dur, per_entry=int(rng.integers(0, 10)))
    readout = tuple(int(x) for x in rng.choice(512, size=int(rng.integers(0, 3)), replace=False))
    opts = RunOptions(duration_ticks=dur, record=record, seed=seed % 1000, readout=readout,
                      readout_period=int(rng.integers(1, 60)), entry_offset=int(rng.integers(0, 5)))
    fast, ref = _both(cfg, inputs, opts, serial=seed % 97, mismatch=mismatch, noise=noise)
    assert fast.spikes == ref.spikes
    assert fast.stats == ref.stats
    assert fast.dropped == ref.dropped
    if readout:
        assert np.array_equal(fast.membrane, ref.membrane)
    else:
        assert fast.membrane is None and ref.membrane is None


def test_random_configs_exercise_spikes_and_recurrence() -> None:
    """The fuzzing generator must produce spiking, recurrent cases (or the property test proves little)."""
    spikes = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        cfg = random_config(rng, n_neurons=10, recurrent=True)
        inputs = random_inputs(rng, 2, 4, 1500, per_entry=8)
        fast, ref = _both(cfg, inputs, RunOptions(duration_ticks=1500, record="all"), mismatch=True, noise=False)
        assert fast.spikes == ref.spikes
        spikes += len(fast.spikes)
    assert spikes > 50


def test_engine_matches_reference_on_a_layered_network() -> None:
    rng = np.random.default_rng(4)
    net = yinyang_network(rng)
    t = yinyang_inputs(rng, 3)
    times = np.concatenate([t, t[:, 4:5]], axis=1) * 752
    ch = np.r_[net.input_channels, net.bias_channels[0], net.bias_channels[1]]
    from firstspike.hal.events import InputSpikes

    fast, ref = _both(net.config, InputSpikes.from_times(times, ch),
                      RunOptions(duration_ticks=5000, record="all", seed=1, readout=(0, 256, 5)),
                      serial=2, mismatch=True, noise=True)
    assert len(fast.spikes) > 100
    assert fast.spikes == ref.spikes and fast.stats == ref.stats
    assert np.array_equal(fast.membrane, ref.membrane)
