"""Session weight updates travel as config diffs; chunking with entry offsets never changes results."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from itl_support import SpyBackend, compiled_small, yinyang_like_inputs

from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.mirror import ConfigMirror
from firstspike.runtime.session import Session
from firstspike.sim_device import SimBackend


def test_update_weights_sends_only_the_changed_synapses():
    compiled = compiled_small(seed=4)
    spy = SpyBackend(SimBackend(mismatch=False, noise=False))
    session = Session(spy, compiled)
    assert len(spy.configs) == 1 and isinstance(spy.configs[0], ChipConfig)

    w = [np.array(a) for a in compiled.source.weights]
    q = compiled.weight_steps
    # move 7 weights of layer 0 and 3 of layer 1 by exactly +2 steps (same sign, so one synapse each)
    changes = {0: [(0, 0), (1, 3), (2, 5), (3, 7), (4, 9), (0, 11), (2, 13)], 1: [(0, 0), (5, 1), (20, 2)]}
    for k, cells in changes.items():
        for i, j in cells:
            w[k][i, j] = np.sign(w[k][i, j]) * (round(abs(w[k][i, j]) / q[k]) + 2) * q[k]
    diff = session.update_weights(w)
    assert isinstance(diff, ConfigDiff) and isinstance(spy.configs[-1], ConfigDiff)
    assert list(diff.patches) == ["synapses.weights"]
    assert diff.changed_entries() == 10
    assert not diff.replaced
    # the device now realises exactly the re-quantised weights
    from firstspike.compiler import effective_weights

    held = spy.inner.config
    for got, want in zip(effective_weights(held, compiled), compiled.quantize(w), strict=True):
        np.testing.assert_array_equal(got, want)
    # an update that changes nothing digital sends nothing
    n = len(spy.configs)
    tiny = [a + 1e-6 * qk for a, qk in zip(w, q, strict=True)]
    assert session.update_weights(tiny).empty
    assert len(spy.configs) == n


def test_sign_flip_moves_a_weight_between_the_excitatory_and_inhibitory_row():
    compiled = compiled_small(seed=5)
    session = Session(SimBackend(mismatch=False, noise=False), compiled)
    w = [np.array(a) for a in compiled.source.weights]
    w[1][3, 1] = -abs(w[1][3, 1]) - 0.5
    w[1][4, 1] = abs(w[1][4, 1]) + 0.5
    before = np.sign(compiled.quantize(compiled.source.weights)[1][[3, 4], 1])
    diff = session.update_weights(w)
    flips = int(np.sum(before != np.sign(compiled.quantize(w)[1][[3, 4], 1])))
    # a flipped sign clears one synapse and sets the other: two entries; an unflipped change: one
    assert diff.changed_entries() == 2 * flips + (2 - flips)


def test_chunking_with_entry_offsets_gives_identical_results_on_a_noisy_device():
    compiled = compiled_small(seed=6)
    x = yinyang_like_inputs(23, seed=9)
    whole = Session(SimBackend(serial=3), compiled).run(x, seed=77)
    spy = SpyBackend(SimBackend(serial=3), max_batch=5)
    chunked_session = Session(spy, compiled)
    chunked = chunked_session.run(x, seed=77)
    assert chunked.chunks == 5
    assert [b for b, _ in spy.runs] == [5, 5, 5, 5, 3]
    assert [o.entry_offset for _, o in spy.runs] == [0, 5, 10, 15, 20]
    assert chunked.events == whole.events
    for a, b in zip(chunked.layer_times, whole.layer_times, strict=True):
        np.testing.assert_array_equal(a, b)
    assert chunked.stats == whole.stats
    # a data set run in two calls with the right entry offset is the same as one call, too
    first = chunked_session.run(x[:10], seed=77)
    second = chunked_session.run(x[10:], seed=77, entry_offset=10)
    np.testing.assert_array_equal(np.concatenate([first.output_times, second.output_times]), whole.output_times)
    # and the noise really depends on the seed (otherwise the test above would prove nothing)
    other = Session(SimBackend(serial=3), compiled).run(x, seed=78)
    assert other.events != whole.events


def test_the_mirrors_diff_equals_the_generic_diff():
    """The session's weight updates are diffs the device's mirror computes from the configuration it holds
    (known digest, nothing hashed twice); they must equal ``ChipConfig.diff``."""
    compiled = compiled_small(seed=8)
    w = [np.array(a) * 1.3 for a in compiled.source.weights]
    new = compiled.update_weights(w)
    base = compiled.config
    mirror = ConfigMirror()
    mirror.commit(base, base.digest())
    plan = mirror.plan(new, new.digest())
    assert plan.kind == "diff"
    fast, slow = plan.diff, base.diff(new)
    assert fast.base_digest == slow.base_digest and fast.target_digest == slow.target_digest
    assert fast.target_digest == new.digest()
    assert list(fast.patches) == list(slow.patches) == ["synapses.weights"]
    for a, b in zip(fast.patches["synapses.weights"], slow.patches["synapses.weights"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert fast.apply(base) == new
    held = mirror.plan(base, base.digest())
    assert held.kind == "none" and held.diff.empty


def test_the_mirror_keeps_the_sessions_own_update_and_stage_configs_are_copies():
    """An update's configuration goes to the device's mirror without another copy (the session built it and never
    changes it), so what a caller gets from ``stage_configs`` must be a copy: changing it changes nothing held."""
    compiled = compiled_small(seed=6)
    device = SimBackend(mismatch=False, noise=False)
    session = Session(device, compiled)
    w = [np.array(a) * 1.1 for a in compiled.source.weights]
    assert not session.update_weights(w).empty
    held = device.mirror.config
    assert held is session._stage_configs[0]  # no copy on the way
    before = held.synapses.weights.copy()
    mine = session.stage_configs[0]
    assert mine is not held and mine == held
    mine.synapses.weights[:] = 0
    np.testing.assert_array_equal(device.mirror.config.synapses.weights, before)
    assert device.mirror.holds(held.digest())
