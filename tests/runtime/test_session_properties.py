"""Property tests of the session's unit conversions and of the diffs its weight updates travel as."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

sys.path.insert(0, str(Path(__file__).resolve().parent))

from itl_support import compiled_small

from firstspike.hal.mirror import ConfigMirror
from firstspike.hal.null_backend import NullBackend
from firstspike.runtime.commands._args import int_list
from firstspike.runtime.session import Session

COMPILED = compiled_small(seed=3)
SESSION = Session(NullBackend(), COMPILED)

times = arrays(np.float64, st.integers(1, 12), elements=st.one_of(
    st.floats(0.0, 50.0), st.just(np.inf), st.just(np.nan), st.floats(-5.0, -1e-9)))


@given(times)
def test_model_time_to_ticks_rounds_to_the_nearest_tick_and_keeps_silence(t):
    ticks = SESSION.to_ticks(t)
    back = SESSION.tick_rounded(t)
    spikes = np.isfinite(t) & (t >= 0)
    assert np.array_equal(np.isnan(ticks), ~spikes)
    assert np.all(np.isinf(back[~spikes]))
    tau = COMPILED.tau_s_ticks
    assert np.all(np.abs(back[spikes] - t[spikes]) <= 0.5 / tau + 1e-12)
    assert np.array_equal(ticks[spikes], np.rint(ticks[spikes]))
    # idempotent: rounding rounded times changes nothing
    assert np.array_equal(SESSION.tick_rounded(back), back)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 2.0))
def test_the_mirrors_diff_equals_the_generic_diff_for_any_weight_change(seed, size):
    rng = np.random.default_rng(seed)
    base = COMPILED.update_weights([w + rng.normal(0, 0.3, w.shape) for w in COMPILED.source.weights])
    target = COMPILED.update_weights([w + rng.normal(0, size, w.shape) for w in COMPILED.source.weights])
    mirror = ConfigMirror()
    mirror.commit(base, base.digest())
    plan = mirror.plan(target, target.digest())
    fast, slow = plan.diff, base.diff(target)
    assert fast is not None and plan.kind in ("diff", "none")
    assert (fast.base_digest, fast.target_digest) == (slow.base_digest, slow.target_digest)
    assert fast.changed_entries() == slow.changed_entries()
    assert fast.apply(base) == target


@given(st.text(max_size=30))
def test_integer_list_parser_accepts_only_comma_separated_integers(text):
    try:
        out = int_list(text)
    except argparse.ArgumentTypeError as e:
        assert str(e).startswith("expected")
    else:
        assert out == [int(v) for v in text.split(",") if v.strip()]
        assert out and min(out) >= 0
