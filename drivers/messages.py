"""Request and response messages of the serial protocol, and their exact binary encodings.

Every message (a payload carried by the link, any size) starts with an envelope::

    kind        u8    Kind
    flags       u8    FLAG_ZLIB: the body is zlib-compressed
    request_id  u32   chosen by the host; a response carries the id of its request

followed by the kind's body (little-endian throughout; see ``docs/serial-protocol.md``). Spike events
are packed compactly (:func:`pack_events`): LEB128 varints of per-entry time deltas, labels and either
per-event batch deltas or per-entry counts, whichever is shorter.

Decoders never trust a length; any defect raises :class:`ProtocolError` (a :class:`firstspike.hal.errors.BackendError`).
Device-side errors travel as :class:`Error` and come back as the same ``firstspike.hal.errors`` type
(:func:`exception_from_error`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from firstspike.hal import chip, errors
from firstspike.hal.backend import DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import BackendError
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAX_MESSAGE = 64 << 20  # largest decoded body accepted (bytes)

ENVELOPE = struct.Struct("<BBI")
FLAG_ZLIB = 0x01
DIGEST_SIZE = 32


class ProtocolError(BackendError, ValueError):
    """A message is malformed, unexpected or of an unsupported protocol version."""


class Kind(IntEnum):
    """Message kinds: requests (host -> device) below 0x80, responses above."""

    HELLO = 0x01
    CONFIGURE = 0x02
    CONFIGURE_DIFF = 0x03
    RUN = 0x04
    PING = 0x05
    HELLO_OK = 0x81
    CONFIGURED = 0x82
    RESULT = 0x83
    PONG = 0x85
    ERROR = 0xFF


# ---- message types ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hello:
    """Handshake: the host offers protocol versions ``min_version..max_version``."""

    min_version: int = PROTOCOL_VERSION
    max_version: int = PROTOCOL_VERSION
    client: str = "firstspike"


@dataclass(frozen=True)
class HelloOk:
    """Handshake answer: the chosen version, the device's info and the digest of its current config
    (``None`` if the device does not know it)."""

    version: int
    info: DeviceInfo
    config_digest: bytes | None = None


@dataclass(frozen=True, eq=False)
class Configure:
    """Apply a full config or a diff against the device's current config."""

    config: ChipConfig | ConfigDiff


@dataclass(frozen=True)
class Configured:
    """Configuration applied; the digest (SHA-256 of the canonical encoding) of the device's config."""

    config_digest: bytes


@dataclass(frozen=True, eq=False)
class Run:
    """Run a batch of input spike trains."""

    inputs: InputSpikes
    options: RunOptions


@dataclass(frozen=True, eq=False)
class Result:
    """What a run recorded."""

    result: RunResult


@dataclass(frozen=True)
class Ping:
    payload: bytes = b""


@dataclass(frozen=True)
class Pong:
    payload: bytes = b""


@dataclass(frozen=True)
class Error:
    """A device-side failure: ``type`` names the ``firstspike.hal.errors`` class, ``message`` is the device's text."""

    type: str
    message: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


Message = Hello | HelloOk | Configure | Configured | Run | Result | Ping | Pong | Error


# ---- varints ------------------------------------------------------------------------------------
_U32_MAX = (1 << 32) - 1


def varint_lengths(values: np.ndarray) -> np.ndarray:
    """Bytes each value takes as an unsigned LEB128 varint (values < 2**35)."""
    v = np.asarray(values, dtype=np.uint64)
    n = np.ones(v.shape, dtype=np.int64)
    for k in (7, 14, 21, 28):
        n += v >= np.uint64(1 << k)
    return n


def varint_encode(values: np.ndarray) -> bytes:
    """Unsigned LEB128 encoding of ``values`` (each < 2**35), vectorised."""
    v = np.asarray(values, dtype=np.uint64).reshape(-1)
    if not len(v):
        return b""
    n = varint_lengths(v)
    owner = np.repeat(np.arange(len(v)), n)
    starts = np.cumsum(n) - n
    k = np.arange(int(n.sum())) - np.repeat(starts, n)
    byte = (v[owner] >> (np.uint64(7) * k.astype(np.uint64))) & np.uint64(0x7F)
    byte |= np.where(k < n[owner] - 1, np.uint64(0x80), np.uint64(0))
    return byte.astype(np.uint8).tobytes()


def varint_decode(data: bytes, count: int) -> np.ndarray:
    """Decode exactly ``count`` varints filling ``data`` exactly; values must fit in u32."""
    b = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(b < 0x80)
    if len(ends) != count or (len(b) and (not len(ends) or ends[-1] != len(b) - 1)):
        raise ProtocolError(f"varint stream: expected {count} values in {len(b)} bytes, found {len(ends)}")
    if not count:
        return np.empty(0, dtype=np.uint64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if int(lengths.max()) > 5:
        raise ProtocolError("varint longer than 5 bytes")
    k = np.arange(len(b)) - np.repeat(starts, lengths)
    vals = (b & 0x7F).astype(np.uint64) << (np.uint64(7) * k.astype(np.uint64))
    out = np.add.reduceat(vals, starts)
    if int(out.max()) > _U32_MAX:
        raise ProtocolError("varint value exceeds 32 bits")
    return out


# ---- events -------------------------------------------------------------------------------------
EVENTS_RAW = 0  # SPIKE_DTYPE records, 10 bytes each
EVENTS_BATCH_DELTA = 1  # varints: batch delta per event, time delta per event, label per event
EVENTS_COUNTS = 2  # varints: event count per batch entry, time delta per event, label per event
_EVENTS_HEADER = struct.Struct("<BIII")  # format, batch_size, n_events, n_bytes


def pack_events(events: np.ndarray, batch_size: int, fmt: int | None = None) -> bytes:
    """Pack events sorted by (batch, time, label). ``fmt=None`` picks the shortest encoding."""
    ev = events
    n = len(ev)
    if fmt == EVENTS_RAW:
        body = np.ascontiguousarray(ev, dtype=SPIKE_DTYPE).tobytes()
        return _EVENTS_HEADER.pack(EVENTS_RAW, batch_size, n, len(body)) + body
    b = ev["batch"].astype(np.int64)
    t = ev["time"].astype(np.int64)
    new_entry = np.ones(n, dtype=bool)
    new_entry[1:] = b[1:] != b[:-1]
    dt = t.copy()
    dt[1:] = np.where(new_entry[1:], t[1:], t[1:] - t[:-1])
    if n and int(dt.min()) < 0:
        raise ValueError("pack_events: events must be sorted by (batch, time, label)")
    db = b.copy()
    db[1:] = b[1:] - b[:-1]
    counts = np.bincount(b, minlength=batch_size) if n else np.zeros(batch_size, dtype=np.int64)
    if fmt is None:
        fmt = (
            EVENTS_BATCH_DELTA
            if int(varint_lengths(db).sum()) <= int(varint_lengths(counts).sum())
            else EVENTS_COUNTS
        )
    first = db if fmt == EVENTS_BATCH_DELTA else counts
    if fmt not in (EVENTS_BATCH_DELTA, EVENTS_COUNTS):
        raise ValueError(f"pack_events: unknown format {fmt}; use 0, 1, 2 or None")
    body = varint_encode(np.concatenate([first, dt, ev["label"].astype(np.int64)]))
    return _EVENTS_HEADER.pack(fmt, batch_size, n, len(body)) + body


def unpack_events(data: bytes, offset: int, label_max: int) -> tuple[np.ndarray, int, int]:
    """Inverse of :func:`pack_events`: ``(events, batch_size, next_offset)``; ProtocolError on defects."""
    r = _Reader(data, offset)
    fmt, batch_size, n, nbytes = r.unpack(_EVENTS_HEADER, "events header")
    if batch_size > chip.MAX_BATCH:
        raise ProtocolError(f"events: batch_size {batch_size} exceeds {chip.MAX_BATCH}")
    body = r.take(nbytes, "events")
    if fmt == EVENTS_RAW:
        if nbytes != n * SPIKE_DTYPE.itemsize:
            raise ProtocolError(f"events: {nbytes} bytes do not hold {n} raw events")
        ev = np.frombuffer(body, dtype=SPIKE_DTYPE).copy()
    elif fmt in (EVENTS_BATCH_DELTA, EVENTS_COUNTS):
        first_n = n if fmt == EVENTS_BATCH_DELTA else batch_size
        if first_n + 2 * n > nbytes:  # every varint takes at least one byte
            raise ProtocolError(f"events: {nbytes} bytes cannot hold {first_n + 2 * n} varints")
        vals = varint_decode(body, first_n + 2 * n).astype(np.int64)
        first, dt, lab = vals[:first_n], vals[first_n : first_n + n], vals[first_n + n :]
        if fmt == EVENTS_BATCH_DELTA:
            b = np.cumsum(first)
        else:
            if int(first.sum()) != n:
                raise ProtocolError(f"events: per-entry counts sum to {int(first.sum())}, not {n}")
            b = np.repeat(np.arange(batch_size, dtype=np.int64), first)
        new_entry = np.ones(n, dtype=bool)
        new_entry[1:] = b[1:] != b[:-1]
        cs = np.cumsum(dt)
        start = np.maximum.accumulate(np.where(new_entry, np.arange(n), 0)) if n else np.zeros(0, dtype=np.int64)
        t = cs - cs[start] + dt[start]
        if n and (int(b.max()) >= batch_size or int(t.max()) > _U32_MAX):
            raise ProtocolError("events: batch index or time out of range")
        ev = np.empty(n, dtype=SPIKE_DTYPE)
        ev["batch"] = b
        ev["time"] = t
        if n and int(lab.max()) > label_max:
            raise ProtocolError(f"events: label {int(lab.max())} exceeds {label_max}")
        ev["label"] = lab
    else:
        raise ProtocolError(f"events: unknown packing format {fmt}")
    if n and (int(ev["batch"].max()) >= batch_size or int(ev["label"].max()) > label_max):
        raise ProtocolError("events: batch index or label out of range")
    return ev, batch_size, r.pos


# ---- helpers ------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError(f"truncated message: need {n} bytes for {what} at offset {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        return st.unpack(self.take(st.size, what))

    def short_str(self, what: str) -> str:
        (n,) = self.unpack(_U8, what)
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{what}: not UTF-8") from None

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def done(self, what: str) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(f"{what}: {len(self.data) - self.pos} trailing bytes")


_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_HELLO = struct.Struct("<HH")
_RUN_OPTS = struct.Struct("<IBQIQH")  # duration, record, seed, readout_period, entry_offset, n_readout
#: RunOptions fields the RUN encoding carries (a test fails if hal adds one the wire does not carry).
RUN_OPTION_FIELDS = ("duration_ticks", "record", "seed", "readout", "readout_period", "entry_offset")
_RESULT_HEAD = struct.Struct("<QH")
_MEMBRANE_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<i2"),
    2: np.dtype("<i4"),
    3: np.dtype("<f4"),
    4: np.dtype("<f8"),
}
_MEMBRANE_CODES = {v.str: k for k, v in _MEMBRANE_DTYPES.items()}


def _short_str(s: str, what: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 255:
        raise ValueError(f"{what}: {len(b)} bytes, at most 255 allowed")
    return _U8.pack(len(b)) + b


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, bytes):
        return o.hex()
    return str(o)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=_json_default).encode("utf-8")


def _unjson(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(f"{what}: not valid UTF-8 JSON") from None


_INFO_TYPES: dict[str, type | tuple[type, ...]] = {
    "model": str, "serial": int, "version": str, "resource_model": dict, "max_batch": int,
    "max_duration_ticks": int, "max_events": int, "deterministic": bool, "membrane_readout": int, "extra": dict,
}


def info_to_json(info: DeviceInfo) -> bytes:
    """DeviceInfo as compact JSON."""
    return _json(dataclasses.asdict(info))


def info_from_json(data: bytes) -> DeviceInfo:
    """Inverse of :func:`info_to_json`; unknown keys are ignored (newer devices may add fields)."""
    d = _unjson(data, "device info")
    if not isinstance(d, dict):
        raise ProtocolError("device info: expected a JSON object")
    kw: dict[str, Any] = {}
    for k, typ in _INFO_TYPES.items():
        if k not in d:
            if k in ("model", "serial", "version"):
                raise ProtocolError(f"device info: missing {k!r}")
            continue
        v = d[k]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise ProtocolError(f"device info: {k!r} has type {type(v).__name__}, expected {typ}")
        kw[k] = v
    return DeviceInfo(**kw)


def _options_bytes(o: RunOptions) -> bytes:
    record = {"first": 0, "all": 1}[o.record]
    head = _RUN_OPTS.pack(int(o.duration_ticks), record, int(o.seed), int(o.readout_period), int(o.entry_offset),
                          len(o.readout))
    return head + np.asarray(o.readout, dtype="<u2").tobytes()


def _options_from(r: _Reader) -> RunOptions:
    duration, record, seed, period, offset, n = r.unpack(_RUN_OPTS, "run options")
    if record not in (0, 1):
        raise ProtocolError(f"run options: record code {record}; allowed 0 (first) or 1 (all)")
    readout = tuple(int(x) for x in np.frombuffer(r.take(2 * n, "readout"), dtype="<u2"))
    try:
        return RunOptions(duration_ticks=duration, record=("first", "all")[record], seed=seed, readout=readout,
                          readout_period=period, entry_offset=offset)
    except (ValueError, errors.HalError) as e:
        raise ProtocolError(f"run options: {e}") from e


def _result_bytes(res: RunResult) -> bytes:
    parts = [pack_events(res.spikes.events, res.spikes.batch_size)]
    stats = res.stats or {}
    parts.append(_RESULT_HEAD.pack(int(res.dropped), len(stats)))
    for k, v in stats.items():
        parts.append(_short_str(str(k), "stat name") + struct.pack("<q", int(v)))
    m = res.membrane
    if m is None:
        parts.append(_U8.pack(0))
    else:
        arr = np.ascontiguousarray(m)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        code = _MEMBRANE_CODES.get(dt.str)
        if code is None or arr.ndim != 3:
            raise ValueError(f"membrane: dtype {arr.dtype} / ndim {arr.ndim} not encodable; "
                             f"use a 3-d array of {sorted(_MEMBRANE_CODES)}")
        parts.append(struct.pack("<BB3I", 1, code, *arr.shape) + arr.astype(dt, copy=False).tobytes())
    return b"".join(parts)


def _result_from(r: _Reader) -> RunResult:
    ev, batch_size, r.pos = unpack_events(r.data, r.pos, chip.N_NEURONS - 1)
    dropped, nstats = r.unpack(_RESULT_HEAD, "result header")
    stats: dict[str, int] = {}
    for _ in range(nstats):
        name = r.short_str("stat name")
        (stats[name],) = struct.unpack("<q", r.take(8, "stat value"))
    (has_m,) = r.unpack(_U8, "membrane flag")
    membrane = None
    if has_m == 1:
        code, *shape = struct.unpack("<B3I", r.take(13, "membrane header"))
        dt = _MEMBRANE_DTYPES.get(code)
        if dt is None:
            raise ProtocolError(f"membrane: unknown dtype code {code}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        membrane = np.frombuffer(r.take(nbytes, "membrane"), dtype=dt).reshape(shape).copy()
    elif has_m != 0:
        raise ProtocolError(f"membrane flag {has_m}; allowed 0 or 1")
    try:
        spikes = SpikeEvents(ev, batch_size)
    except (ValueError, TypeError, errors.HalError) as e:
        raise ProtocolError(f"result events: {e}") from e
    return RunResult(spikes, int(dropped), membrane, stats)


# ---- encode / decode ----------------------------------------------------------------------------
def _body(msg: Message) -> tuple[Kind, bytes]:
    if isinstance(msg, Hello):
        return Kind.HELLO, _HELLO.pack(msg.min_version, msg.max_version) + _short_str(msg.client, "client")
    if isinstance(msg, HelloOk):
        dig = msg.config_digest
        head = _U16.pack(msg.version) + (_U8.pack(0) if dig is None else _U8.pack(1) + _digest(dig))
        return Kind.HELLO_OK, head + info_to_json(msg.info)
    if isinstance(msg, Configure):
        if isinstance(msg.config, ChipConfig):
            return Kind.CONFIGURE, msg.config.to_bytes()
        if isinstance(msg.config, ConfigDiff):
            return Kind.CONFIGURE_DIFF, msg.config.to_bytes()
        raise TypeError(f"Configure takes a ChipConfig or ConfigDiff, not {type(msg.config).__name__}")
    if isinstance(msg, Configured):
        return Kind.CONFIGURED, _digest(msg.config_digest)
    if isinstance(msg, Run):
        inp = msg.inputs
        return Kind.RUN, _options_bytes(msg.options) + pack_events(inp.events, inp.batch_size)
    if isinstance(msg, Result):
        return Kind.RESULT, _result_bytes(msg.result)
    if isinstance(msg, Ping):
        return Kind.PING, bytes(msg.payload)
    if isinstance(msg, Pong):
        return Kind.PONG, bytes(msg.payload)
    if isinstance(msg, Error):
        return Kind.ERROR, _json({"type": msg.type, "message": msg.message, "details": msg.details})
    raise TypeError(f"not a protocol message: {type(msg).__name__}")


def _digest(d: bytes) -> bytes:
    if len(d) != DIGEST_SIZE:
        raise ValueError(f"config digest must be {DIGEST_SIZE} bytes, got {len(d)}")
    return bytes(d)


def encode_message(msg: Message, request_id: int, *, compress_min: int = 1024) -> bytes:
    """Envelope + body. Bodies of at least ``compress_min`` bytes are zlib-compressed when that saves
    at least 1/8 (configs shrink a lot; packed spikes barely). ``compress_min=0`` disables compression."""
    if not 0 <= request_id <= 0xFFFFFFFF:
        raise ValueError(f"request_id {request_id} out of range [0, 2**32-1]")
    kind, body = _body(msg)
    flags = 0
    if compress_min and len(body) >= compress_min:
        packed = zlib.compress(body, 1)
        if len(packed) <= len(body) - len(body) // 8:
            body, flags = packed, FLAG_ZLIB
    return ENVELOPE.pack(kind, flags, request_id) + body


def peek_request_id(data: bytes) -> int | None:
    """The request id of an encoded message, or None if the envelope is incomplete."""
    if len(data) < ENVELOPE.size:
        return None
    return ENVELOPE.unpack_from(data)[2]


def decode_message(data: bytes) -> tuple[int, Message]:
    """``(request_id, message)`` from :func:`encode_message` output; any defect raises ProtocolError."""
    data = bytes(data)
    if len(data) < ENVELOPE.size:
        raise ProtocolError(f"message of {len(data)} bytes is shorter than its envelope ({ENVELOPE.size})")
    kind_code, flags, rid = ENVELOPE.unpack_from(data)
    try:
        kind = Kind(kind_code)
    except ValueError:
        raise ProtocolError(f"unknown message kind {kind_code:#x}") from None
    if flags & ~FLAG_ZLIB:
        raise ProtocolError(f"unknown message flags {flags:#x}")
    body = data[ENVELOPE.size :]
    if flags & FLAG_ZLIB:
        d = zlib.decompressobj()
        try:
            body = d.decompress(body, MAX_MESSAGE)
        except zlib.error as e:
            raise ProtocolError(f"compressed body is corrupt ({e})") from None
        if d.unconsumed_tail or not d.eof or d.unused_data:
            raise ProtocolError(f"compressed body is truncated, has trailing data or exceeds {MAX_MESSAGE} bytes")
    try:
        return rid, _decode_body(kind, body)
    except ProtocolError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, struct.error, errors.HalError) as e:
        raise ProtocolError(f"{kind.name} message: {e}") from e


def _decode_body(kind: Kind, body: bytes) -> Message:
    r = _Reader(body)
    msg: Message
    if kind == Kind.HELLO:
        lo, hi = r.unpack(_HELLO, "hello")
        msg = Hello(lo, hi, r.short_str("client"))
    elif kind == Kind.HELLO_OK:
        (version,) = r.unpack(_U16, "version")
        (has,) = r.unpack(_U8, "digest flag")
        if has not in (0, 1):
            raise ProtocolError(f"digest flag {has}; allowed 0 or 1")
        dig = r.take(DIGEST_SIZE, "config digest") if has else None
        msg = HelloOk(version, info_from_json(r.rest()), dig)
    elif kind == Kind.CONFIGURE:
        msg = Configure(ChipConfig.from_bytes(r.rest()))
    elif kind == Kind.CONFIGURE_DIFF:
        msg = Configure(ConfigDiff.from_bytes(r.rest()))
    elif kind == Kind.CONFIGURED:
        msg = Configured(r.take(DIGEST_SIZE, "config digest"))
    elif kind == Kind.RUN:
        options = _options_from(r)
        ev, batch_size, r.pos = unpack_events(body, r.pos, chip.N_INPUT_CHANNELS - 1)
        msg = Run(InputSpikes(ev, batch_size), options)
    elif kind == Kind.RESULT:
        msg = Result(_result_from(r))
    elif kind == Kind.PING:
        msg = Ping(r.rest())
    elif kind == Kind.PONG:
        msg = Pong(r.rest())
    else:  # Kind.ERROR
        d = _unjson(r.rest(), "error")
        if not (isinstance(d, dict) and isinstance(d.get("type"), str) and isinstance(d.get("message"), str)
                and isinstance(d.get("details", {}), dict)):
            raise ProtocolError("error: expected {type: str, message: str, details: object}")
        msg = Error(d["type"], d["message"], d.get("details", {}))
    r.done(kind.name)
    return msg


# ---- errors across the wire ---------------------------------------------------------------------
_ERROR_CLASSES: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        errors.FieldRangeError, errors.ConfigError, errors.ConfigDecodeError, errors.CapacityError,
        errors.DeviceBusyError, errors.LinkError, errors.BackendError, errors.UnknownBackendError,
        errors.HalError, ProtocolError,
    )
}


def error_from_exception(exc: BaseException) -> Error:
    """The wire form of an exception raised on the device: the nearest known ``firstspike.hal.errors`` class."""
    name = next((c.__name__ for c in type(exc).__mro__ if c.__name__ in _ERROR_CLASSES), None)
    details: dict[str, Any] = {}
    message = str(exc)
    if name is None:
        name = "BackendError"
        message = f"device error ({type(exc).__name__}): {exc}"
    if isinstance(exc, errors.FieldRangeError):
        value = exc.value if isinstance(exc.value, int | float | str) else repr(exc.value)
        details = {"field": exc.field, "value": value, "low": exc.low, "high": exc.high}
    return Error(name, message, details)


def exception_from_error(err: Error) -> Exception:
    """Rebuild the device's exception as the same ``firstspike.hal.errors`` type, keeping the device's message."""
    cls = _ERROR_CLASSES.get(err.type, BackendError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, err.message)
    if isinstance(exc, errors.FieldRangeError):
        d = err.details
        # bounds the device did not send stay NaN (the message already says what the device said)
        exc.field, exc.value = str(d.get("field", "?")), d.get("value")
        exc.low, exc.high = d.get("low", math.nan), d.get("high", math.nan)
    return exc
