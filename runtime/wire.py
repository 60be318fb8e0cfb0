"""Conversions between hal objects and the ``firstspike.v1`` protobuf messages (client and server share them).

Spike events travel as packed little-endian records of :data:`hal.events.SPIKE_DTYPE` (10 bytes: u32 batch,
u32 time in ticks, u16 label) in one ``bytes`` field; membrane samples as a dtype string, a shape and raw
C-order bytes. Every decoder validates what it reads and raises a ``ValueError`` subclass naming the field.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from hal import chip
from hal.backend import DeviceInfo, RunOptions, RunResult
from hal.errors import FieldRangeError, HalError
from hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents
from proto.firstspike.v1 import device_pb2 as pb

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
RECORD_FROM_PB = {pb.RECORD_UNSPECIFIED: "first", pb.RECORD_FIRST: "first", pb.RECORD_ALL: "all"}
MEMBRANE_DTYPES = ("<i2", "<i4")
DEFAULT_READOUT_PERIOD = 8


class WireError(HalError, ValueError):
    """A message field holds a value the protocol does not allow (the message names the field)."""


# ---- spikes ------------------------------------------------------------------------------------------
def pack_events(events: np.ndarray, batch_size: int) -> pb.SpikeBatch:
    """Events of SPIKE_DTYPE -> SpikeBatch (10-byte little-endian records)."""
    arr = np.ascontiguousarray(events, dtype=SPIKE_DTYPE)
    return pb.SpikeBatch(batch_size=int(batch_size), events=arr.tobytes())


def _unpack_array(msg: pb.SpikeBatch, what: str) -> np.ndarray:
    data = msg.events
    if len(data) % SPIKE_DTYPE.itemsize:
        raise WireError(
            f"{what}.events: {len(data)} bytes is not a multiple of 10 (records are u32 batch, u32 time, u16 label)"
        )
    if not 0 <= msg.batch_size <= chip.MAX_BATCH:
        raise FieldRangeError(f"{what}.batch_size", msg.batch_size, 0, chip.MAX_BATCH)
    # frombuffer is zero-copy and read-only; hal's containers sort into a fresh array anyway.
    return np.frombuffer(data, dtype=SPIKE_DTYPE)


def unpack_inputs(msg: pb.SpikeBatch) -> InputSpikes:
    """SpikeBatch -> InputSpikes (labels are input channels 0..1023); raises a ValueError naming the field."""
    return InputSpikes(_unpack_array(msg, "inputs"), int(msg.batch_size))


def unpack_spikes(msg: pb.SpikeBatch) -> SpikeEvents:
    """SpikeBatch -> SpikeEvents (labels are neuron ids 0..511)."""
    return SpikeEvents(_unpack_array(msg, "spikes"), int(msg.batch_size))


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
def result_to_pb(r: RunResult, *, config_id: str = "", sequence: int = 0, device_us: int = 0) -> pb.RunResponse:
    """hal RunResult -> RunResponse."""
    msg = pb.RunResponse(
        spikes=pack_events(r.spikes.events, r.spikes.batch_size),
        dropped=int(r.dropped),
        stats={str(k): int(v) for k, v in r.stats.items()},
        config_id=config_id,
        sequence=int(sequence),
        device_us=int(device_us),
    )
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
