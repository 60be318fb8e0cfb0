"""The frame codec on its own: COBS, header + CRC-32, resynchronisation, random garbage."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.drivers.framing import (
    FLAG_ACK,
    FLAG_END,
    FLAG_FROM_DEVICE,
    HEADER_SIZE,
    MAX_ENCODED,
    MAX_PAYLOAD,
    DecodeStats,
    Frame,
    FrameDecoder,
    FrameError,
    FrameType,
    FrameVersionError,
    cobs_decode,
    cobs_encode,
    decode_frame,
    decode_stream,
    encode_frame,
    frame_bytes,
    parse_frame,
)

frames = st.builds(
    Frame,
    st.sampled_from(list(FrameType)),
    st.sampled_from([0, FLAG_END, FLAG_ACK, FLAG_FROM_DEVICE, FLAG_END | FLAG_ACK | FLAG_FROM_DEVICE]),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.binary(max_size=MAX_PAYLOAD),
)


@given(st.binary(max_size=3000))
@settings(deadline=None)
def test_cobs_round_trip_and_no_zero(data: bytes) -> None:
    enc = cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(enc) == data


@pytest.mark.parametrize("n", [0, 1, 253, 254, 255, 508, 509])
def test_cobs_block_boundaries(n: int) -> None:
    for data in (b"\x01" * n, b"\x01" * n + b"\x00", b"\x00" + b"\x02" * n, b"\x00" * n):
        assert cobs_decode(cobs_encode(data)) == data


@given(frames, st.booleans())
@settings(deadline=None)
def test_frame_round_trip(frame: Frame, lead: bool) -> None:
    wire = encode_frame(frame, leading_delimiter=lead)
    assert wire.endswith(b"\x00") and wire.count(0) == (2 if lead else 1)
    assert len(wire) - (2 if lead else 1) <= MAX_ENCODED
    got, tail = decode_stream(wire)
    assert got == [frame] and tail == b""
    assert decode_frame(wire.strip(b"\x00")) == frame


@given(st.binary(max_size=4000), st.lists(st.binary(max_size=200), max_size=8))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_crash_and_never_yield_a_bad_frame(noise: bytes, chunks: list[bytes]) -> None:
    dec = FrameDecoder()
    out = dec.feed(noise)
    for c in chunks:
        out += dec.feed(c)
    for f in out:
        raw = frame_bytes(f)
        body, crc = raw[:-4], struct.unpack("<I", raw[-4:])[0]
        assert zlib.crc32(body) == crc
        assert isinstance(f.type, FrameType)
    assert dec.stats.frames == len(out)


@given(st.lists(frames, min_size=1, max_size=6), st.binary(max_size=300), st.integers(0, 10_000))
@settings(max_examples=150, deadline=None)
def test_resynchronises_after_garbage(fs: list[Frame], garbage: bytes, split: int) -> None:
    """Garbage before a delimited stream costs at most the frame it is glued to; the rest decode."""
    wire = garbage + b"".join(encode_frame(f, leading_delimiter=True) for f in fs)
    dec = FrameDecoder()
    split %= len(wire) + 1
    got = dec.feed(wire[:split]) + dec.feed(wire[split:])
    # The leading delimiter isolates the garbage; it could only add frames if it contained valid ones.
    assert got[-len(fs) :] == fs


def test_corruption_is_detected_and_following_frames_survive() -> None:
    a = Frame(FrameType.DATA, FLAG_END, 7, 1, 0, b"hello world" * 10)
    b = Frame(FrameType.ACK, FLAG_ACK, 7, 0, 2, b"\x01")
    wa = bytearray(encode_frame(a))
    wa[10] ^= 0x04
    stats = DecodeStats()
    got, _ = decode_stream(bytes(wa) + encode_frame(b), stats)
    assert got == [b]
    assert stats.errors == 1 and stats.frames == 1


def test_truncated_frame_and_split_reads() -> None:
    f = Frame(FrameType.DATA, 0, 1, 2, 3, bytes(range(256)) * 3)
    wire = encode_frame(f)
    dec = FrameDecoder()
    assert dec.feed(wire[:100]) == []
    assert dec.feed(b"\x00") == []  # the truncated piece is dropped
    assert dec.stats.errors == 1
    out = []
    for i in range(0, len(wire), 7):
        out += dec.feed(wire[i : i + 7])
    assert out == [f]


def test_oversize_tail_is_bounded() -> None:
    stats = DecodeStats()
    _, tail = decode_stream(b"\x01" * (MAX_ENCODED * 3), stats)
    assert len(tail) == MAX_ENCODED
    assert stats.discarded_bytes == 2 * MAX_ENCODED


def test_header_checks() -> None:
    good = frame_bytes(Frame(FrameType.DATA, 0, 1, 2, 3, b"abc"))
    assert parse_frame(good).payload == b"abc"

    def with_crc(body: bytes) -> bytes:
        return body + struct.pack("<I", zlib.crc32(body))

    body = bytearray(good[:-4])
    body[0] = 9  # another framing version
    with pytest.raises(FrameVersionError) as ei:
        parse_frame(with_crc(bytes(body)))
    assert ei.value.version == 9
    body = bytearray(good[:-4])
    body[HEADER_SIZE - 2] = 5  # length field disagrees with the payload
    with pytest.raises(FrameError, match="length"):
        parse_frame(with_crc(bytes(body)))
    body = bytearray(good[:-4])
    body[1] = 99
    with pytest.raises(FrameError, match="type"):
        parse_frame(with_crc(bytes(body)))
    with pytest.raises(FrameError, match="CRC"):
        parse_frame(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(FrameError, match="shorter"):
        parse_frame(b"\x01\x02")


def test_frame_field_validation() -> None:
    with pytest.raises(FrameError, match="payload"):
        Frame(FrameType.DATA, payload=b"x" * (MAX_PAYLOAD + 1))
    with pytest.raises(FrameError, match="seq"):
        Frame(FrameType.DATA, seq=70000)
    with pytest.raises(FrameError, match="flags"):
        Frame(FrameType.DATA, flags=0x40)
