"""Conversions between hal objects and the ``firstspike.v1`` protobuf messages (client and server share them).

Spike events travel in one of two layouts (``SpikeBatch.layout``): packed little-endian records of
:data:`firstspike.hal.events.SPIKE_DTYPE` (10 bytes: u32 batch, u32 time in ticks, u16 label) in one ``bytes`` field, or
columns (u32 events per entry, u16/u32 times, u16 labels: 4-6 bytes per event, what clients ask results in);
membrane samples as a dtype string, a shape and raw C-order bytes. Every decoder validates what it reads and
raises a ``ValueError`` subclass naming the field.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from firstspike.hal import chip
from firstspike.hal.backend import DeviceInfo, RunOptions, RunResult
from firstspike.hal.errors import FieldRangeError, HalError
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents
from firstspike.proto.firstspike.v1 import device_pb2 as pb

if TYPE_CHECKING:  # the compiler is imported by whoever holds a compiled network, not by the wire format
    from firstspike.compiler.artifact import CompiledNetwork

PROTOCOL = "firstspike.v1"
SERVICE_NAME = "firstspike.v1.Device"
#: Trailing-metadata key carrying a machine-readable reason for an error status (see docs/protocol.md).
REASON_KEY = "fs-reason"
#: Metadata key of the bearer token.
AUTH_KEY = "authorization"

# Reasons the server attaches to error statuses; clients branch on these, never on message text.
REASON_LEASE_UNKNOWN = "lease-unknown"
REASON_CONFIG_MISMATCH = "config-mismatch"
REASON_DIFF_BASE = "diff-base-mismatch"
REASON_DEVICE_BUSY = "device-busy"
REASON_INVALID = "invalid-argument"
REASON_CAPACITY = "capacity"
REASON_UNAUTHENTICATED = "unauthenticated"
REASON_SHUTTING_DOWN = "shutting-down"
REASON_BACKEND = "backend-error"
REASON_UNIMPLEMENTED = "unimplemented"
REASON_INTERNAL = "internal"
REASON_TOO_MANY_LEASES = "too-many-leases"

RECORD_TO_PB = {"first": pb.RECORD_FIRST, "all": pb.RECORD_ALL}
RECORD_FROM_PB: dict[int, Literal["first", "all"]] = {
    pb.RECORD_UNSPECIFIED: "first",
    pb.RECORD_FIRST: "first",
    pb.RECORD_ALL: "all",
}
MEMBRANE_DTYPES = ("<i2", "<i4")
DEFAULT_READOUT_PERIOD = 8


class WireError(HalError, ValueError):
    """A message field holds a value the protocol does not allow (the message names the field)."""


# ---- spikes ------------------------------------------------------------------------------------------
RECORDS = pb.SPIKE_LAYOUT_RECORDS
COLUMNS = pb.SPIKE_LAYOUT_COLUMNS
LAYOUTS = {RECORDS: "SPIKE_LAYOUT_RECORDS(0)", COLUMNS: "SPIKE_LAYOUT_COLUMNS(1)"}
_U16_TIMES = 1 << 16  # columns carry times as u16 when every time is below this


def check_layout(layout: int, what: str) -> int:
    """``layout`` if it names a SpikeLayout; a WireError naming ``what`` and the allowed values otherwise."""
    if layout not in LAYOUTS:
        raise WireError(f"{what}: {int(layout)} is not a spike layout; allowed {', '.join(LAYOUTS.values())}")
    return int(layout)


def max_spike_bytes(layout: int, batch_size: int, n_events: int) -> int:
    """The most bytes ``n_events`` spikes of ``batch_size`` entries take in ``layout`` (columns: a u32 count per
    entry, at most a u32 time and a u16 label per spike)."""
    if layout == RECORDS:
        return SPIKE_DTYPE.itemsize * n_events
    return 4 * batch_size + 6 * n_events


def _record_bytes(events: np.ndarray) -> bytes:
    return np.ascontiguousarray(events, dtype=SPIKE_DTYPE).tobytes()


def pack_events(events: np.ndarray, batch_size: int) -> pb.SpikeBatch:
    """Events of SPIKE_DTYPE (any order) -> SpikeBatch in the records layout (10-byte little-endian records)."""
    return pb.SpikeBatch(batch_size=int(batch_size), events=_record_bytes(events))


def pack_spikes(x: InputSpikes | SpikeEvents, layout: int = RECORDS) -> pb.SpikeBatch:
    """A hal event container -> SpikeBatch in ``layout``. Columns use u16 times when all times are < 2**16."""
    msg = pb.SpikeBatch()
    fill_spikes(msg, x, layout)
    return msg


def fill_spikes(msg: pb.SpikeBatch, x: InputSpikes | SpikeEvents, layout: int = RECORDS) -> None:
    """Write ``x`` into the (empty) SpikeBatch ``msg`` in ``layout``, e.g. a response's own ``spikes`` field:
    building a separate message and assigning it would copy every byte once more."""
    msg.batch_size = int(x.batch_size)
    if check_layout(layout, "layout") == RECORDS:
        msg.events = _record_bytes(x.events)
        return
    counts, times, labels = x.to_columns()
    narrow = times.dtype.itemsize <= 2 or not len(times) or int(times.max()) < _U16_TIMES
    time_dtype = "<u2" if narrow else "<u4"
    msg.layout = COLUMNS
    msg.entry_counts = counts.astype("<u4", copy=False).tobytes()
    msg.times = times.astype(time_dtype, copy=False).tobytes()
    msg.labels = labels.astype("<u2", copy=False).tobytes()
    msg.time_bytes = np.dtype(time_dtype).itemsize


def _column(data: bytes, dtype: str, what: str) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    if len(data) % size:
        raise WireError(f"{what}: {len(data)} bytes is not a multiple of {size} ({dtype} values)")
    return np.frombuffer(data, dtype=dtype)


def _unpack(msg: pb.SpikeBatch, what: str, container: type[InputSpikes] | type[SpikeEvents]) -> Any:
    if not 0 <= msg.batch_size <= chip.MAX_BATCH:
        raise FieldRangeError(f"{what}.batch_size", msg.batch_size, 0, chip.MAX_BATCH)
    layout = check_layout(msg.layout, f"{what}.layout")
    columns = {"entry_counts": msg.entry_counts, "times": msg.times, "labels": msg.labels}
    if layout == RECORDS:
        stray = [k for k, v in columns.items() if v] + (["time_bytes"] if msg.time_bytes else [])
        if stray:
            raise WireError(f"{what}: {', '.join(stray)} set in the records layout (only `events` carries events)")
        data = msg.events
        if len(data) % SPIKE_DTYPE.itemsize:
            raise WireError(
                f"{what}.events: {len(data)} bytes is not a multiple of 10 (records are u32 batch, u32 time, u16 label)"
            )
        # frombuffer is zero-copy and read-only; hal's containers sort into a fresh array anyway.
        return container(np.frombuffer(data, dtype=SPIKE_DTYPE), int(msg.batch_size))
    if msg.events:
        raise WireError(f"{what}.events: {len(msg.events)} bytes in the columns layout (events travel as columns)")
    if msg.time_bytes not in (2, 4):
        raise WireError(f"{what}.time_bytes: {msg.time_bytes}; allowed 2 (u16 times) or 4 (u32 times)")
    counts = _column(msg.entry_counts, "<u4", f"{what}.entry_counts")
    times = _column(msg.times, "<u2" if msg.time_bytes == 2 else "<u4", f"{what}.times")
    labels = _column(msg.labels, "<u2", f"{what}.labels")
    try:
        return container.from_columns(counts, times, labels, int(msg.batch_size))
    except HalError:
        raise
    except ValueError as e:  # a length mismatch between the columns
        raise WireError(str(e)) from None


def unpack_inputs(msg: pb.SpikeBatch) -> InputSpikes:
    """SpikeBatch (either layout) -> InputSpikes (labels are input channels 0..1023); raises a ValueError
    naming the field."""
    return _unpack(msg, "inputs", InputSpikes)


def unpack_spikes(msg: pb.SpikeBatch) -> SpikeEvents:
    """SpikeBatch (either layout) -> SpikeEvents (labels are neuron ids 0..511)."""
    return _unpack(msg, "spikes", SpikeEvents)


# ---- run options -------------------------------------------------------------------------------------
def options_to_pb(o: RunOptions) -> pb.RunOptions:
    """hal RunOptions -> message."""
    return pb.RunOptions(
        duration_ticks=int(o.duration_ticks),
        record=RECORD_TO_PB[o.record],
        seed=int(o.seed),
        readout=[int(n) for n in o.readout],
        readout_period=int(o.readout_period),
        entry_offset=int(o.entry_offset),
    )


def options_from_pb(m: pb.RunOptions) -> RunOptions:
    """Message -> hal RunOptions; every field range-checked (duration 0 is an error, readout_period 0 = 8)."""
    if m.duration_ticks == 0:
        raise FieldRangeError("options.duration_ticks", 0, 1, chip.MAX_DURATION_TICKS, "required")
    if m.record not in RECORD_FROM_PB:
        raise WireError(f"options.record: {int(m.record)} is not RECORD_UNSPECIFIED(0), RECORD_FIRST(1), RECORD_ALL(2)")
    # 0 = default period, shortened for runs shorter than the default so the default is always valid.
    period = int(m.readout_period) if m.readout_period else min(DEFAULT_READOUT_PERIOD, int(m.duration_ticks))
    return RunOptions(
        duration_ticks=int(m.duration_ticks),
        record=RECORD_FROM_PB[m.record],
        seed=int(m.seed),
        readout=tuple(int(n) for n in m.readout),
        readout_period=period,
        entry_offset=int(m.entry_offset),
    )


# ---- tensors -----------------------------------------------------------------------------------------
def tensor_to_pb(a: np.ndarray) -> pb.Tensor:
    """A membrane array (int16/int32) -> Tensor with little-endian C-order bytes."""
    arr = np.require(a, requirements="C")  # (ascontiguousarray would turn 0-d into 1-d)
    dt = arr.dtype.newbyteorder("<")
    if dt.str not in MEMBRANE_DTYPES:
        raise TypeError(f"membrane dtype {arr.dtype} not allowed on the wire; allowed {MEMBRANE_DTYPES}")
    return pb.Tensor(dtype=dt.str, shape=list(arr.shape), data=arr.astype(dt, copy=False).tobytes())


def tensor_from_pb(m: pb.Tensor) -> np.ndarray:
    """Tensor -> numpy array (a copy, native byte order); validates dtype and byte count."""
    if m.dtype not in MEMBRANE_DTYPES:
        raise ValueError(f"membrane.dtype {m.dtype!r} not allowed; allowed {list(MEMBRANE_DTYPES)}")
    dt = np.dtype(m.dtype)
    shape = tuple(int(s) for s in m.shape)
    if len(shape) > 4:
        raise ValueError(f"membrane.shape {shape}: at most 4 dimensions")
    n = math.prod(shape)
    if n * dt.itemsize != len(m.data):
        raise ValueError(f"membrane.data: {len(m.data)} bytes do not match shape {shape} of {m.dtype}")
    return np.frombuffer(m.data, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))


# ---- results -----------------------------------------------------------------------------------------
def result_to_pb(
    r: RunResult, *, config_id: str = "", sequence: int = 0, device_us: int = 0, layout: int = RECORDS
) -> pb.RunResponse:
    """hal RunResult -> RunResponse, spikes in ``layout``."""
    msg = pb.RunResponse(
        dropped=int(r.dropped),
        stats={str(k): int(v) for k, v in r.stats.items()},
        config_id=config_id,
        sequence=int(sequence),
        device_us=int(device_us),
    )
    fill_spikes(msg.spikes, r.spikes, layout)
    if r.membrane is not None:
        msg.membrane.CopyFrom(tensor_to_pb(r.membrane))
    return msg


def result_from_pb(m: pb.RunResponse) -> RunResult:
    """RunResponse -> hal RunResult."""
    membrane = tensor_from_pb(m.membrane) if m.HasField("membrane") else None
    return RunResult(unpack_spikes(m.spikes), int(m.dropped), membrane, {k: int(v) for k, v in m.stats.items()})


# ---- device info -------------------------------------------------------------------------------------
def _number(v: int | float) -> pb.Number:
    if isinstance(v, int | np.integer):  # bool is an int too
        return pb.Number(int_value=int(v))
    return pb.Number(float_value=float(v))


def info_to_pb(info: DeviceInfo, **server: Any) -> pb.GetInfoResponse:
    """hal DeviceInfo (+ server fields such as server_version, max_message_bytes) -> GetInfoResponse."""
    return pb.GetInfoResponse(
        model=info.model,
        serial=int(info.serial),
        version=info.version,
        resource_model={k: _number(v) for k, v in info.resource_model.items()},
        max_batch=int(info.max_batch),
        max_duration_ticks=int(info.max_duration_ticks),
        max_events=int(info.max_events),
        deterministic=bool(info.deterministic),
        membrane_readout=int(info.membrane_readout),
        extra_json=json.dumps(info.extra, sort_keys=True, default=str),
        protocol=PROTOCOL,
        **server,
    )


def info_from_pb(m: pb.GetInfoResponse) -> DeviceInfo:
    """GetInfoResponse -> hal DeviceInfo (server fields land in ``extra['server']``)."""
    rm: dict[str, int | float] = {}
    for k, v in m.resource_model.items():
        rm[k] = v.int_value if v.WhichOneof("value") == "int_value" else v.float_value
    extra = json.loads(m.extra_json) if m.extra_json else {}
    if not isinstance(extra, dict):
        raise ValueError("extra_json must encode a JSON object")
    extra["server"] = {
        "server_version": m.server_version,
        "protocol": m.protocol,
        "max_message_bytes": int(m.max_message_bytes),
        "default_lease_ttl_ms": int(m.default_lease_ttl_ms),
        "max_lease_ttl_ms": int(m.max_lease_ttl_ms),
    }
    return DeviceInfo(
        model=m.model,
        serial=int(m.serial),
        version=m.version,
        resource_model=rm,
        max_batch=int(m.max_batch),
        max_duration_ticks=int(m.max_duration_ticks),
        max_events=int(m.max_events),
        deterministic=bool(m.deterministic),
        membrane_readout=int(m.membrane_readout),
        extra=extra,
    )


# ---- compiled networks -------------------------------------------------------------------------------
def artifact_layout_to_pb(net: CompiledNetwork, stage: int) -> pb.ArtifactLayout:
    """What a client needs to feed stage ``stage`` of ``net`` and read its results (docs/protocol.md 3.3).

    The inputs are listed exactly as :class:`firstspike.runtime.session.Session` sends them: the stage's input
    channels (network inputs, or the previous stage's last layer replayed), then one bias spike per layer of the
    stage that has one, its tick rounded like the session rounds it (half to even)."""
    st = net.stages[stage]
    tau = float(net.tau_s_ticks)
    msg = pb.ArtifactLayout(stages=len(net.stages), stage=int(stage), tau_s_ticks=tau, n_inputs=int(net.n_inputs))
    replayed = st.input_source >= 0
    for k, ch in enumerate(st.input_channels):
        msg.inputs.add(
            channel=int(ch),
            kind=pb.INPUT_KIND_REPLAYED if replayed else pb.INPUT_KIND_NETWORK,
            index=k,
            layer=int(st.input_source) if replayed else 0,
        )
    for k in st.layers:
        layer = net.layers[k]
        if layer.bias_time is None or layer.bias_channel is None:
            continue
        t = float(layer.bias_time)
        msg.inputs.add(channel=int(layer.bias_channel), kind=pb.INPUT_KIND_BIAS, layer=int(k), bias_time=t,
                       bias_ticks=int(np.rint(t * tau)))
    for layer in net.layers:
        msg.layers.add(index=layer.index, name=layer.name, stage=layer.stage, n_in=layer.n_in,
                       has_bias=layer.bias_time is not None, neuron_ids=[int(n) for n in layer.neuron_ids])
    msg.output_neurons.extend(int(n) for n in net.layers[-1].neuron_ids)
    return msg
