"""Byte streams the link runs over: pyserial ports and URLs, file descriptors (ptys), sockets, memory pipes.

Every stream has the same three calls, all with timeouts so nothing ever blocks forever:

* ``read(max_bytes, timeout_s) -> bytes``: what is available (at most ``max_bytes``), waiting up to
  ``timeout_s`` seconds for the first byte; ``b""`` on timeout. Raises :class:`StreamClosedError` when the
  other end is gone.
* ``write(data, timeout_s)``: all of ``data`` or :class:`StreamTimeoutError` (peer not reading) /
  :class:`StreamClosedError`.
* ``close()``: idempotent.

Both exceptions are :class:`firstspike.hal.errors.LinkError`.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from firstspike.hal.errors import LinkError


class StreamClosedError(LinkError):
    """The byte stream ended: the peer closed it, the device vanished or an I/O error occurred."""


class StreamTimeoutError(LinkError):
    """A write could not complete in time (the peer is not reading)."""


@runtime_checkable
class ByteStream(Protocol):
    """A bidirectional byte stream with timeouts (seconds)."""

    name: str

    def read(self, max_bytes: int, timeout_s: float) -> bytes: ...

    def write(self, data: bytes, timeout_s: float) -> None: ...

    def close(self) -> None: ...


def _wait_writable(obj: Any, deadline: float, name: str) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise StreamTimeoutError(f"{name}: write timed out (the other end is not reading)")
    _, w, _ = select.select([], [obj], [], left)
    if not w:
        raise StreamTimeoutError(f"{name}: write timed out (the other end is not reading)")


def _read_some(
    waitable: Any, recv: Callable[[int], bytes], max_bytes: int, timeout_s: float, name: str, eof: str
) -> bytes:
    """Up to ``max_bytes`` once ``waitable`` is readable within ``timeout_s`` seconds; b"" on timeout."""
    r, _, _ = select.select([waitable], [], [], max(timeout_s, 0.0))
    if not r:
        return b""
    try:
        data = recv(max_bytes)
    except BlockingIOError:
        return b""
    except OSError as e:
        raise StreamClosedError(f"{name}: read failed ({e})") from e
    if not data:
        raise StreamClosedError(f"{name}: {eof}")
    return data


def _write_all(waitable: Any, send: Callable[[memoryview], int], data: bytes, timeout_s: float, name: str) -> None:
    """Write all of ``data`` within ``timeout_s`` seconds (non-blocking sends, select between them)."""
    view = memoryview(data)
    deadline = time.monotonic() + timeout_s
    while view:
        try:
            n = send(view)
            view = view[n:]
        except BlockingIOError:
            _wait_writable(waitable, deadline, name)
        except OSError as e:
            raise StreamClosedError(f"{name}: write failed ({e})") from e


class FdStream:
    """A stream over file descriptors (a pty master, a pipe pair). Non-blocking I/O with select."""

    def __init__(self, read_fd: int, write_fd: int | None = None, *, name: str = "fd", owns: bool = True) -> None:
        self.name = name
        self._rfd = read_fd
        self._wfd = read_fd if write_fd is None else write_fd
        self._owns = owns
        self._closed = False
        for fd in {self._rfd, self._wfd}:
            os.set_blocking(fd, False)

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        if self._closed:
            raise StreamClosedError(f"{self.name}: stream is closed")
        return _read_some(self._rfd, lambda n: os.read(self._rfd, n), max_bytes, timeout_s, self.name,
                          "end of stream")

    def write(self, data: bytes, timeout_s: float) -> None:
        if self._closed:
            raise StreamClosedError(f"{self.name}: stream is closed")
        _write_all(self._wfd, lambda v: os.write(self._wfd, v), data, timeout_s, self.name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns:
            for fd in {self._rfd, self._wfd}:
                with contextlib.suppress(OSError):
                    os.close(fd)


class SocketStream:
    """A stream over a connected socket (TCP or a socketpair)."""

    def __init__(self, sock: socket.socket, *, name: str = "socket") -> None:
        self.name = name
        self._sock = sock
        self._closed = False
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        if self._closed:
            raise StreamClosedError(f"{self.name}: stream is closed")
        return _read_some(self._sock, self._sock.recv, max_bytes, timeout_s, self.name, "connection closed by peer")

    def write(self, data: bytes, timeout_s: float) -> None:
        if self._closed:
            raise StreamClosedError(f"{self.name}: stream is closed")
        _write_all(self._sock, self._sock.send, data, timeout_s, self.name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class SerialStream:
    """A stream over an open pyserial port or URL handler (``serial_for_url`` result).

    The port is switched to non-blocking reads (``timeout=0``) and its ``write_timeout`` is set once
    (changing it per call would reconfigure a real UART). Waiting for input uses ``select`` on the
    port's file descriptor or socket where pyserial exposes one, else short polls (``loop://``).
    """

    def __init__(self, port: Any, *, write_timeout_s: float = 5.0, name: str | None = None,
                 poll_s: float = 0.002) -> None:
        self.name = name or str(getattr(port, "portstr", None) or getattr(port, "port", "serial"))
        self._port = port
        self._poll_s = poll_s
        self._closed = False
        port.timeout = 0
        port.write_timeout = write_timeout_s
        self._selectable: Any = None
        sock = getattr(port, "_socket", None)  # pyserial's socket:// handler
        if isinstance(sock, socket.socket):
            self._selectable = sock
        else:
            try:
                fd = port.fileno()
                if isinstance(fd, int) and fd >= 0:
                    self._selectable = fd
            except Exception:  # handlers without a file descriptor (loop://, spy://, ...)
                self._selectable = None

    def _errors(self) -> tuple[type[BaseException], ...]:
        import serial

        return (serial.SerialException, OSError, TypeError, AttributeError)

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        if self._closed:
            raise StreamClosedError(f"{self.name}: stream is closed")
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            try:
                data = self._port.read(max_bytes)
            except self._errors() as e:
                raise StreamClosedError(f"{self.name}: read failed ({e})") from e
            if data:
                return bytes(data)
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            if self._selectable is not None:
                try:
                    select.select([self._selectable], [], [], left)
                except (OSError, ValueError) as e:
                    raise StreamClosedError(f"{self.name}: port is gone ({e})") from e
                if time.monotonic() >= deadline:
                    # One more non-blocking read covers data that arrived with the deadline.
                    try:
                        return bytes(self._port.read(max_bytes))
                    except self._errors() as e:
                        raise StreamClosedError(f"{self.name}: read failed ({e})") from e
            else:
                time.sleep(min(self._poll_s, left))

    def write(self, data: bytes, timeout_s: float) -> None:
        import serial

        if self._closed:
            raise StreamClosedError(f"{self.name}: stream is closed")
        try:
            n = self._port.write(data)
        except serial.SerialTimeoutException as e:
            raise StreamTimeoutError(f"{self.name}: write timed out ({e})") from e
        except self._errors() as e:
            raise StreamClosedError(f"{self.name}: write failed ({e})") from e
        if n is not None and n != len(data):
            raise StreamTimeoutError(f"{self.name}: wrote {n} of {len(data)} bytes")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # closing a vanished device may itself fail; it is gone anyway
            self._port.close()


class _Channel:
    """One direction of a memory pipe: chunks become readable ``latency_s`` after they are written."""

    def __init__(self, latency_s: float, capacity: int) -> None:
        self._cv = threading.Condition()
        self._q: collections.deque[tuple[float, bytes]] = collections.deque()
        self._size = 0
        self._latency = latency_s
        self._capacity = capacity
        self.closed = False

    def put(self, data: bytes, timeout_s: float, name: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._size >= self._capacity and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StreamTimeoutError(f"{name}: write timed out (the other end is not reading)")
                self._cv.wait(left)
            if self.closed:
                raise StreamClosedError(f"{name}: pipe is closed")
            self._q.append((time.monotonic() + self._latency, bytes(data)))
            self._size += len(data)
            self._cv.notify_all()

    def get(self, max_bytes: int, timeout_s: float, name: str) -> bytes:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._cv:
            while True:
                now = time.monotonic()
                if self._q and self._q[0][0] <= now:
                    out = bytearray()
                    while self._q and self._q[0][0] <= now and len(out) < max_bytes:
                        t, chunk = self._q.popleft()
                        take = chunk[: max_bytes - len(out)]
                        out += take
                        if len(take) < len(chunk):
                            self._q.appendleft((t, chunk[len(take) :]))
                    self._size -= len(out)
                    self._cv.notify_all()
                    return bytes(out)
                if self.closed and not self._q:
                    raise StreamClosedError(f"{name}: pipe closed by peer")
                wake = deadline if not self._q else min(deadline, self._q[0][0])
                if now >= deadline:
                    return b""
                self._cv.wait(wake - now)

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()


class MemoryStream:
    """One end of an in-memory duplex pipe (see :func:`memory_pipe`)."""

    def __init__(self, rx: _Channel, tx: _Channel, name: str) -> None:
        self.name = name
        self._rx, self._tx = rx, tx
        self._closed = False

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        if self._closed:
            raise StreamClosedError(f"{self.name}: stream is closed")
        return self._rx.get(max_bytes, timeout_s, self.name)

    def write(self, data: bytes, timeout_s: float) -> None:
        if self._closed:
            raise StreamClosedError(f"{self.name}: stream is closed")
        self._tx.put(data, timeout_s, self.name)

    def close(self) -> None:
        self._closed = True
        self._rx.close()
        self._tx.close()


def memory_pipe(latency_s: float = 0.0, capacity: int = 1 << 20) -> tuple[MemoryStream, MemoryStream]:
    """An in-memory duplex byte pipe ``(a, b)``: what ``a`` writes ``b`` reads after ``latency_s`` seconds.

    ``capacity`` bytes may be in flight per direction before writes block (like a UART FIFO + driver buffer).
    """
    ab, ba = _Channel(latency_s, capacity), _Channel(latency_s, capacity)
    return MemoryStream(ba, ab, "pipe-a"), MemoryStream(ab, ba, "pipe-b")
