"""An exact, versioned, checksummed binary container for named numpy arrays.

Layout (all little-endian)::

    magic      4 bytes   (identifies the payload kind, e.g. b"FSCF" for a ChipConfig)
    version    u16       format version
    flags      u16       reserved, 0
    header     u32 length + bytes   (kind-specific fixed header, e.g. digests of a diff)
    count      u32       number of arrays
    count x:   name_len u8, name (ASCII), dtype_len u8, dtype (numpy str, e.g. "<u2"), ndim u8,
               shape ndim x u32, nbytes u32, raw bytes (C order)
    crc32      u32       over everything before it

Decoding never trusts a length: every read is bounds-checked, the dtype must be on an allowlist and the
byte count must match the shape, so truncated or corrupted input raises :class:`ConfigDecodeError`.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from firstspike.hal.errors import ConfigDecodeError

_ALLOWED_DTYPES = {"|u1", "<u2", "<u4", "<i8", "|b1", "<i4", "<f8"}
_MAX_NDIM = 4


def _array_header(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The bytes before an array's data: name, dtype, shape and byte count (validated here)."""
    dstr = dtype.str
    if dstr not in _ALLOWED_DTYPES:
        raise ValueError(f"array {name!r}: dtype {dstr} is not encodable; allowed {sorted(_ALLOWED_DTYPES)}")
    nb = name.encode("ascii")
    nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    return b"".join((struct.pack("<B", len(nb)), nb, struct.pack("<B", len(dstr)), dstr.encode("ascii"),
                     struct.pack(f"<B{len(shape)}I", len(shape), *shape), struct.pack("<I", nbytes)))


# (name, dtype, shape) -> header bytes; configurations have a few fixed-shape fields, encoded on every digest
_HEADERS: dict[tuple[str, np.dtype, tuple[int, ...]], bytes] = {}


def encode_arrays(magic: bytes, version: int, arrays: dict[str, np.ndarray], header: bytes = b"") -> bytes:
    """Encode named arrays (in the given order) into the container format."""
    if len(magic) != 4:
        raise ValueError("magic must be 4 bytes")
    parts: list[bytes | memoryview] = [magic, struct.pack("<HHI", version, 0, len(header)), header,
                                       struct.pack("<I", len(arrays))]
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        key = (name, a.dtype, a.shape)
        head = _HEADERS.get(key)
        if head is None:
            head = _array_header(name, a.dtype, a.shape)
            if len(_HEADERS) < 4096:  # a bound: names and shapes come from callers
                _HEADERS[key] = head
        parts.append(head)
        # the array's own buffer (C order, little-endian now): join copies it once, tobytes would copy it twice
        parts.append(a.data.cast("B") if a.size else b"")
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


class _Reader:
    def __init__(self, data: bytes, end: int) -> None:
        self.data = data
        self.pos = 0
        self.end = end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise ConfigDecodeError(f"truncated data: need {n} bytes for {what} at offset {self.pos}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def decode_arrays(
    data: bytes, magic: bytes, supported_versions: tuple[int, ...]
) -> tuple[int, bytes, dict[str, np.ndarray]]:
    """Decode the container; returns (version, header, arrays). Raises ConfigDecodeError on any defect."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ConfigDecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 4 + 8 + 4 + 4:
        raise ConfigDecodeError(f"truncated data: {len(data)} bytes is shorter than the smallest valid encoding")
    if data[:4] != magic:
        raise ConfigDecodeError(f"bad magic {data[:4]!r}; expected {magic!r}")
    (crc,) = struct.unpack("<I", data[-4:])
    version = struct.unpack("<H", data[4:6])[0]
    if version not in supported_versions:
        raise ConfigDecodeError(f"unsupported format version {version}; this build reads {list(supported_versions)}")
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise ConfigDecodeError("checksum mismatch: the data is corrupted or truncated")
    r = _Reader(data, len(data) - 4)
    r.take(4, "magic")
    _, flags, hlen = r.unpack("<HHI", "version/flags/header length")
    if flags != 0:
        raise ConfigDecodeError(f"unknown flags {flags:#x}")
    header = r.take(hlen, "header")
    (count,) = r.unpack("<I", "array count")
    arrays: dict[str, np.ndarray] = {}
    for _ in range(count):
        (nlen,) = r.unpack("<B", "name length")
        try:
            name = r.take(nlen, "name").decode("ascii")
            (dlen,) = r.unpack("<B", "dtype length")
            dstr = r.take(dlen, "dtype").decode("ascii")
        except UnicodeDecodeError:
            raise ConfigDecodeError("non-ASCII array name or dtype") from None
        if dstr not in _ALLOWED_DTYPES:
            raise ConfigDecodeError(f"array {name!r}: dtype {dstr!r} not allowed")
        if name in arrays:
            raise ConfigDecodeError(f"array {name!r} appears twice")
        (ndim,) = r.unpack("<B", "ndim")
        if ndim > _MAX_NDIM:
            raise ConfigDecodeError(f"array {name!r}: {ndim} dimensions, at most {_MAX_NDIM} allowed")
        shape = r.unpack(f"<{ndim}I", "shape")
        (nbytes,) = r.unpack("<I", "byte count")
        dt = np.dtype(dstr)
        expect = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if nbytes != expect:
            raise ConfigDecodeError(f"array {name!r}: {nbytes} bytes do not match shape {shape} of {dstr}")
        raw = r.take(nbytes, f"array {name!r}")
        arr = np.frombuffer(raw, dtype=dt).reshape(shape).copy()
        if dstr == "|b1" and arr.size and raw.translate(None, b"\x00\x01"):
            raise ConfigDecodeError(f"array {name!r}: boolean bytes other than 0/1")
        arrays[name] = arr
    if r.pos != r.end:
        raise ConfigDecodeError(f"{r.end - r.pos} trailing bytes after the last array")
    return version, header, arrays
