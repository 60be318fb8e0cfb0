"""A weight-only reconfiguration (the in-the-loop trainer's ``configure(diff)`` every step) patches the engine
model instead of rebuilding it; the result must be the same arrays and the same bits as a full rebuild."""

from __future__ import annotations

import numpy as np
import pytest

from firstspike.hal.backend import RunOptions
from firstspike.hal.events import InputSpikes
from firstspike.sim_device import analog
from firstspike.sim_device.backend import SimBackend
from firstspike.sim_device.engine import EngineModel, compile_model
from firstspike.sim_device.examples import mnist16_network, mnist_like_inputs, yinyang_inputs, yinyang_network
from firstspike.sim_device.model import build_model, only_weights_differ

ARRAYS = ("active", "index_of", "line_key", "line_ptr", "line_src", "line_delay", "line_count", "fan_line")
#: the kernel structures of an engine model, every field compared
STRUCTS = ("tables", "neurons", "wiring", "fanout", "levels")


def _same_engine_model(a: EngineModel, b: EngineModel) -> None:
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for struct in STRUCTS:
        for name in getattr(a, struct)._fields:
            x, y = getattr(getattr(a, struct), name), getattr(getattr(b, struct), name)
            assert x.dtype == y.dtype and np.array_equal(x, y), f"{struct}.{name}"
    assert a.acyclic == b.acyclic
    assert np.array_equal(a.model.jump, b.model.jump)


def _perturb(cfg, rng: np.random.Generator, zero_some: bool):
    target = cfg.copy()
    w = target.synapses.weights
    nz = np.flatnonzero(w)
    pick = rng.choice(nz, size=min(len(nz), 200), replace=False)
    flat = w.reshape(-1)
    flat[pick] = np.clip(flat[pick].astype(np.int64) + rng.integers(-3, 4, size=len(pick)), 1, 63)
    if zero_some:
        flat[pick[:20]] = 0
    return target


@pytest.mark.parametrize("mismatch", [False, True])
@pytest.mark.parametrize("zero_some", [False, True])
def test_weight_diff_patches_the_engine_model_bit_identically(mismatch: bool, zero_some: bool) -> None:
    rng = np.random.default_rng(11)
    net = yinyang_network(rng)
    dev = SimBackend(serial=4, mismatch=mismatch, noise=mismatch)
    dev.configure(net.config)
    t = yinyang_inputs(rng, 30)
    inputs = InputSpikes.from_times(np.concatenate([t, t[:, 4:5]], axis=1) * 752,
                                    np.r_[net.input_channels, net.bias_channels[0], net.bias_channels[1]])
    opts = RunOptions(duration_ticks=5000, record="all", seed=5)
    for _ in range(3):  # several training steps in a row
        target = _perturb(dev.config, rng, zero_some)
        assert only_weights_differ(dev.config, target)
        dev.configure(dev.config.diff(target))
        assert dev.config == target
        mm = analog.Mismatch.for_serial(4) if mismatch else analog.Mismatch.ideal()
        full = compile_model(build_model(target, mm))
        _same_engine_model(dev._model(), full)
        fresh = SimBackend(serial=4, mismatch=mismatch, noise=mismatch)
        fresh.configure(target)
        a, b = dev.run(inputs, opts), fresh.run(inputs, opts)
        assert a.spikes == b.spikes and a.stats == b.stats


def test_weight_update_on_mnist16_with_readout_matches_a_fresh_device() -> None:
    rng = np.random.default_rng(2)
    net = mnist16_network(rng)
    dev = SimBackend(serial=1)
    dev.configure(net.config)
    target = _perturb(net.config, rng, zero_some=True)
    dev.configure(target)  # a whole config that differs only in weights takes the same path
    fresh = SimBackend(serial=1)
    fresh.configure(target)
    _same_engine_model(dev._model(), fresh._model())
    inputs = InputSpikes.from_times(mnist_like_inputs(rng, 8) * 752, net.input_channels)
    opts = RunOptions(duration_ticks=6000, record="all", seed=1, readout=(0, 5), readout_period=40)
    a, b = dev.run(inputs, opts), fresh.run(inputs, opts)
    assert a.spikes == b.spikes and a.stats == b.stats and np.array_equal(a.membrane, b.membrane)


def test_other_changes_are_not_weight_only() -> None:
    net = yinyang_network(np.random.default_rng(0))
    cfg = net.config
    other = cfg.copy()
    other.neurons.values["threshold"][0] += 1
    assert not only_weights_differ(cfg, other)
    other = cfg.copy()
    other.synapses.labels[0, 0, 0] ^= 1
    assert not only_weights_differ(cfg, other)
    assert only_weights_differ(cfg, cfg.copy())


def test_weights_crossing_zero_never_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's structure follows the wiring, so weights going to 0 and back (whole hidden-to-output
    columns included) are patched in place; the bits still equal a fresh device's."""
    import firstspike.sim_device.engine as engine

    rng = np.random.default_rng(5)
    net = yinyang_network(rng)
    dev = SimBackend(serial=2)
    dev.configure(net.config)

    def no_rebuild(model):  # pragma: no cover - only called on a regression
        raise AssertionError("a weight-only change rebuilt the engine model")

    monkeypatch.setattr(engine, "compile_model", no_rebuild)
    t = yinyang_inputs(rng, 20)
    inputs = InputSpikes.from_times(np.concatenate([t, t[:, 4:5]], axis=1) * 752,
                                    np.r_[net.input_channels, net.bias_channels[0], net.bias_channels[1]])
    opts = RunOptions(duration_ticks=5000, record="all", seed=3)
    zeroed = dev.config.copy()
    zeroed.synapses.weights[:] = 0  # every weight to zero: no source reaches anything
    restored = net.config.copy()
    for target in (zeroed, restored):
        dev.configure(dev.config.diff(target))
        fresh = SimBackend(serial=2)  # a first configure builds through firstspike.sim_device.backend's own reference
        fresh.configure(target)
        a, b = dev.run(inputs, opts), fresh.run(inputs, opts)
        assert a.spikes == b.spikes and a.stats == b.stats
    assert a.spikes.events.size > 0  # the restored network spikes again


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weight_patch_equals_a_rebuild_with_shared_rows_and_inhibitory_rows(seed: int) -> None:
    """Extra routes put several sources on the same rows and addresses (one synapse then serves several
    sources) and some rows turn inhibitory or off; random weight changes, zeros included, must still patch the
    summed jumps and counts exactly."""
    from firstspike.hal.config import ChipConfig, Routing, RowMode
    from firstspike.sim_device.engine import update_weights
    from firstspike.sim_device.model import with_weights

    rng = np.random.default_rng(seed)
    cfg = mnist16_network(rng).config.copy()
    r = cfg.routing.routes
    k = 300
    pick = rng.integers(0, len(r), size=k)
    extra = {  # more sources onto rows and addresses that are already in use
        "kind": rng.integers(0, 2, size=k),
        "source": rng.integers(0, 256, size=k),
        "half": r["half"][pick],
        "row": r["row"][pick],
        "address": r["address"][pick],
    }
    merged = {f: np.r_[r[f].astype(np.int64), extra[f]] for f in extra}
    cfg.routing = Routing.from_lists(**merged)
    rows = np.unique(np.c_[r["half"], r["row"]], axis=0)
    for h, row in rows[rng.choice(len(rows), size=20, replace=False)]:
        cfg.row_modes[h, row] = rng.choice([RowMode.INHIBITORY, RowMode.OFF])
    cfg = ChipConfig.from_bytes(cfg.to_bytes())  # validated
    mm = analog.Mismatch.for_serial(seed)
    em = compile_model(build_model(cfg, mm))
    for _ in range(3):
        target = _perturb(em.model.config, rng, zero_some=True)
        assert only_weights_differ(em.model.config, target)
        full = compile_model(build_model(target, mm))
        # the changed synapses as a caller that knows them passes them, with unchanged ones among them
        changed = np.flatnonzero(em.model.config.synapses.weights != target.synapses.weights)
        known = np.union1d(changed, rng.choice(target.synapses.weights.size, size=50, replace=False))
        patched = update_weights(em, with_weights(em.model, target, mm, known), known)
        _same_engine_model(patched, full)
        em = update_weights(em, with_weights(em.model, target, mm))
        _same_engine_model(em, full)


def test_a_weight_diff_with_repeated_and_unchanged_entries_patches_exactly() -> None:
    """A diff from elsewhere (a gRPC client's) may carry a weight twice or one that does not change; the device
    takes the changed synapses from it and must still equal a fresh device."""
    from firstspike.hal.config import ConfigDiff

    rng = np.random.default_rng(8)
    net = mnist16_network(rng)
    dev = SimBackend(serial=3)
    dev.configure(net.config)
    dev._model()
    target = _perturb(net.config, rng, zero_some=True)
    diff = dev.config.diff(target)
    idx = diff.patches["synapses.weights"][0]
    same = rng.choice(target.synapses.weights.size, size=40, replace=False).astype(idx.dtype)
    idx = np.r_[idx, idx[:7], same]
    flat = target.synapses.weights.reshape(-1)
    dev.configure(ConfigDiff(diff.base_digest, diff.target_digest,
                             {"synapses.weights": (idx, flat[idx].copy())}, {}))
    assert dev.config == target
    fresh = SimBackend(serial=3)
    fresh.configure(target)
    _same_engine_model(dev._model(), fresh._model())


def test_changed_indices_outside_the_synapse_array_are_refused() -> None:
    from firstspike.sim_device.engine import update_weights
    from firstspike.sim_device.model import with_weights

    rng = np.random.default_rng(4)
    cfg = yinyang_network(rng).config
    mm = analog.Mismatch.ideal()
    em = compile_model(build_model(cfg, mm))
    target = _perturb(cfg, rng, zero_some=False)
    model = with_weights(em.model, target, mm)
    for bad in (np.array([-1]), np.array([cfg.synapses.weights.size])):
        with pytest.raises(IndexError, match="changed synapse indices"):
            update_weights(em, model, bad, in_place=True)
    _same_engine_model(em, compile_model(build_model(cfg, mm)))  # nothing was patched
