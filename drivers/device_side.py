"""The device side of the serial protocol: what the board's firmware does, around ANY ``hal`` Backend.

:class:`DeviceSide` reads requests from a :class:`~firstspike.drivers.link.Link` (device role), executes them on
its backend and answers. Responses are cached by request id (the last ``cache_size``), so a request the
host repeats after a link reset is answered from the cache and never executed twice.

Ways to reach it without hardware:

* :func:`serve_pty` — a pseudo-terminal; the driver opens the printed path like a USB-UART
  (``serial:///dev/pts/N``);
* :func:`serve_tcp` — a TCP port, like a serial-to-network bridge (``serial:///?url=socket://host:port``);
* :func:`run_serial_device` — blocking entry point for ``firstspike serve --serial-pty``.

This module never imports a concrete backend: composition (e.g. with the simulator) happens in runtime.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import select
import signal
import socket
import threading
import tty
from collections.abc import Callable
from typing import Any

from firstspike.drivers.link import Link, LinkOptions
from firstspike.drivers.messages import (
    SUPPORTED_VERSIONS,
    Configure,
    Configured,
    Hello,
    HelloOk,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Result,
    Run,
    decode_message,
    encode_message,
    error_from_exception,
    peek_request_id,
)
from firstspike.drivers.streams import ByteStream, FdStream, SocketStream
from firstspike.hal.backend import Backend
from firstspike.hal.config import ChipConfig
from firstspike.hal.errors import DeviceBusyError, LinkError

StreamWrapper = Callable[[ByteStream], ByteStream]


class DeviceState:
    """What the device remembers across link sessions and connections: the digest of its current
    config and the response cache (request id -> encoded response)."""

    def __init__(self, cache_size: int = 16) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size {cache_size} not allowed; use >= 1")
        self.cache_size = cache_size
        self.cache: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self.config_digest: bytes | None = None
        self.lock = threading.Lock()
        self.executed = 0  # requests executed on the backend
        self.cache_hits = 0  # requests answered from the cache


class DeviceSide:
    """Serve one byte stream: requests in, responses out, until :meth:`stop` or the stream ends."""

    def __init__(self, backend: Backend, stream: ByteStream, *, options: LinkOptions | None = None,
                 state: DeviceState | None = None, busy: bool = False, name: str = "device") -> None:
        self.backend = backend
        self.link = Link(stream, "device", options, name=name)
        self.state = state or DeviceState()
        self.busy = busy  # answer every request with DeviceBusyError (another host holds the device)
        self._stop = threading.Event()

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` is called or the stream closes; then close the link and stream."""
        self.link.start()
        try:
            while not self._stop.is_set():
                try:
                    data = self.link.recv(0.1)
                except LinkError:
                    break  # the stream ended (pty closed, socket gone)
                if data is None:
                    continue
                reply = self.handle(data)
                if reply is not None:
                    # A session reset meanwhile loses the reply: the host repeats its request, the cache answers.
                    with contextlib.suppress(LinkError):
                        self.link.send(reply)
        finally:
            self.link.close()

    def stop(self) -> None:
        """Ask :meth:`serve_forever` to return (within ~0.1 s)."""
        self._stop.set()

    # ---- requests ----------------------------------------------------------------------------------
    def handle(self, data: bytes) -> bytes | None:
        """One encoded request -> its encoded response (from the cache if the id was seen)."""
        rid = peek_request_id(data)
        if rid is None:
            return None  # not even an envelope: nothing to answer to
        st = self.state
        with st.lock:
            cached = st.cache.get(rid)
            if cached is not None:
                st.cache_hits += 1
                st.cache.move_to_end(rid)
                return cached
            try:
                _, msg = decode_message(data)
                response = self._execute(msg)
            except Exception as e:  # every failure goes back to the host as a typed error
                response = error_from_exception(e)
            reply = encode_message(response, rid)
            st.cache[rid] = reply
            while len(st.cache) > st.cache_size:
                st.cache.popitem(last=False)
            return reply

    def _execute(self, msg: Message) -> Message:
        if self.busy:
            raise DeviceBusyError("the device is serving another host; try again when it disconnects")
        st = self.state
        if isinstance(msg, Hello):
            common = [v for v in SUPPORTED_VERSIONS if msg.min_version <= v <= msg.max_version]
            if not common:
                raise ProtocolError(f"host speaks protocol versions {msg.min_version}..{msg.max_version}, "
                                    f"this device speaks {list(SUPPORTED_VERSIONS)}")
            info = self.backend.info()
            extra = {**info.extra, "firmware": "firstspike.drivers.device_side",
                     "protocol_versions": list(SUPPORTED_VERSIONS)}
            info = dataclasses.replace(info, extra=extra)
            return HelloOk(max(common), info, st.config_digest)
        if isinstance(msg, Configure):
            cfg = msg.config
            st.executed += 1
            self.backend.configure(cfg)
            st.config_digest = cfg.digest() if isinstance(cfg, ChipConfig) else cfg.target_digest
            return Configured(st.config_digest)
        if isinstance(msg, Run):
            st.executed += 1
            return Result(self.backend.run(msg.inputs, msg.options))
        if isinstance(msg, Ping):
            return Pong(msg.payload)
        raise ProtocolError(f"{type(msg).__name__} is not a request")


class Stopper:
    """Stops a running server (idempotent); also a context manager. ``sides`` are its DeviceSides
    (for statistics: ``stopper.sides[0].link.stats``, ``stopper.sides[0].state``)."""

    def __init__(self, fn: Callable[[], None], sides: list[DeviceSide] | None = None) -> None:
        self._fn = fn
        self.sides = sides if sides is not None else []
        self._done = False
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._fn()

    def __enter__(self) -> Stopper:
        return self

    def __exit__(self, *exc: object) -> None:
        self()


def serve_pty(backend: Backend, *, options: LinkOptions | None = None, wrap: StreamWrapper | None = None,
              state: DeviceState | None = None) -> tuple[str, Stopper]:
    """Serve ``backend`` on a new pseudo-terminal in a daemon thread; returns ``(slave path, stopper)``.

    The driver opens the path like a serial port. The device keeps its own handle on the slave open so
    hosts may come and go. ``wrap`` wraps the device's stream (e.g. with a fault injector).
    """
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        path = os.ttyname(slave)
    except OSError:
        os.close(master)
        os.close(slave)
        raise
    stream: ByteStream = FdStream(master, name=f"pty {path}")
    if wrap is not None:
        stream = wrap(stream)
    side = DeviceSide(backend, stream, options=options, state=state, name=f"device@{path}")
    thread = threading.Thread(target=side.serve_forever, name=f"serial-device {path}", daemon=True)
    thread.start()

    def stop() -> None:
        side.stop()
        thread.join(timeout=5)
        os.close(slave)

    return path, Stopper(stop, [side])


def serve_tcp(backend: Backend, host: str = "127.0.0.1", port: int = 0, *, options: LinkOptions | None = None,
              wrap: StreamWrapper | None = None, state: DeviceState | None = None) -> tuple[int, Stopper]:
    """Serve ``backend`` on a TCP port (0 = any free one) in daemon threads; returns ``(port, stopper)``.

    One host at a time, like a serial line: while one is connected, others get DeviceBusyError.
    """
    lsock = socket.create_server((host, port))
    bound = lsock.getsockname()[1]
    state = state or DeviceState()
    stopping = threading.Event()
    sides: list[tuple[DeviceSide, threading.Thread]] = []
    served: list[DeviceSide] = []  # every connection's DeviceSide, for statistics
    lock = threading.Lock()

    def serve_conn(conn: socket.socket, peer: str) -> None:
        with lock:
            busy = any(t.is_alive() and not s.busy for s, t in sides)
        stream: ByteStream = SocketStream(conn, name=f"tcp {peer}")
        if wrap is not None:
            stream = wrap(stream)
        side = DeviceSide(backend, stream, options=options, state=state, busy=busy, name=f"device@{peer}")
        t = threading.Thread(target=side.serve_forever, name=f"serial-device tcp {peer}", daemon=True)
        with lock:
            sides[:] = [(s, th) for s, th in sides if th.is_alive()]
            sides.append((side, t))
            served.append(side)
        t.start()

    def accept_loop() -> None:
        while not stopping.is_set():
            r, _, _ = select.select([lsock], [], [], 0.1)
            if not r:
                continue
            try:
                conn, addr = lsock.accept()
            except OSError:
                continue
            serve_conn(conn, f"{addr[0]}:{addr[1]}")

    acceptor = threading.Thread(target=accept_loop, name=f"serial-device tcp :{bound}", daemon=True)
    acceptor.start()

    def stop() -> None:
        stopping.set()
        acceptor.join(timeout=5)
        lsock.close()
        with lock:
            running = list(sides)
        for s, _ in running:
            s.stop()
        for _, t in running:
            t.join(timeout=5)

    return bound, Stopper(stop, served)


def run_serial_device(backend: Backend, *, pty: bool = True, tcp_port: int | None = None, host: str = "127.0.0.1",
                      on_ready: Callable[[str], None] = print, options: LinkOptions | None = None) -> None:
    """Serve ``backend`` as a serial device until SIGINT/SIGTERM (blocking; for ``firstspike serve``).

    For each endpoint ``on_ready`` gets the device URI a driver opens: ``serial:///dev/pts/N`` for the
    pty, ``serial:///?url=socket://HOST:PORT`` for TCP (``tcp_port=0`` picks a free port). The backend
    is not closed (the caller owns it).
    """
    if not pty and tcp_port is None:
        raise ValueError("run_serial_device: enable the pty, a TCP port, or both")
    done = threading.Event()
    stoppers: list[Stopper] = []
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: done.set())
    try:
        if pty:
            path, stop = serve_pty(backend, options=options)
            stoppers.append(stop)
            on_ready(f"serial://{path}")
        if tcp_port is not None:
            port, stop = serve_tcp(backend, host, tcp_port, options=options)
            stoppers.append(stop)
            on_ready(f"serial:///?url=socket://{host}:{port}")
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for stop in stoppers:
            stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
