"""Request/response encodings: round trips of every message type, compact events, errors, garbage."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.drivers.messages import (
    EVENTS_BATCH_DELTA,
    EVENTS_COUNTS,
    EVENTS_RAW,
    RUN_OPTION_FIELDS,
    Configure,
    Configured,
    Error,
    Hello,
    HelloOk,
    Kind,
    Ping,
    Pong,
    ProtocolError,
    Result,
    Run,
    decode_message,
    encode_message,
    error_from_exception,
    exception_from_error,
    pack_events,
    peek_request_id,
    unpack_events,
    varint_decode,
    varint_encode,
)
from firstspike.hal import chip, errors
from firstspike.hal.backend import DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents


@st.composite
def event_arrays(draw: st.DrawFn, label_max: int) -> tuple[np.ndarray, int]:
    batch = draw(st.integers(0, 40))
    n = draw(st.integers(0, 200)) if batch else 0
    ev = np.empty(n, dtype=SPIKE_DTYPE)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    big = draw(st.booleans())
    ev["batch"] = rng.integers(0, max(batch, 1), n)
    ev["time"] = rng.integers(0, 2**32 - 1 if big else 5000, n, dtype=np.uint64)
    ev["label"] = rng.integers(0, label_max + 1, n)
    ev = ev[np.lexsort((ev["label"], ev["time"], ev["batch"]))]
    return ev, batch


def run_options() -> st.SearchStrategy[RunOptions]:
    return st.builds(
        lambda d, rec, seed, ro, per, off: RunOptions(
            duration_ticks=d, record=rec, seed=seed, readout=tuple(ro), readout_period=min(per, d), entry_offset=off
        ),
        st.integers(1, chip.MAX_DURATION_TICKS),
        st.sampled_from(["first", "all"]),
        st.integers(0, 2**63 - 1),
        st.lists(st.integers(0, chip.N_NEURONS - 1), max_size=5),
        st.integers(1, 64),
        st.integers(0, 2**63 - 1),
    )


def test_run_encoding_carries_every_run_option() -> None:
    """If hal adds a RunOptions field, the wire must learn it (else it would be silently dropped)."""
    import dataclasses

    assert {f.name for f in dataclasses.fields(RunOptions)} == set(RUN_OPTION_FIELDS)


@given(st.lists(st.integers(0, 2**32 - 1), max_size=300))
@settings(deadline=None)
def test_varint_round_trip(values: list[int]) -> None:
    v = np.array(values, dtype=np.uint64)
    assert varint_decode(varint_encode(v), len(v)).tolist() == values


@given(event_arrays(chip.N_NEURONS - 1), st.sampled_from([None, EVENTS_RAW, EVENTS_BATCH_DELTA, EVENTS_COUNTS]))
@settings(deadline=None)
def test_event_packing_round_trip(evb: tuple[np.ndarray, int], fmt: int | None) -> None:
    ev, batch = evb
    data = pack_events(ev, batch, fmt)
    got, b, pos = unpack_events(data, 0, chip.N_NEURONS - 1)
    assert b == batch and pos == len(data)
    assert np.array_equal(got, ev)
    if fmt is None and len(ev):
        assert len(data) <= len(pack_events(ev, batch, EVENTS_RAW))


def test_event_packing_is_compact() -> None:
    """A typical first-spike result: ~4-6 bytes per event instead of 10."""
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 6000, (100, 138))
    sp = InputSpikes.from_times(t)  # same layout as recorded spikes
    raw = pack_events(sp.events, 100, EVENTS_RAW)
    packed = pack_events(sp.events, 100)
    assert len(packed) < 0.6 * len(raw)


@given(
    st.sampled_from(list(Kind)),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=300),
)
@settings(max_examples=400, deadline=None)
def test_random_bodies_raise_only_protocol_error(kind: Kind, rid: int, body: bytes) -> None:
    data = bytes([kind, 0]) + rid.to_bytes(4, "little") + body
    try:
        got_rid, _ = decode_message(data)
        assert got_rid == rid
    except ProtocolError:
        pass


@given(st.binary(max_size=200))
@settings(deadline=None)
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(data)


def _info() -> DeviceInfo:
    return DeviceInfo(model="m", serial=3, version="v1", max_events=1000, membrane_readout=2,
                      extra={"a": [1, 2], "b": "x"})


@given(st.integers(0, 2**32 - 1), st.booleans())
@settings(deadline=None)
def test_hello_round_trip(rid: int, with_digest: bool) -> None:
    for msg in (Hello(1, 3, "drv"), HelloOk(1, _info(), b"\x07" * 32 if with_digest else None)):
        got_rid, got = decode_message(encode_message(msg, rid))
        assert got_rid == rid and got == msg
        assert peek_request_id(encode_message(msg, rid)) == rid


def test_configure_round_trip_full_and_diff_compressed() -> None:
    a = ChipConfig()
    b = a.copy()
    b.synapses.weights[1, 5, 7] = 33
    b.routing.add(0, 3, 1, 5, 9)
    full = encode_message(Configure(b), 1)
    assert len(full) < len(b.to_bytes()) / 20  # mostly zeros: zlib
    _, got = decode_message(full)
    assert isinstance(got, Configure) and got.config == b
    diff = a.diff(b)
    _, got = decode_message(encode_message(Configure(diff), 2))
    assert got.config.apply(a) == b
    _, got = decode_message(encode_message(Configured(b.digest()), 3))
    assert got == Configured(b.digest())


@given(event_arrays(chip.N_INPUT_CHANNELS - 1), run_options(), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_run_round_trip(evb: tuple[np.ndarray, int], opts: RunOptions, rid: int) -> None:
    ev, batch = evb
    inp = InputSpikes(ev, batch)
    got_rid, got = decode_message(encode_message(Run(inp, opts), rid))
    assert got_rid == rid and isinstance(got, Run)
    assert got.options == opts
    assert got.inputs.batch_size == batch and np.array_equal(got.inputs.events, inp.events)


@given(event_arrays(chip.N_NEURONS - 1), st.integers(0, 2**40), st.sampled_from([None, "<i2", "<i4", "<f4"]),
       st.dictionaries(st.text(max_size=10), st.integers(-(2**63), 2**63 - 1), max_size=4))
@settings(max_examples=60, deadline=None)
def test_result_round_trip(evb: tuple[np.ndarray, int], dropped: int, mdt: str | None, stats: dict) -> None:
    ev, batch = evb
    membrane = None if mdt is None else np.arange(batch * 2 * 3, dtype=mdt).reshape(batch, 2, 3)
    res = RunResult(SpikeEvents(ev, batch), dropped, membrane, stats)
    _, got = decode_message(encode_message(Result(res), 9))
    r = got.result
    assert r.spikes == res.spikes and r.dropped == dropped and r.stats == stats
    if membrane is None:
        assert r.membrane is None
    else:
        assert r.membrane.dtype == membrane.dtype and np.array_equal(r.membrane, membrane)


@given(st.binary(max_size=500))
@settings(deadline=None)
def test_ping_error_round_trip(payload: bytes) -> None:
    for msg in (Ping(payload), Pong(payload), Error("CapacityError", "too big: " + payload.hex(), {"k": 1})):
        assert decode_message(encode_message(msg, 5))[1] == msg


@pytest.mark.parametrize(
    "exc",
    [
        errors.FieldRangeError("neurons.leak[3]", 2000, 0, 1022),
        errors.ConfigError("diff does not apply"),
        errors.ConfigDecodeError("bad magic"),
        errors.CapacityError("batch too large"),
        errors.DeviceBusyError("busy"),
        errors.BackendError("boom"),
        ProtocolError("nonsense"),
    ],
)
def test_errors_come_back_typed_with_the_device_message(exc: Exception) -> None:
    _, wire = decode_message(encode_message(error_from_exception(exc), 1))
    back = exception_from_error(wire)
    assert type(back) is type(exc) and str(back) == str(exc)
    if isinstance(exc, errors.FieldRangeError):
        assert (back.field, back.value, back.low, back.high) == (exc.field, exc.value, exc.low, exc.high)


def test_foreign_exceptions_become_backend_error() -> None:
    back = exception_from_error(error_from_exception(KeyError("x")))
    assert type(back) is errors.BackendError and "KeyError" in str(back)


def test_truncations_and_bad_envelopes() -> None:
    data = encode_message(Run(InputSpikes.from_times(np.array([[1.0, 2.0]])), RunOptions(100)), 4)
    for cut in range(len(data)):
        with pytest.raises(ProtocolError):
            decode_message(data[:cut])
    with pytest.raises(ProtocolError, match="flags"):
        decode_message(bytes([Kind.PING, 0x80]) + b"\0\0\0\0")
    with pytest.raises(ProtocolError, match="kind"):
        decode_message(bytes([0x42, 0]) + b"\0\0\0\0")
    with pytest.raises(ProtocolError, match="compressed"):
        decode_message(bytes([Kind.PING, 1]) + b"\0\0\0\0" + b"not zlib")
