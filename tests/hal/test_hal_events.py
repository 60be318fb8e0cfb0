"""Events: construction, ordering, first-spike extraction, units, split/concatenate."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from firstspike.hal import chip
from firstspike.hal.errors import FieldRangeError
from firstspike.hal.events import (
    SPIKE_DTYPE,
    InputSpikes,
    SpikeEvents,
    _ascending,
    _sort_key,
    entry_counts,
    model_to_ticks,
    seconds_to_ticks,
    ticks_to_model,
    ticks_to_seconds,
)


def test_units():
    assert seconds_to_ticks(1e-6) == 125
    assert ticks_to_seconds(750) == pytest.approx(6e-6)
    assert np.allclose(ticks_to_model(np.array([750, 1500]), 750), [1.0, 2.0])
    t = model_to_ticks(np.array([0.5, np.inf, np.nan]), 752)
    assert t.tolist() == [376, -1, -1]


times_arrays = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 8)),
    elements=st.one_of(st.floats(0, 5000, allow_nan=False), st.just(np.inf), st.just(-1.0)),
)


@settings(max_examples=100, deadline=None)
@given(times_arrays)
def test_from_times_encodes_exactly_the_finite_times(times):
    spikes = InputSpikes.from_times(times)
    assert spikes.batch_size == times.shape[0]
    ok = np.isfinite(times) & (times >= 0)
    assert len(spikes) == int(ok.sum())
    ev = spikes.events
    assert np.all(np.diff(ev["batch"].astype(np.int64)) >= 0)
    # decode back: per (batch, channel) the time
    back = np.full(times.shape, -1.0)
    back[ev["batch"], ev["label"]] = ev["time"]
    assert np.array_equal(back[ok], np.rint(times[ok]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1000), st.integers(0, 511)), max_size=60))
def test_first_spike_ticks_is_the_minimum_time(triples):
    ev = np.array(triples, dtype=[("batch", "<u4"), ("time", "<u4"), ("label", "<u2")]).astype(SPIKE_DTYPE)
    spikes = SpikeEvents(ev, 4)
    first = spikes.first_spike_ticks()
    expect = np.full((4, chip.N_NEURONS), -1)
    for b, t, n in triples:
        if expect[b, n] < 0 or t < expect[b, n]:
            expect[b, n] = t
    assert np.array_equal(first, expect)
    # the same from the columns form (no records built), and for a subset of neurons in any order
    twin = SpikeEvents.from_columns(*spikes.to_columns(), 4)
    assert np.array_equal(twin.first_spike_ticks(), expect)
    some = np.array([511, 0, 7, 300])
    assert np.array_equal(twin.first_spike_ticks(some), expect[:, some])
    m = spikes.first_spike_model_times(np.array([0, 5, 511]), 750.0)
    assert np.all(np.isinf(m[expect[:, [0, 5, 511]] < 0]))


def test_first_spike_ticks_with_all_spikes_recorded_takes_each_neurons_earliest():
    # neuron 5 fires twice in entry 0, neuron 7 once in each entry (record="all" results look like this)
    x = SpikeEvents.from_columns(np.array([3, 1], np.uint32), np.array([10, 15, 20, 4], np.uint32),
                                 np.array([5, 7, 5, 7], np.uint16), 2)
    assert x.first_spike_ticks(np.array([5, 7])).tolist() == [[10, 15], [-1, 4]]


@settings(max_examples=50, deadline=None)
@given(times_arrays, st.data())
def test_split_then_concatenate_preserves_order(times, data):
    spikes = InputSpikes.from_times(times)
    b = spikes.batch_size
    cut = data.draw(st.integers(0, b))
    parts = spikes.split([cut, b - cut])
    as_out = [SpikeEvents(p.events, p.batch_size) for p in parts]
    joined = SpikeEvents.concatenate(as_out)
    assert np.array_equal(joined.events, spikes.events)
    # parts held as columns (as devices and the wire return them) join without records, to the same value
    as_columns = [SpikeEvents.from_columns(*p.to_columns(), p.batch_size) for p in parts]
    joined_columns = SpikeEvents.concatenate(as_columns)
    assert joined_columns == joined and joined_columns.batch_size == b
    assert np.array_equal(joined_columns.events, spikes.events)


def test_bad_inputs_are_named():
    with pytest.raises(FieldRangeError, match="channel"):
        InputSpikes.from_times(np.zeros((1, 2)), channels=np.array([0, 5000]))
    with pytest.raises(ValueError, match="2-d"):
        InputSpikes.from_times(np.zeros(3))
    ev = np.zeros(1, SPIKE_DTYPE)
    ev["batch"] = 3
    with pytest.raises(FieldRangeError, match="batch"):
        InputSpikes(ev, 2)
    ev = np.zeros(1, SPIKE_DTYPE)
    ev["label"] = 600
    with pytest.raises(FieldRangeError, match="label"):
        SpikeEvents(ev, 1)
    with pytest.raises(TypeError, match="SPIKE_DTYPE"):
        InputSpikes(np.zeros(3), 1)


# Extreme field values: the packed sort key must order exactly like (batch, time, label) across the full ranges.
_extreme_events = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 3), st.integers(chip.MAX_BATCH - 4, chip.MAX_BATCH - 1)),
        st.one_of(st.integers(0, 3), st.integers(2**32 - 4, 2**32 - 1), st.integers(0, 2**32 - 1)),
        st.one_of(st.integers(0, 3), st.integers(chip.N_INPUT_CHANNELS - 4, chip.N_INPUT_CHANNELS - 1)),
    ),
    max_size=40,
)


def test_order_check_sees_a_later_entry_with_a_huge_time():
    ev = np.array([(1, 0, 0), (0, 2**32 - 1, 1023)], dtype=SPIKE_DTYPE)
    assert not _ascending(_sort_key(ev))
    assert InputSpikes(ev, 2).events["batch"].tolist() == [0, 1]


@settings(max_examples=200, deadline=None)
@given(_extreme_events, st.booleans())
def test_containers_sort_exactly_like_lexsort_at_extreme_values(triples, presort):
    if presort:  # the already-sorted fast path must be taken and be right
        triples = sorted(triples)
    ev = np.array(triples, dtype=SPIKE_DTYPE) if triples else np.empty(0, SPIKE_DTYPE)
    want = ev[np.lexsort((ev["label"], ev["time"], ev["batch"]))]
    got = InputSpikes(ev, chip.MAX_BATCH).events
    assert np.array_equal(got, want)
    # The order check itself, on the raw triples (a wrong "sorted" would skip the sort).
    assert _ascending(_sort_key(ev)) == (triples == sorted(triples))
    spikes = ev[ev["label"] < chip.N_NEURONS]
    want_spikes = spikes[np.lexsort((spikes["label"], spikes["time"], spikes["batch"]))]
    assert np.array_equal(SpikeEvents(spikes, chip.MAX_BATCH).events, want_spikes)


@settings(max_examples=200, deadline=None)
@given(_extreme_events)
def test_columns_round_trip_at_extreme_values(triples):
    ev = np.array(triples, dtype=SPIKE_DTYPE) if triples else np.empty(0, SPIKE_DTYPE)
    x = InputSpikes(ev, chip.MAX_BATCH)
    counts, times, labels = x.to_columns()
    assert counts.dtype == np.uint32 and len(counts) == chip.MAX_BATCH and counts.sum() == len(ev)
    assert np.array_equal(entry_counts(x.events["batch"], chip.MAX_BATCH), counts)
    assert np.array_equal(InputSpikes.from_columns(counts, times, labels, chip.MAX_BATCH).events, x.events)
    spikes = SpikeEvents(ev[ev["label"] < chip.N_NEURONS], chip.MAX_BATCH)
    assert SpikeEvents.from_columns(*spikes.to_columns(), chip.MAX_BATCH) == spikes


def test_columns_out_of_order_within_an_entry_are_sorted():
    # Entry 0: (7, 3) then (5, 9) is out of order; (5, 9) -> entry 1 starts: a drop at a boundary is fine.
    got = SpikeEvents.from_columns(
        np.array([2, 1], np.uint32), np.array([7, 5, 1], np.uint32), np.array([3, 9, 0], np.uint16), 2
    )
    assert got.events.tolist() == [(0, 5, 9), (0, 7, 3), (1, 1, 0)]
    # Same time, labels out of order.
    got = SpikeEvents.from_columns(
        np.array([2], np.uint32), np.array([4, 4], np.uint16), np.array([9, 3], np.uint16), 1
    )
    assert got.events["label"].tolist() == [3, 9]


def test_bad_columns_are_named():
    u32 = lambda *v: np.array(v, np.uint32)  # noqa: E731
    u16 = lambda *v: np.array(v, np.uint16)  # noqa: E731
    with pytest.raises(ValueError, match="2 counts for 3 batch entries"):
        SpikeEvents.from_columns(u32(1, 0), u32(5), u16(1), 3)
    with pytest.raises(ValueError, match="sum to 2 events but there are 1 times and 2 labels"):
        SpikeEvents.from_columns(u32(1, 1), u32(5), u16(1, 2), 2)
    with pytest.raises(FieldRangeError, match=r"SpikeEvents\.label"):
        SpikeEvents.from_columns(u32(1), u32(5), u16(512), 1)
    with pytest.raises(FieldRangeError, match=r"InputSpikes\.label"):
        InputSpikes.from_columns(u32(1), u32(5), u16(1024), 1)
    with pytest.raises(TypeError, match="times: must be a 1-d array of unsigned"):
        SpikeEvents.from_columns(u32(1), np.array([5.0]), u16(1), 1)
    with pytest.raises(FieldRangeError, match="batch_size"):
        SpikeEvents.from_columns(u32(), u32(), u16(), chip.MAX_BATCH + 1)


def test_columns_kept_by_spike_events_are_private_and_read_only():
    counts, times, labels = np.array([2, 1], np.uint32), np.array([5, 7, 1], np.uint32), np.array([3, 3, 0], np.uint16)
    x = SpikeEvents.from_columns(counts, times, labels, 2)
    times[0] = 99  # the caller's arrays stay the caller's
    kept = x.to_columns()
    assert kept[1].tolist() == [5, 7, 1] == x.events["time"].tolist()
    with pytest.raises(ValueError, match="read-only"):
        kept[1][0] = 0


def test_spike_events_from_columns_build_records_only_when_read():
    counts = np.array([2, 0, 1], np.uint32)
    times, labels = np.array([5, 7, 1], np.uint16), np.array([3, 4, 0], np.uint16)
    x = SpikeEvents.from_columns(counts, times, labels, 3)
    assert x._events is None and len(x) == 3  # nothing built yet
    assert x.events.tolist() == [(0, 5, 3), (0, 7, 4), (2, 1, 0)]
    # equal by value to the records form, whatever the columns' integer widths
    y = SpikeEvents(x.events.copy(), 3)
    assert x == y and y == x
    wide = SpikeEvents.from_columns(counts, times.astype(np.uint32), labels, 3)
    assert wide == x
    assert x != SpikeEvents.from_columns(counts, np.array([5, 8, 1], np.uint16), labels, 3)
    assert x != SpikeEvents.from_columns(np.array([2, 1, 0], np.uint32), times, labels, 3)


def test_spike_events_are_immutable_values():
    import copy
    import pickle

    x = SpikeEvents.from_columns(np.array([1], np.uint32), np.array([9], np.uint32), np.array([2], np.uint16), 1)
    with pytest.raises(AttributeError, match="immutable"):
        x.batch_size = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        x.events = x.events  # type: ignore[misc]
    for y in (pickle.loads(pickle.dumps(x)), copy.deepcopy(x), copy.copy(x)):
        assert y == x and y.batch_size == 1
    # the records are read-only in both forms, so they cannot drift from the columns kept beside them
    for y in (x, SpikeEvents(x.events, 1)):
        with pytest.raises(ValueError, match="read-only"):
            y.events["time"][0] = 1
    with pytest.raises(TypeError):
        hash(x)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_columns_in_any_order_give_the_sorted_events(data):
    """from_columns keeps (time, label)-sorted entries as they are and sorts the others; either way its events are
    the columns' events sorted by (batch, time, label), whatever the column dtypes."""
    b = data.draw(st.integers(1, 5))
    counts = np.array(data.draw(st.lists(st.integers(0, 6), min_size=b, max_size=b)), dtype=np.uint32)
    n = int(counts.sum())
    tdt = data.draw(st.sampled_from([np.uint8, np.uint16, np.uint32]))
    ldt = data.draw(st.sampled_from([np.uint16, np.uint32]))
    times = np.array(data.draw(st.lists(st.integers(0, 7), min_size=n, max_size=n)), dtype=tdt)
    labels = np.array(data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=ldt)
    if data.draw(st.booleans()):  # sorted within each entry: the path that keeps the columns
        ent = np.repeat(np.arange(b), counts)
        order = np.lexsort((labels, times, ent))
        times, labels = times[order], labels[order]
    got = SpikeEvents.from_columns(counts, times, labels, b).events
    ent = np.repeat(np.arange(b), counts)
    order = np.lexsort((labels, times, ent))
    assert got["batch"].tolist() == ent[order].tolist()
    assert got["time"].tolist() == times[order].tolist()
    assert got["label"].tolist() == labels[order].tolist()
