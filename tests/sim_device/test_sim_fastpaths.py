"""Fast paths that must not change bits: compiled temporal noise equals the numpy spec, results do not depend on
the number of numba threads, and the serial (single-chunk) kernel equals the parallel one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.hal.backend import RunOptions
from firstspike.hal.events import InputSpikes
from firstspike.sim_device import analog, fastnoise
from firstspike.sim_device._sorting import sort_nearly
from firstspike.sim_device.backend import SimBackend
from firstspike.sim_device.batch import _noisy_numpy, assemble_spikes, spikes_from_columns
from firstspike.sim_device.engine import CHUNK_ENTRIES
from firstspike.sim_device.examples import mnist16_network, mnist_like_inputs

keys = st.lists(st.integers(0, 2**63 - 1), min_size=0, max_size=40)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), entries=keys, neurons=st.lists(st.integers(0, 511), max_size=20))
def test_threshold_noise_matches_the_numpy_spec(seed: int, entries: list[int], neurons: list[int]) -> None:
    e, n = np.array(entries, dtype=np.int64), np.array(neurons, dtype=np.int64)
    assert np.array_equal(fastnoise.threshold_noise(seed, e, n), analog.threshold_noise(seed, e, n))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), data=st.data())
def test_input_noise_matches_the_numpy_spec(seed: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(0, 50))
    ints = lambda hi: np.array(data.draw(st.lists(st.integers(0, hi), min_size=m, max_size=m)), dtype=np.int64)  # noqa: E731
    e, c, k = ints(2**62), ints(1023), ints(1000)
    lost_f, jit_f = fastnoise.input_noise(seed, e, c, k)
    lost_a, jit_a = analog.input_noise(seed, e, c, k)
    assert np.array_equal(lost_f, lost_a) and np.array_equal(jit_f, jit_a)
    assert lost_f.dtype == lost_a.dtype and jit_f.dtype == jit_a.dtype


def test_input_noise_loses_events_at_the_spec_rate() -> None:
    n = 200_000
    lost, _ = fastnoise.input_noise(9, np.zeros(n, dtype=np.int64), np.arange(n) % 11, np.arange(n))
    assert 0.5 * n / 4096 < lost.sum() < 1.5 * n / 4096


def test_results_do_not_depend_on_thread_count_or_chunking() -> None:
    import numba

    rng = np.random.default_rng(8)
    net = mnist16_network(rng)
    n = 3 * CHUNK_ENTRIES + 5
    inputs = InputSpikes.from_times(mnist_like_inputs(rng, n) * 752, net.input_channels)
    dev = SimBackend(serial=2)
    dev.configure(net.config)
    opts = RunOptions(duration_ticks=6000, record="all", seed=7)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = dev.run(inputs, opts)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = dev.run(inputs, opts)
    finally:
        numba.set_num_threads(before)
    assert one.spikes == many.spikes and one.stats == many.stats
    assert len(one.spikes) > 1000
    # one entry at a time (the serial single-chunk kernel) reproduces the parallel batch
    parts = inputs.split([1] * 4 + [n - 4])
    for b in range(4):
        single = dev.run(parts[b], RunOptions(duration_ticks=6000, record="all", seed=7, entry_offset=b))
        ev = one.spikes.events
        mine = ev[ev["batch"] == b]
        assert np.array_equal(single.spikes.events["time"], mine["time"])
        assert np.array_equal(single.spikes.events["label"], mine["label"])


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
    order=st.sampled_from(["random", "sorted", "reversed", "nearly sorted", "few values"]),
)
def test_adaptive_sort_equals_numpy_sort(n: int, seed: int, order: str) -> None:
    """``sort_nearly`` (insertion sort handing over to a full sort past its move budget, or at once when many
    neighbours are out of order) sorts any input: sorted, reversed and random (the hand-over), sorted with a few
    elements moved (the spike lists it is meant for), and many equal keys."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-(2**62), 2**62, size=n, dtype=np.int64)
    if order == "sorted":
        a = np.sort(a)
    elif order == "reversed":
        a = np.sort(a)[::-1].copy()
    elif order == "nearly sorted":
        a = np.sort(a)
        k = rng.integers(0, n, size=min(n, 3))
        a[k] = rng.integers(-(2**62), 2**62, size=len(k), dtype=np.int64)
    elif order == "few values":
        a = rng.integers(0, 3, size=n, dtype=np.int64)
    got = a.copy()
    sort_nearly(got)
    assert np.array_equal(got, np.sort(a))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**64 - 1),
    gen=st.integers(0, 2**32 - 1),
    n=st.sampled_from([0, 1, 7, 300, 60_000]),
    channels=st.sampled_from([1, 3, 1024]),
    duration=st.sampled_from([5, 200, 6000]),
    offset=st.integers(0, 2**20),
)
def test_compiled_input_noise_pass_equals_the_numpy_steps(
    seed: int, gen: int, n: int, channels: int, duration: int, offset: int
) -> None:
    """Loss, jitter, clipping and the re-sort of ``fastnoise.noisy_inputs`` equal the whole-array numpy path,
    including repeated channels in an entry (occurrence > 0), jitter past both ends of the run and, with 60 000
    events, lost ones (2^-12 each)."""
    rng = np.random.default_rng(gen)
    b = np.sort(rng.integers(0, max(1, n // 50), size=n))
    t = rng.integers(0, duration, size=n)
    ch = rng.integers(0, channels, size=n)
    order = np.lexsort((ch, t, b))
    b, t, ch = b[order], t[order], ch[order]
    fast = fastnoise.noisy_inputs(seed, b, t, ch, offset, duration)
    assert fast is not None
    ref = _noisy_numpy(b, t, ch, int(b.max(initial=0)) + 1, duration, seed=seed, entry_offset=offset)
    for got, want in zip(fast[:3], (ref.batch, ref.time, ref.channel), strict=True):
        assert np.array_equal(got, want)
    assert fast[3] == ref.lost


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_spike_columns_cut_at_the_buffer_equal_the_first_events(data) -> None:
    """The engine's sorted columns -> events: the same as assembling the records, cut to the first ``max_events``
    in (batch, time, label) order (whole entries, part of one, then none), the rest counted as dropped."""
    b = data.draw(st.integers(1, 6))
    counts = np.array(data.draw(st.lists(st.integers(0, 5), min_size=b, max_size=b)), dtype=np.uint32)
    n = int(counts.sum())
    ent = np.repeat(np.arange(b), counts)
    t = np.array(data.draw(st.lists(st.integers(0, 99), min_size=n, max_size=n)), dtype=np.int64)
    nrn = np.array(data.draw(st.lists(st.integers(0, 511), min_size=n, max_size=n, unique=True)), dtype=np.int64)
    order = np.lexsort((nrn, t, ent))
    t, nrn = t[order], nrn[order]
    cap = data.draw(st.integers(0, n + 2))
    got, dropped = spikes_from_columns(counts.copy(), t.astype(np.uint32), nrn.astype(np.uint16), b, cap)
    full, none_dropped = assemble_spikes(ent, t, nrn, b, "all", 10**9)
    assert none_dropped == 0 and dropped == max(0, n - cap)
    assert np.array_equal(got.events, full.events[:cap]) and got.batch_size == b

