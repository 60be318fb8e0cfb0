"""Frames on the serial wire: COBS + header + CRC-32, as pure functions.

One frame on the wire (see ``docs/serial-protocol.md``)::

    [0x00]  COBS( header | payload | crc32 )  0x00

    header (11 bytes, little-endian):
        version  u8    framing version (FRAME_VERSION)
        type     u8    FrameType
        flags    u8    FLAG_END | FLAG_ACK | FLAG_FROM_DEVICE | transmission epoch (bits 2-3)
        session  u16   link session chosen by the host at reset
        seq      u16   DATA: sequence number (mod 2**16)
        ack      u16   cumulative ack = next sequence number expected (valid if FLAG_ACK)
        length   u16   payload length in bytes (must equal the bytes present)
    crc32      u32   zlib CRC-32 over header and payload

COBS (consistent overhead byte stuffing) removes every zero byte from the frame, so ``0x00`` only ever
delimits frames: after garbage, a lost byte or a noise burst, the decoder resynchronises at the next
zero. The optional leading zero (sent after idle) isolates line noise from the next frame.

Everything here is a pure function of its input; :class:`FrameDecoder` only holds the unterminated tail.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

FRAME_VERSION = 1
HEADER = struct.Struct("<BBBHHHH")
HEADER_SIZE = HEADER.size  # 11
CRC_SIZE = 4
MAX_PAYLOAD = 1024  # hard protocol limit on the payload of one frame (bytes)
# COBS adds one byte per 254 plus one; the largest valid encoded frame, without delimiters:
MAX_ENCODED = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE + (HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE) // 254 + 1

FLAG_END = 0x01  # DATA: last fragment of a message
FLAG_ACK = 0x02  # the ack field carries a valid cumulative acknowledgement
FLAG_FROM_DEVICE = 0x80  # direction: set on every frame the device sends
EPOCH_SHIFT = 2  # DATA/PART: which transmission of this sequence number (mod 4), echoed in acks
EPOCH_MASK = 0x0C
_KNOWN_FLAGS = FLAG_END | FLAG_ACK | FLAG_FROM_DEVICE | EPOCH_MASK


class FrameType(IntEnum):
    """What a frame is for."""

    DATA = 1  # a fragment of a message
    ACK = 2  # cumulative ack + selective-ack bitmap (payload)
    NACK = 3  # like ACK, and asks for the holes to be resent now
    RESET = 4  # host -> device: start link session ``session`` (fresh sequence numbers)
    RESET_ACK = 5  # device -> host: session ``session`` started
    RESET_REQUEST = 6  # device -> host: I do not know session ``session``; reset the link
    PART = 7  # a piece of DATA frame ``seq`` resent in smaller pieces: payload = offset u16, total u16, bytes


class FrameError(ValueError):
    """Bytes between two delimiters are not a valid frame (COBS, length, type or CRC)."""


class FrameVersionError(FrameError):
    """A CRC-valid frame of another framing version (the peer speaks another protocol)."""

    def __init__(self, version: int) -> None:
        self.version = version
        super().__init__(f"frame version {version}; this build speaks {FRAME_VERSION}")


@dataclass(frozen=True)
class Frame:
    """One decoded frame. ``seq`` and ``ack`` are 16-bit wire values (the link unwraps them)."""

    type: FrameType
    flags: int = 0
    session: int = 0
    seq: int = 0
    ack: int = 0
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.type, FrameType):
            raise FrameError(f"frame type {self.type!r} is not a FrameType")
        if not 0 <= self.flags <= 0xFF or self.flags & ~_KNOWN_FLAGS:
            raise FrameError(f"frame flags {self.flags:#x}: allowed bits {_KNOWN_FLAGS:#x}")
        for name in ("session", "seq", "ack"):
            v = getattr(self, name)
            if not 0 <= v <= 0xFFFF:
                raise FrameError(f"frame {name} {v} out of range [0, 65535]")
        if len(self.payload) > MAX_PAYLOAD:
            raise FrameError(f"frame payload of {len(self.payload)} bytes exceeds MAX_PAYLOAD {MAX_PAYLOAD}")


# ---- COBS ---------------------------------------------------------------------------------------
def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``: the result contains no zero byte (overhead: 1 byte per 254, plus 1)."""
    out = bytearray()
    for chunk in bytes(data).split(b"\x00"):
        pos, n = 0, len(chunk)
        # A zero-free run of 254 bytes is a full block (code 0xFF) that implies no zero after it.
        while n - pos >= 254:
            out.append(0xFF)
            out += chunk[pos : pos + 254]
            pos += 254
        out.append(n - pos + 1)
        out += chunk[pos:]
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Invert :func:`cobs_encode`; raises :class:`FrameError` on a malformed block structure."""
    out = bytearray()
    i, n = 0, len(data)
    if n == 0:
        raise FrameError("empty COBS frame")
    if 0 in data:
        raise FrameError("zero byte inside a COBS frame")
    while i < n:
        code = data[i]
        end = i + code
        if end > n:
            raise FrameError(f"COBS block at offset {i} runs {end - n} bytes past the end of the frame")
        out += data[i + 1 : end]
        if code < 0xFF and end < n:
            out.append(0)
        i = end
    return bytes(out)


# ---- frames -------------------------------------------------------------------------------------
def frame_bytes(frame: Frame) -> bytes:
    """The unstuffed bytes of a frame: header, payload, CRC-32 (what COBS then encodes)."""
    f = frame
    body = HEADER.pack(FRAME_VERSION, int(f.type), f.flags, f.session, f.seq, f.ack, len(f.payload)) + f.payload
    return body + struct.pack("<I", zlib.crc32(body))


def encode_frame(frame: Frame, *, leading_delimiter: bool = False) -> bytes:
    """A frame as it goes on the wire: optional leading 0x00, COBS(header|payload|crc), 0x00."""
    enc = cobs_encode(frame_bytes(frame)) + b"\x00"
    return b"\x00" + enc if leading_delimiter else enc


def parse_frame(raw: bytes) -> Frame:
    """Parse unstuffed frame bytes (header|payload|crc); raises :class:`FrameError` on any defect."""
    if len(raw) < HEADER_SIZE + CRC_SIZE:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than header + CRC ({HEADER_SIZE + CRC_SIZE})")
    body, (crc,) = raw[:-CRC_SIZE], struct.unpack("<I", raw[-CRC_SIZE:])
    if zlib.crc32(body) != crc:
        raise FrameError("CRC-32 mismatch")
    version, ftype, flags, session, seq, ack, length = HEADER.unpack_from(body)
    if version != FRAME_VERSION:
        raise FrameVersionError(version)
    if length != len(body) - HEADER_SIZE:
        raise FrameError(f"header length {length} != {len(body) - HEADER_SIZE} payload bytes present")
    try:
        kind = FrameType(ftype)
    except ValueError:
        raise FrameError(f"unknown frame type {ftype}") from None
    return Frame(kind, flags, session, seq, ack, bytes(body[HEADER_SIZE:]))


def decode_frame(encoded: bytes) -> Frame:
    """Decode one COBS-encoded frame (the bytes between two delimiters, delimiters excluded)."""
    if len(encoded) > MAX_ENCODED:
        raise FrameError(f"{len(encoded)} bytes between delimiters exceed the largest frame ({MAX_ENCODED})")
    return parse_frame(cobs_decode(encoded))


@dataclass
class DecodeStats:
    """Counters of what a decoder threw away."""

    frames: int = 0
    errors: int = 0  # pieces that were not valid frames (COBS, length, CRC, type)
    foreign_version: int | None = None  # version of the last CRC-valid frame of another framing version
    discarded_bytes: int = 0  # bytes dropped as garbage (invalid pieces, oversize tails)
    last_error: str = ""


def decode_stream(buffer: bytes, stats: DecodeStats | None = None) -> tuple[list[Frame], bytes]:
    """Split ``buffer`` at zero delimiters and decode every complete piece.

    Returns ``(frames, tail)`` where ``tail`` is the unterminated rest to prepend to the next read.
    Invalid pieces are counted in ``stats`` and skipped; only CRC-valid frames are ever returned.
    """
    st = stats if stats is not None else DecodeStats()
    pieces = bytes(buffer).split(b"\x00")
    tail = pieces.pop()
    frames: list[Frame] = []
    for piece in pieces:
        if not piece:
            continue
        try:
            frames.append(decode_frame(piece))
            st.frames += 1
        except FrameVersionError as e:
            st.errors += 1
            st.foreign_version = e.version
            st.discarded_bytes += len(piece)
            st.last_error = str(e)
        except FrameError as e:
            st.errors += 1
            st.discarded_bytes += len(piece)
            st.last_error = str(e)
    if len(tail) > MAX_ENCODED:
        # No valid frame is this long: keep only what could still be the start of one.
        st.discarded_bytes += len(tail) - MAX_ENCODED
        tail = tail[-MAX_ENCODED:]
    return frames, tail


@dataclass
class FrameDecoder:
    """Incremental decoder over a byte stream: ``feed(bytes) -> frames``. Never raises on bad input."""

    stats: DecodeStats = field(default_factory=DecodeStats)
    _tail: bytes = b""

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return every frame completed by them (in order)."""
        if not data:
            return []
        frames, self._tail = decode_stream(self._tail + bytes(data), self.stats)
        return frames

    def reset(self) -> None:
        """Forget the unterminated tail."""
        self._tail = b""
