"""The binary container (hal/encoding.py): the bytes follow the documented layout exactly, whatever the arrays'
memory layout or byte order, and whether or not an array's header was encoded before (the encoder keeps the
headers of the shapes it has seen); every encoding decodes to the same arrays."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.hal import encoding
from firstspike.hal.encoding import decode_arrays, encode_arrays

ALLOWED = ["|u1", "<u2", "<u4", "<i8", "|b1", "<i4", "<f8"]


def layout_bytes(magic: bytes, version: int, arrays: dict[str, np.ndarray], header: bytes) -> bytes:
    """The layout of the module docstring, field by field (independent of the encoder's implementation); a 0-d
    array travels as shape (1,), as it always has."""
    out = bytearray(magic)
    out += struct.pack("<HHI", version, 0, len(header)) + header + struct.pack("<I", len(arrays))
    for name, arr in arrays.items():
        little = arr.reshape(1) if arr.ndim == 0 else arr
        little = little.astype(arr.dtype.newbyteorder("<"))  # a copy in C order, little-endian
        dstr = little.dtype.str.encode()
        out += bytes([len(name)]) + name.encode() + bytes([len(dstr)]) + dstr + bytes([little.ndim])
        out += b"".join(struct.pack("<I", n) for n in little.shape)
        out += struct.pack("<I", little.nbytes) + little.tobytes(order="C")
    return bytes(out) + struct.pack("<I", zlib.crc32(bytes(out)))


@st.composite
def arrays_of_any_layout(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(ALLOWED)))
    if dtype.itemsize > 1 and draw(st.booleans()):
        dtype = dtype.newbyteorder(">")
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 120, shape)
    a = values.astype(dtype)
    view = draw(st.sampled_from(["as is", "transposed", "strided"]))
    if view == "transposed" and a.ndim >= 2:
        a = a.T
    elif view == "strided" and a.ndim >= 1:
        a = a[::2]
    return a


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text("abcxyz.:", min_size=1, max_size=12), arrays_of_any_layout(), max_size=5),
       st.binary(max_size=70), st.integers(0, 65535), st.booleans())
def test_encoding_follows_the_layout_and_round_trips(arrays, header, version, forget_headers):
    if forget_headers:
        encoding._HEADERS.clear()
    data = encode_arrays(b"TEST", version, arrays, header)
    assert data == layout_bytes(b"TEST", version, arrays, header)
    assert encode_arrays(b"TEST", version, arrays, header) == data  # again, with every header known
    got_version, got_header, decoded = decode_arrays(data, b"TEST", (version,))
    assert (got_version, got_header, list(decoded)) == (version, header, list(arrays))
    for name, arr in arrays.items():
        assert decoded[name].shape == (arr.shape or (1,)) and np.array_equal(decoded[name].reshape(arr.shape), arr)
        assert decoded[name].dtype == arr.dtype.newbyteorder("<")


@pytest.mark.parametrize("dtype", ["<f4", "<i2", ">f4", "<c16"])
def test_a_dtype_off_the_allowlist_is_refused_by_name(dtype):
    with pytest.raises(ValueError, match=r"array 'x': dtype .* is not encodable; allowed"):
        encode_arrays(b"TEST", 1, {"x": np.zeros(3, dtype=dtype)})
