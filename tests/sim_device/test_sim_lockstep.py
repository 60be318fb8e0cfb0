"""The lockstep level kernel (acyclic levels processed over their shared event stream) gives the same bits as
the neuron-by-neuron kernel and as the reference, whichever path ``run_engine(lockstep=...)`` forces."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstspike.hal.backend import RunOptions
from firstspike.hal.events import InputSpikes
from firstspike.sim_device import engine
from firstspike.sim_device.backend import SimBackend
from firstspike.sim_device.examples import map_layered, mnist16_network, mnist_like_inputs, random_config, random_inputs
from firstspike.sim_device.spec import UPDATE_PERIOD_TICKS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_paths import assert_same, engine_paths


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
    assert_same(engine_paths(dev, inputs, opts, noise))
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
        runs = engine_paths(dev, inputs, opts, noisy)
        assert runs[0].spikes.sum() > 1000
        assert_same(runs)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), noisy=st.booleans(), sparsity=st.floats(0.2, 0.7))
def test_lockstep_on_sparse_layered_networks(seed, noisy, sparsity) -> None:
    """Many zero weights and unwired synapses: level neurons often miss an event tick and are anchored at an
    older one (the lockstep level's scalar path; the random configurations above rarely reach it in a way that
    changes spikes: a deliberately wrong delivery there went unnoticed by them and is caught here). A zero weight
    still anchors its neuron (spec 5.1), so half of the zeros are synapses whose label no longer matches."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(0.3, 0.6, size=(20, 24)), rng.normal(0.4, 0.8, size=(24, 5))]
    for w in ws:
        w[rng.random(w.shape) < sparsity] = 0.0
    net = map_layered(ws)
    labels = net.config.synapses.labels
    labels[rng.random(labels.shape) < sparsity / 2] = 0  # map_layered's addresses are 1, 2: not wired
    inputs = InputSpikes.from_times(mnist_like_inputs(rng, 3, n=20, active=0.7) * 752, net.input_channels)
    opts = RunOptions(duration_ticks=3000, record="all", seed=seed % 1000)
    dev = SimBackend(serial=seed % 89, mismatch=noisy, noise=noisy)
    dev.configure(net.config)
    runs = engine_paths(dev, inputs, opts, noisy)
    assert_same(runs)
    ref = SimBackend(serial=seed % 89, mismatch=noisy, noise=noisy, engine="reference")
    ref.configure(net.config)
    assert dev.run(inputs, opts).spikes == ref.run(inputs, opts).spikes


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), noisy=st.booleans())
def test_lockstep_with_input_events_on_the_update_grid(seed, noisy) -> None:
    """Input events on the update grid: the first grid sample after such a delivery is a whole step away (a form
    of its own in the vector pass and in the bound ``lim``); levels of 13 and 5 neurons, not multiples of the 8
    the vector pass runs over."""
    rng = np.random.default_rng(seed)
    net = map_layered([rng.normal(0.3, 0.6, size=(20, 13)), rng.normal(0.4, 0.8, size=(13, 5))])
    times = np.round(mnist_like_inputs(rng, 3, n=20, active=0.8) * 752 / UPDATE_PERIOD_TICKS) * UPDATE_PERIOD_TICKS
    inputs = InputSpikes.from_times(times, net.input_channels)
    opts = RunOptions(duration_ticks=3000, record="all", seed=seed % 1000)
    dev = SimBackend(serial=seed % 83, mismatch=noisy, noise=False)
    dev.configure(net.config)
    runs = engine_paths(dev, inputs, opts, False)
    assert runs[0].spikes.sum() > 0
    assert_same(runs)
    ref = SimBackend(serial=seed % 83, mismatch=noisy, noise=False, engine="reference")
    ref.configure(net.config)
    assert dev.run(inputs, opts).spikes == ref.run(inputs, opts).spikes


_LEVEL: dict = {}


def _level_tables_of_a_realistic_chip() -> tuple:
    """The first level (13 neurons, each with its own mismatched time constants) of a small layered network and
    the tables a run of 3000 ticks uses (built once)."""
    if not _LEVEL:
        rng = np.random.default_rng(11)
        net = map_layered([rng.normal(0.3, 0.6, size=(20, 13)), rng.normal(0.4, 0.8, size=(13, 5))])
        dev = SimBackend(serial=5, mismatch=True, noise=False)
        dev.configure(net.config)
        em = dev._model()
        _LEVEL["em"] = em
        _LEVEL["tables"] = engine._run_tables(em, 3000)
        _LEVEL["n"] = int(em.levels.ptr[1] - em.levels.ptr[0])
    return _LEVEL["em"], _LEVEL["tables"], _LEVEL["n"]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_vector_pass_equals_the_scalar_delivery_and_its_bound_skips_no_crossing(data) -> None:
    """One vector pass (``_deliver_all``) on random states of the level's neurons, all anchored at the previous
    event tick: every neuron's new anchor equals the scalar delivery's (propagate, clamp, add the jumps), its
    ``lim`` equals the scalar ``_lim``, and the crossing search from the new anchor finds no crossing at or
    before ``lim`` (the pass would skip it) and none at all when ``lim`` is never. Event ticks on the update
    grid and off it, one step apart or more; jumps of 0 too (a wired event anchors its neuron)."""
    em, (tab, ct, jc), n = _level_tables_of_a_realistic_chip()
    P = UPDATE_PERIOD_TICKS
    tp = data.draw(st.integers(0, 1500), label="tp")
    tn = data.draw(st.one_of(st.integers(tp + 1, tp + 3 * P),
                             st.integers(tp // P + 1, (tp + 3 * P) // P).map(lambda g: g * P)), label="tn")
    log_int = st.floats(0, 22).map(lambda x: int(2**x))
    ls = engine.new_level_state()
    row = {name: engine.state_row(ls, name) for name in engine.STATE_ROWS}
    par = em.neurons
    want = []
    for q in range(n):
        i = em.levels.nrn[q]
        u = data.draw(st.integers(-(2**20), 2**21)) if q % 2 else data.draw(log_int)
        ie, ii = data.draw(log_int.map(lambda x: 16 * x)), data.draw(st.one_of(st.just(0), log_int))
        je, ji = data.draw(st.one_of(st.just(0), log_int)), data.draw(st.one_of(st.just(0), log_int))
        th = max(data.draw(log_int), 1)
        for name, v in (("ta", tp), ("u", u), ("ie", ie), ("ii", ii), ("lim", engine.NEVER), ("th", th),
                        ("umin", par.umin[i]), ("umax", par.umax[i]), ("je", je), ("ji", ji),
                        ("w", 1)):  # wired to the tick's events: delivered, even with no jump
            row[name][q] = v
        u2, e2, i2 = engine._prop(tab, par.tid[i], u, ie, ii, tn - tp)
        want.append((min(max(u2, par.umin[i]), par.umax[i]), min(e2 + je, engine.I_MAX), min(i2 + ji, engine.I_MAX)))
    assert engine._deliver_all(ct, jc, 0, n, tn, tp, ls.flat, ls.slow) == 0
    for q in range(n):
        i = em.levels.nrn[q]
        u, ie, ii, lim, th = (int(row[name][q]) for name in ("u", "ie", "ii", "lim", "th"))
        assert row["ta"][q] == tn and (u, ie, ii) == want[q]
        assert lim == engine._lim(ct, q, tn, u, ie, ii, th)
        limit = tn + 100 * P if lim == engine.NEVER else lim
        found = engine._search(tab, par.tid[i], tn, u, ie, ii, th, limit)
        assert not 0 <= found <= limit, (q, lim, found)
