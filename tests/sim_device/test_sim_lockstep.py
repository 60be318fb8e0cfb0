"""The lockstep level kernel (acyclic levels processed over their shared event stream) gives the same bits as
the neuron-by-neuron kernel and as the reference, whichever path ``run_engine(lockstep=...)`` forces."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hal.backend import RunOptions
from hal.events import InputSpikes
from sim_device.backend import SimBackend
from sim_device.batch import entry_thresholds, prepare_inputs
from sim_device.engine import run_engine
from sim_device.examples import map_layered, mnist16_network, mnist_like_inputs, random_config, random_inputs

FIELDS = ("batch", "time", "neuron", "spikes", "synaptic_from_neurons", "membrane")


def _engine_runs(dev: SimBackend, inputs: InputSpikes, opts: RunOptions, noise: bool) -> list:
    em = dev._model()
    prep = prepare_inputs(inputs, opts.duration_ticks, noise=noise, seed=opts.seed, entry_offset=0)
    theta = entry_thresholds(em.model.theta, em.active, inputs.batch_size, noise=noise, seed=opts.seed,
                             entry_offset=0)
    return [
        run_engine(em, inputs.batch_size, prep.batch, prep.time, prep.channel, theta, opts.duration_ticks,
                   opts.record == "first", tuple(opts.readout), opts.readout_period, lockstep=mode)
        for mode in (True, False, None)
    ]


def _same(runs: list) -> None:
    for other in runs[1:]:
        for f in FIELDS:
            assert np.array_equal(getattr(runs[0], f), getattr(other, f)), f


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), mismatch=st.booleans(), noise=st.booleans(),
       record=st.sampled_from(["first", "all"]))
def test_lockstep_matches_neuron_by_neuron_and_reference(seed, mismatch, noise, record) -> None:
    rng = np.random.default_rng(seed)
    cfg = random_config(rng, n_neurons=int(rng.integers(1, 12)), recurrent=bool(rng.random() < 0.3))
    dur = int(rng.integers(300, 1600))
    inputs = random_inputs(rng, int(rng.integers(1, 4)), 4, dur, per_entry=int(rng.integers(0, 12)))
    opts = RunOptions(duration_ticks=dur, record=record, seed=seed % 1000)
    dev = SimBackend(serial=seed % 97, mismatch=mismatch, noise=noise)
    dev.configure(cfg)
    _same(_engine_runs(dev, inputs, opts, noise))
    ref = SimBackend(serial=seed % 97, mismatch=mismatch, noise=noise, engine="reference")
    ref.configure(cfg)
    assert dev.run(inputs, opts).spikes == ref.run(inputs, opts).spikes


def test_lockstep_on_mnist16_matches_neuron_by_neuron() -> None:
    """The case the lockstep kernel is for: 256 inputs -> 246 merged-column neurons -> 10, realistic chip."""
    rng = np.random.default_rng(5)
    net = mnist16_network(rng)
    inputs = InputSpikes.from_times(mnist_like_inputs(rng, 40) * 752, net.input_channels)
    opts = RunOptions(duration_ticks=6000, record="all", seed=2, readout=(0, 3, 256), readout_period=50)
    for noisy in (False, True):
        dev = SimBackend(serial=3, mismatch=noisy, noise=noisy)
        dev.configure(net.config)
        runs = _engine_runs(dev, inputs, opts, noisy)
        assert runs[0].spikes.sum() > 1000
        _same(runs)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), noisy=st.booleans(), sparsity=st.floats(0.2, 0.7))
def test_lockstep_on_sparse_layered_networks(seed, noisy, sparsity) -> None:
    """Many zero weights: level neurons often miss an event tick and are anchored at an older one (the lockstep
    level's scalar path; the random configurations above rarely reach it in a way that changes spikes: a
    deliberately wrong delivery there went unnoticed by them and is caught here)."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(0.3, 0.6, size=(20, 24)), rng.normal(0.4, 0.8, size=(24, 5))]
    for w in ws:
        w[rng.random(w.shape) < sparsity] = 0.0
    net = map_layered(ws)
    inputs = InputSpikes.from_times(mnist_like_inputs(rng, 3, n=20, active=0.7) * 752, net.input_channels)
    opts = RunOptions(duration_ticks=3000, record="all", seed=seed % 1000)
    dev = SimBackend(serial=seed % 89, mismatch=noisy, noise=noisy)
    dev.configure(net.config)
    runs = _engine_runs(dev, inputs, opts, noisy)
    _same(runs)
    ref = SimBackend(serial=seed % 89, mismatch=noisy, noise=noisy, engine="reference")
    ref.configure(net.config)
    assert dev.run(inputs, opts).spikes == ref.run(inputs, opts).spikes
