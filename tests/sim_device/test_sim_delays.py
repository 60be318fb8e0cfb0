"""The routes' delay lines (spec 1.2, section 5.1) in the simulator: the engine equals the reference (the executable
spec) with random delays on random networks, on both the lockstep and the neuron-by-neuron path, noise on and off;
an event arrives exactly ``delay code x 8`` ticks after it enters its route; a delay update is patched in place
(same arrays and bits as a fresh device)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstspike.hal import chip
from firstspike.hal.backend import RunOptions
from firstspike.hal.config import ChipConfig, Routing, RowMode, SourceKind
from firstspike.hal.events import InputSpikes
from firstspike.sim_device import analog, engine
from firstspike.sim_device.backend import SimBackend
from firstspike.sim_device.engine import compile_model
from firstspike.sim_device.examples import map_layered, mnist_like_inputs, random_config, random_inputs
from firstspike.sim_device.model import build_model, only_weights_and_delays_differ, only_weights_differ

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_paths import assert_same, engine_paths

STEP = chip.DELAY_STEP_TICKS


def _both(cfg: ChipConfig, inputs: InputSpikes, opts: RunOptions, **dev):
    out = []
    for eng in ("fast", "reference"):
        d = SimBackend(engine=eng, **dev)
        d.configure(cfg)
        out.append(d.run(inputs, opts))
    return out


# ---- engine == reference -----------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    recurrent=st.booleans(),
    mismatch=st.booleans(),
    noise=st.booleans(),
    record=st.sampled_from(["first", "all"]),
    n=st.integers(1, 12),
)
def test_engine_matches_reference_with_random_delays(seed, recurrent, mismatch, noise, record, n) -> None:
    rng = np.random.default_rng(seed)
    cfg = random_config(rng, n_neurons=n, recurrent=recurrent, delays=True)
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


def test_random_delayed_configs_exercise_delays_spikes_and_recurrence() -> None:
    """The fuzzing generator must give sources several delay lines, spiking recurrent networks, and delays that
    change the outcome (or the property test above proves little)."""
    spikes = lines = changed = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        cfg = random_config(rng, n_neurons=10, recurrent=True, delays=True)
        inputs = random_inputs(rng, 2, 4, 1500, per_entry=8)
        opts = RunOptions(duration_ticks=1500, record="all")
        fast, ref = _both(cfg, inputs, opts, mismatch=True, noise=False)
        assert fast.spikes == ref.spikes and fast.stats == ref.stats
        spikes += len(fast.spikes)
        em = SimBackend(mismatch=True, noise=False)
        em.configure(cfg)
        key = em._model().line_key // engine.DELAY_KEYS
        lines += int(len(key) - len(np.unique(key)))  # extra lines: sources with several delays
        plain = cfg.copy()
        plain.routing = plain.routing.with_delays(np.zeros(len(plain.routing), dtype=np.int64))
        dev = SimBackend(mismatch=True, noise=False)
        dev.configure(plain)
        changed += int(dev.run(inputs, opts).spikes != fast.spikes)
    assert spikes > 50 and lines > 5 and changed >= 4


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), noisy=st.booleans(), record=st.sampled_from(["first", "all"]))
def test_lockstep_and_neuron_by_neuron_agree_with_delays(seed, noisy, record) -> None:
    """A layered network (20 -> 24 -> 5) with per-source (axonal) delays on both layers: the inputs' lines and the
    hidden neurons' lines interleave their events, levels run in lockstep or neuron by neuron, noise on and off;
    all three engine paths and the reference agree."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(0.3, 0.6, size=(20, 24)), rng.normal(0.5, 0.8, size=(24, 5))]
    ws[0][rng.random(ws[0].shape) < 0.3] = 0.0
    delays = [rng.choice([0, 1, 5, 8, 40, 100, 300], size=20), rng.choice([0, 2, 9, 64, 200], size=24)]
    net = map_layered(ws, delays=delays)
    inputs = InputSpikes.from_times(mnist_like_inputs(rng, 3, n=20, active=0.7) * 752, net.input_channels)
    opts = RunOptions(duration_ticks=4000, record=record, seed=seed % 1000, readout=(int(net.neurons[1][0]),),
                      readout_period=37)
    dev = SimBackend(serial=seed % 89, mismatch=noisy, noise=noisy)
    dev.configure(net.config)
    runs = engine_paths(dev, inputs, opts, noisy)
    assert runs[0].spikes.sum() > 0
    assert_same(runs)
    ref = SimBackend(serial=seed % 89, mismatch=noisy, noise=noisy, engine="reference")
    ref.configure(net.config)
    a, b = dev.run(inputs, opts), ref.run(inputs, opts)
    assert a.spikes == b.spikes and a.stats == b.stats and np.array_equal(a.membrane, b.membrane)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), mismatch=st.booleans(), noise=st.booleans())
def test_lockstep_paths_on_random_delayed_configs(seed, mismatch, noise) -> None:
    rng = np.random.default_rng(seed)
    cfg = random_config(rng, n_neurons=int(rng.integers(1, 12)), recurrent=bool(rng.random() < 0.3), delays=True)
    dur = int(rng.integers(300, 1600))
    inputs = random_inputs(rng, int(rng.integers(1, 4)), 4, dur, per_entry=int(rng.integers(0, 12)))
    opts = RunOptions(duration_ticks=dur, record="all", seed=seed % 1000)
    dev = SimBackend(serial=seed % 97, mismatch=mismatch, noise=noise)
    dev.configure(cfg)
    assert_same(engine_paths(dev, inputs, opts, noise))


# ---- what a delay does, literally --------------------------------------------------------------------------------
def _probe(input_code: int, neuron_code: int, dur: int = 3000) -> ChipConfig:
    """Input channel 0 -> neuron 3 (a strong excitatory synapse, route delay ``input_code``); neuron 3's spikes ->
    neuron 7 (route delay ``neuron_code``). Time constants code 188 (752 ticks), threshold 100 LSB above leak."""
    cfg = ChipConfig()
    cfg.neurons.set([3, 7], leak=300, threshold=400, reset=300, refractory=255, gain_exc=640, enabled=1)
    cfg.row_modes[0, [0, 2]] = RowMode.EXCITATORY
    cfg.synapses.labels[0] = 63
    cfg.synapses.labels[0, 0, 3] = cfg.synapses.labels[0, 2, 7] = 1
    cfg.synapses.weights[0, 0, 3] = cfg.synapses.weights[0, 2, 7] = 63
    cfg.routing = Routing.from_lists([SourceKind.INPUT, SourceKind.NEURON], [0, 3], [0, 0], [0, 2], [1, 1],
                                     [input_code, neuron_code])
    return cfg.validate()


def _spike_time(res, neuron: int) -> int:
    ev = res.spikes.events
    return int(ev["time"][ev["label"] == neuron][0])


@pytest.mark.parametrize("eng", ["fast", "reference"])
def test_an_event_arrives_its_delay_later(eng: str) -> None:
    """Input at tick 100 into a route of code c arrives at 100 + 8c; neuron 3's spike at t3 reaches neuron 7 at
    t3 + 1 + 8c'. With both delays whole update periods (code 8 = 64 ticks) the dynamics are the undelayed ones
    shifted: neuron 3 by 64 ticks, neuron 7 by 128, spikes and membrane (readout every tick) alike. Off the grid
    (code 5 = 40 ticks) the membrane up to the spike is shifted exactly (the threshold comparator samples on the
    grid, so the spike tick may differ by the refinement)."""
    opts = RunOptions(duration_ticks=3000, record="all", readout=(3, 7), readout_period=1)
    inputs = InputSpikes.from_times(np.array([[100.0]]), np.array([0]))
    runs = {}
    for codes in ((0, 0), (8, 8), (5, 9)):
        dev = SimBackend(mismatch=False, noise=False, engine=eng)
        dev.configure(_probe(*codes))
        runs[codes] = dev.run(inputs, opts)
    a, b, c = runs[(0, 0)], runs[(8, 8)], runs[(5, 9)]
    t3, t7 = _spike_time(a, 3), _spike_time(a, 7)
    assert 100 < t3 < t7 < 2000
    assert _spike_time(b, 3) == t3 + 64 and _spike_time(b, 7) == t7 + 128
    m3, m7 = a.membrane[0]
    assert np.all(m3[:101] == 300) and np.all(m7[: t3 + 2] == 300)  # undelayed arrivals: 100 and t3 + 1
    assert np.array_equal(b.membrane[0, 0, 64:], m3[:-64])
    assert np.array_equal(b.membrane[0, 1, 128:], m7[:-128])
    assert np.all(b.membrane[0, 0, :164] == 300) and np.all(b.membrane[0, 1, : t3 + 64 + 1 + 64 + 1] == 300)
    assert np.array_equal(c.membrane[0, 0, 40 : t3 + 40], m3[:t3])
    assert np.all(c.membrane[0, 1, : _spike_time(c, 3) + 1 + 72 + 1] == 300)


def test_arrivals_past_the_run_are_not_delivered() -> None:
    """A delay that takes an event past the end of the run: nothing arrives, no synapse is counted."""
    inputs = InputSpikes.from_times(np.array([[100.0], [2000.0]]), np.array([0]))
    for eng in ("fast", "reference"):
        dev = SimBackend(mismatch=False, noise=False, engine=eng)
        dev.configure(_probe(chip.DELAY_CODE_MAX, 0))  # +4088 ticks: the entry at 100 arrives at 4188
        res = dev.run(inputs, RunOptions(duration_ticks=4189, record="all"))
        assert res.stats["synaptic_events"] == 1  # entry 0's input arrives at the last tick, entry 1's never
        assert len(res.spikes) == 0
        assert res.stats["input_events"] == 2  # both inputs entered their route
        res = dev.run(inputs, RunOptions(duration_ticks=4188, record="all"))
        assert res.stats["synaptic_events"] == 0 and len(res.spikes) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_input_delay_is_the_input_moved_later(seed: int) -> None:
    """Delaying input channel c by code k is giving its events 8k ticks later (no input noise: the jitter and the
    loss apply where an event enters its route). Exact for every neuron, on a realistic (mismatched) chip."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(0.3, 0.6, size=(20, 13)), rng.normal(0.5, 0.8, size=(13, 5))]
    codes = rng.choice([0, 1, 3, 8, 20, 77], size=20)
    delayed = map_layered(ws, delays=[codes, None])
    plain = map_layered(ws)
    t = mnist_like_inputs(rng, 6, n=20, active=0.7) * 752
    opts = RunOptions(duration_ticks=5000, record="all", seed=3)
    a = SimBackend(serial=seed, mismatch=True, noise=False)
    a.configure(delayed.config)
    b = SimBackend(serial=seed, mismatch=True, noise=False)
    b.configure(plain.config)
    ra = a.run(InputSpikes.from_times(t, delayed.input_channels), opts)
    rb = b.run(InputSpikes.from_times(np.rint(t) + codes * STEP, plain.input_channels), opts)
    assert len(ra.spikes) > 10 and ra.spikes == rb.spikes


# ---- reconfiguration ---------------------------------------------------------------------------------------------
def _same_engine_model(a, b) -> None:
    for name in ("active", "index_of", "line_key", "line_ptr", "line_src", "line_delay", "line_count", "fan_line"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for struct in ("tables", "neurons", "wiring", "fanout", "levels"):
        for name in getattr(a, struct)._fields:
            x, y = getattr(getattr(a, struct), name), getattr(getattr(b, struct), name)
            assert x.dtype == y.dtype and np.array_equal(x, y), f"{struct}.{name}"
    assert a.input_delays == b.input_delays and a.acyclic == b.acyclic


@pytest.mark.parametrize("mismatch", [False, True])
def test_delay_and_weight_updates_rewire_in_place(mismatch: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A training step that changes delays and weights (a configure with a diff): the engine model is rewired
    (no propagators built again), its arrays equal a full build's and its bits a fresh device's."""
    rng = np.random.default_rng(7)
    ws = [rng.normal(0.3, 0.6, size=(20, 24)), rng.normal(0.5, 0.8, size=(24, 5))]
    net = map_layered(ws, delays=[rng.integers(0, 50, size=20), rng.integers(0, 50, size=24)])
    dev = SimBackend(serial=3, mismatch=mismatch, noise=mismatch)
    dev.configure(net.config)
    inputs = InputSpikes.from_times(mnist_like_inputs(rng, 4, n=20, active=0.7) * 752, net.input_channels)
    opts = RunOptions(duration_ticks=4000, record="all", seed=2)
    dev.run(inputs, opts)  # fills the per-duration tables, which a rewire shares

    import firstspike.sim_device.backend as backend

    def no_build(*a, **k):  # pragma: no cover - only called on a regression
        raise AssertionError("a delay update rebuilt the device model")

    mm = analog.Mismatch.for_serial(3) if mismatch else analog.Mismatch.ideal()
    for step in range(3):
        target = dev.config.copy()
        codes = target.routing.routes["delay"].astype(np.int64)
        pick = rng.choice(len(codes), size=6, replace=False)
        codes[pick] = rng.integers(0, 80, size=6)
        if step == 2:
            codes[:] = 0  # all delays back to 0 (inputs no longer expanded per line)
        target.routing = target.routing.with_delays(codes)
        target.synapses.weights[0, 0, :5] = rng.integers(0, 64, size=5)
        assert only_weights_and_delays_differ(dev.config, target) and not only_weights_differ(dev.config, target)
        with monkeypatch.context() as m:
            m.setattr(backend, "build_model", no_build)
            dev.configure(dev.config.diff(target))
        assert dev.config == target
        _same_engine_model(dev._model(), compile_model(build_model(target, mm)))
        fresh = SimBackend(serial=3, mismatch=mismatch, noise=mismatch)
        fresh.configure(target)
        a, b = dev.run(inputs, opts), fresh.run(inputs, opts)
        assert a.spikes == b.spikes and a.stats == b.stats


def test_a_configuration_without_routes_runs_silent() -> None:
    """No routes means no delay lines at all: input events go nowhere (the engine once indexed an empty line table)."""
    dev = SimBackend(mismatch=False, noise=False)
    dev.configure(ChipConfig())
    times = np.array([[100.0, 137.0, 174.0]] * 4)
    res = dev.run(InputSpikes.from_times(times, np.array([0, 1, 2])), RunOptions(duration_ticks=2000, record="all"))
    assert len(res.spikes) == 0 and res.stats["synaptic_events"] == 0
