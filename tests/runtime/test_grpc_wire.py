"""Property tests of the wire encoders/decoders (firstspike.runtime.wire) and of the grpc:// URI parser."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.hal import chip
from firstspike.hal.backend import DeviceInfo, RunOptions, RunResult
from firstspike.hal.errors import FieldRangeError
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents
from firstspike.hal.registry import DeviceURI
from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.runtime import wire
from firstspike.runtime.remote import GrpcBackend, parse_targets


@st.composite
def event_arrays(draw, label_max: int):
    batch = draw(st.integers(0, 20))
    n = draw(st.integers(0, 60)) if batch else 0
    ev = np.zeros(n, SPIKE_DTYPE)
    if n:
        ev["batch"] = draw(st.lists(st.integers(0, batch - 1), min_size=n, max_size=n))
        ev["time"] = draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n))
        ev["label"] = draw(st.lists(st.integers(0, label_max), min_size=n, max_size=n))
    return ev, batch


@given(event_arrays(chip.N_INPUT_CHANNELS - 1))
def test_inputs_round_trip(data):
    ev, batch = data
    inputs = InputSpikes(ev, batch)
    msg = wire.pack_events(inputs.events, inputs.batch_size)
    assert len(msg.events) == 10 * len(ev)
    back = wire.unpack_inputs(pb.SpikeBatch.FromString(msg.SerializeToString()))
    assert back.batch_size == batch and np.array_equal(back.events, inputs.events)


@given(event_arrays(chip.N_NEURONS - 1), st.sampled_from([2**16 - 1, 2**16, 2**32 - 1]))
def test_columns_round_trip_and_layout(data, time_cap):
    ev, batch = data
    ev["time"] = np.minimum(ev["time"], time_cap)  # both sides of the u16/u32 time switch
    for container, unpack in ((SpikeEvents, wire.unpack_spikes), (InputSpikes, wire.unpack_inputs)):
        x = container(ev, batch)
        msg = pb.SpikeBatch.FromString(wire.pack_spikes(x, wire.COLUMNS).SerializeToString())
        assert unpack(msg) == x if container is SpikeEvents else np.array_equal(unpack(msg).events, x.events)
        # The documented layout: u32 count per entry, then u16 (all times < 2**16) or u32 times, u16 labels.
        wide = len(ev) > 0 and int(ev["time"].max()) >= 2**16
        assert msg.layout == wire.COLUMNS and msg.time_bytes == (4 if wide else 2) and not msg.events
        assert np.frombuffer(msg.entry_counts, "<u4").tolist() == np.bincount(ev["batch"], minlength=batch).tolist()
        assert np.frombuffer(msg.times, "<u4" if wide else "<u2").tolist() == x.events["time"].tolist()
        assert np.frombuffer(msg.labels, "<u2").tolist() == x.events["label"].tolist()


@given(event_arrays(chip.N_NEURONS - 1), st.randoms(use_true_random=False))
def test_unsorted_columns_are_sorted_on_arrival(data, rnd):
    ev, batch = data
    spikes = SpikeEvents(ev, batch)
    counts, times, labels = spikes.to_columns()
    # Shuffle within each entry: the receiver must sort, not trust the order.
    order = np.arange(len(times))
    for lo, hi in zip(np.cumsum(counts) - counts, np.cumsum(counts), strict=True):
        block = order[lo:hi].tolist()
        rnd.shuffle(block)
        order[lo:hi] = block
    msg = pb.SpikeBatch(
        batch_size=batch,
        layout=wire.COLUMNS,
        entry_counts=counts.astype("<u4").tobytes(),
        times=times[order].astype("<u4").tobytes(),
        labels=labels[order].astype("<u2").tobytes(),
        time_bytes=4,
    )
    assert wire.unpack_spikes(msg) == spikes


@settings(max_examples=300)
@given(
    st.integers(0, 2**32 - 1),
    st.binary(max_size=40),
    st.binary(max_size=40),
    st.binary(max_size=40),
    st.integers(0, 6),
    st.integers(0, 3),
)
def test_unpack_rejects_garbage_columns_with_value_errors(batch, counts, times, labels, time_bytes, layout):
    msg = pb.SpikeBatch(
        batch_size=batch, layout=layout, entry_counts=counts, times=times, labels=labels, time_bytes=time_bytes
    )
    for unpack in (wire.unpack_inputs, wire.unpack_spikes):
        with contextlib.suppress(ValueError):  # every rejection is a ValueError subclass naming the field
            got = unpack(msg)
            # accepted: then it is exactly what the columns say
            assert got.batch_size == batch and len(got) == len(labels) // 2


@given(event_arrays(chip.N_NEURONS - 1))
def test_spikes_round_trip_and_layout(data):
    ev, batch = data
    spikes = SpikeEvents(ev, batch)
    msg = wire.pack_events(spikes.events, batch)
    assert wire.unpack_spikes(msg) == spikes
    # The documented layout: 10-byte little-endian records u32 batch, u32 time, u16 label.
    for k, rec in enumerate(spikes.events[:3]):
        raw = msg.events[10 * k : 10 * k + 10]
        assert int.from_bytes(raw[0:4], "little") == rec["batch"]
        assert int.from_bytes(raw[4:8], "little") == rec["time"]
        assert int.from_bytes(raw[8:10], "little") == rec["label"]


@given(st.binary(max_size=64), st.integers(0, 2**32 - 1))
def test_unpack_rejects_garbage_with_value_errors(raw, batch):
    msg = pb.SpikeBatch(batch_size=batch, events=raw)
    with contextlib.suppress(ValueError):  # every rejection is a ValueError subclass naming the field
        wire.unpack_inputs(msg)
    with contextlib.suppress(ValueError):
        wire.unpack_spikes(msg)


@st.composite
def run_options(draw):
    duration = draw(st.integers(1, chip.MAX_DURATION_TICKS))
    readout = tuple(draw(st.lists(st.integers(0, chip.N_NEURONS - 1), max_size=4)))
    return RunOptions(
        duration_ticks=duration,
        record=draw(st.sampled_from(["first", "all"])),
        seed=draw(st.integers(0, 2**63 - 1)),
        readout=readout,
        readout_period=draw(st.integers(1, duration)),
        entry_offset=draw(st.integers(0, 2**63 - 1)),
    )


@given(run_options())
def test_options_round_trip(o):
    msg = pb.RunOptions.FromString(wire.options_to_pb(o).SerializeToString())
    assert wire.options_from_pb(msg) == o


@given(st.integers(0, 2**32 - 1), st.integers(0, 5), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1))
def test_options_decoder_never_crashes(duration, record, seed, period):
    msg = pb.RunOptions(duration_ticks=duration, record=record, seed=seed, readout_period=period)
    try:
        o = wire.options_from_pb(msg)
    except ValueError as e:
        assert "options" in str(e) or "RunOptions" in str(e)
    else:
        assert o.duration_ticks == duration and 1 <= o.readout_period <= duration


def test_options_defaults():
    o = wire.options_from_pb(pb.RunOptions(duration_ticks=5))
    assert o.record == "first" and o.readout_period == 5 and o.entry_offset == 0
    with pytest.raises(FieldRangeError, match="duration_ticks"):
        wire.options_from_pb(pb.RunOptions())


@given(st.sampled_from(["<i2", "<i4"]), st.lists(st.integers(0, 5), min_size=0, max_size=3), st.data())
def test_tensor_round_trip(dtype, shape, data):
    n = int(np.prod(shape)) if shape else 1
    info = np.iinfo(np.dtype(dtype))
    values = data.draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n))
    a = np.array(values, dtype=dtype).reshape(shape)
    back = wire.tensor_from_pb(pb.Tensor.FromString(wire.tensor_to_pb(a).SerializeToString()))
    assert back.dtype == a.dtype and np.array_equal(back, a)


@given(st.text(max_size=6), st.lists(st.integers(0, 2**20), max_size=5), st.binary(max_size=40))
def test_tensor_decoder_rejects_garbage(dtype, shape, data):
    with contextlib.suppress(ValueError):  # rejections are ValueErrors; nothing else may escape
        wire.tensor_from_pb(pb.Tensor(dtype=dtype, shape=shape, data=data))


@settings(max_examples=50)
@given(
    st.text(max_size=20),
    st.integers(0, 2**63 - 1),
    st.dictionaries(
        st.text(min_size=1, max_size=8), st.one_of(st.integers(-(2**62), 2**62), st.floats(allow_nan=False)), max_size=5
    ),
    st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
)
def test_info_round_trip(model, serial, rm, extra):
    info = DeviceInfo(model=model, serial=serial, version="v", resource_model=rm, max_batch=7, extra=extra)
    back = wire.info_from_pb(pb.GetInfoResponse.FromString(wire.info_to_pb(info).SerializeToString()))
    assert back.model == model and back.serial == serial and back.max_batch == 7
    assert back.resource_model == rm
    assert all(type(back.resource_model[k]) is type(v) for k, v in rm.items())  # ints stay ints
    server = back.extra.pop("server")
    assert back.extra == extra and server["protocol"] == wire.PROTOCOL


def test_result_round_trip_and_join():
    ev = np.zeros(3, SPIKE_DTYPE)
    ev["batch"], ev["time"], ev["label"] = [0, 1, 1], [5, 7, 9], [3, 4, 511]
    mem = np.arange(2 * 2 * 3, dtype=np.int16).reshape(2, 2, 3)
    r = RunResult(SpikeEvents(ev, 2), 4, mem, {"input_events": 9})
    back = wire.result_from_pb(wire.result_to_pb(r, config_id="ab", sequence=3))
    assert back.spikes == r.spikes and back.dropped == 4 and back.stats == {"input_events": 9}
    assert np.array_equal(back.membrane, mem)
    joined = RunResult.concatenate([r, back])
    assert joined.spikes.batch_size == 4 and len(joined.spikes) == 6 and joined.dropped == 8
    assert joined.membrane.shape == (4, 2, 3) and joined.stats == {"input_events": 18}
    assert list(joined.spikes.events["batch"]) == [0, 1, 1, 2, 3, 3]
    # a part without membrane samples: no traces for the joined batch rather than misaligned ones
    no_trace = RunResult(SpikeEvents(np.zeros(0, SPIKE_DTYPE), 1), 0, None, {"input_events": 1})
    joined = RunResult.concatenate([r, no_trace])
    assert joined.membrane is None and joined.spikes.batch_size == 3 and joined.stats == {"input_events": 10}
    empty = RunResult.concatenate([])
    assert empty.spikes.batch_size == 0 and empty.membrane is None and empty.dropped == 0


@given(
    st.lists(
        st.tuples(st.sampled_from(["127.0.0.1", "h", "[::1]", "a.b-c"]), st.integers(1, 65535)), min_size=1, max_size=4
    )
)
def test_parse_targets(pairs):
    netloc = ",".join(f"{h}:{p}" for h, p in pairs)
    assert parse_targets(netloc) == [f"{h}:{p}" for h, p in pairs]


@given(st.text(max_size=30))
def test_grpc_uri_parser_rejects_by_name(text):
    try:
        uri = DeviceURI.parse("grpc://" + text)
        parse_targets(uri.netloc)
    except ValueError as e:
        assert str(e)
    # No exception of another type may escape (the targets are only parsed; nothing connects).


def test_from_uri_rejects_unknown_params():
    with pytest.raises(ValueError, match="typo"):
        GrpcBackend.from_uri(DeviceURI.parse("grpc://127.0.0.1:1?typo=1"))
