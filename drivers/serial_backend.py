"""``serial://``: a :class:`firstspike.hal.backend.Backend` for a device on a serial line (USB-UART), over pyserial.

URI forms (one scheme, two ways to name the line)::

    serial:///dev/ttyUSB0?baud=3000000&timeout=5      a device path (also a pty path: serial:///dev/pts/7)
    serial:///?url=socket://127.0.0.1:5000            any pyserial URL (socket://, loop://, rfc2217://, ...)

Parameters: ``baud`` (default 3000000), ``timeout`` (s, default 5: handshake, link silence and stall
limit; the device keeps alive every ``timeout / 4``, so a run may last longer than ``timeout``),
``call_timeout`` (s, default 120: longest one call may take, device execution included),
``fragment`` (bytes per frame, 16..1024, default 240), ``window`` (frames in flight, 1..128, default 64),
``rto_ms`` (minimum retransmission timeout, default 20), ``adaptive`` (0/1, fragment size follows the
loss rate, default 1). Unknown parameters are rejected. In ``url=`` a literal ``&`` must be written %26.

Every call has a deadline; a link that is gone raises :class:`firstspike.hal.errors.LinkError` within ``timeout``.
"""

from __future__ import annotations

import random
import struct
import threading
import time
from dataclasses import replace
from typing import Any

from firstspike.drivers.link import Link, LinkOptions, LinkSessionLostError, LinkStalledError, LinkStats
from firstspike.drivers.messages import (
    ENVELOPE,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Configure,
    Configured,
    Error,
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
    exception_from_error,
)
from firstspike.drivers.streams import ByteStream, SerialStream
from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import BackendError, LinkError
from firstspike.hal.events import InputSpikes
from firstspike.hal.registry import DeviceURI

DEFAULT_BAUD = 3_000_000
URI_PARAMS = {"url", "baud", "timeout", "call_timeout", "fragment", "window", "rto_ms", "adaptive"}


class SerialBackend(Backend):
    """A device behind a serial line, spoken to with the firstspike serial protocol.

    Build it with :meth:`from_uri` / :meth:`open` (pyserial) or directly over any
    :class:`~firstspike.drivers.streams.ByteStream`. The constructor starts a link session and does the handshake;
    ``info()`` is what the device reported, plus a driver note in ``extra``.
    """

    scheme = "serial"
    #: A serial line is slow: a full configuration the device nearly holds travels as a diff.
    full_configs_as_diffs = True

    def __init__(self, stream: ByteStream, *, timeout_s: float = 5.0, call_timeout_s: float = 120.0,
                 options: LinkOptions | None = None, port: str = "", retries: int = 2) -> None:
        if timeout_s <= 0 or call_timeout_s <= 0:
            raise ValueError("timeout_s and call_timeout_s must be positive seconds")
        self._timeout = timeout_s
        self._call_timeout = call_timeout_s
        self._retries = retries
        self._port = port or stream.name
        opts = replace(options, timeout_s=timeout_s) if options else LinkOptions(timeout_s=timeout_s)
        self._link = Link(stream, "host", opts, name=f"serial {self._port}")
        self._lock = threading.RLock()
        self._closed = False
        self._next_id = random.getrandbits(32)
        self.discarded_responses = 0  # responses to requests no longer pending (duplicates, stale)
        self.link_resets = 0
        self._link.start()
        try:
            self._link.connect(timeout_s)
            hello = self._call(Hello(min(SUPPORTED_VERSIONS), max(SUPPORTED_VERSIONS), "firstspike-driver"))
            if not isinstance(hello, HelloOk):
                raise ProtocolError(f"handshake answered with {type(hello).__name__}, expected HelloOk")
            if hello.version not in SUPPORTED_VERSIONS:
                raise ProtocolError(f"device chose protocol version {hello.version}; "
                                    f"this driver speaks {list(SUPPORTED_VERSIONS)}")
        except BaseException:
            self._closed = True
            self._link.close()
            raise
        self.protocol_version = hello.version
        self.mirror.commit(None, hello.config_digest)  # the device says which configuration it holds, if any
        extra = {**hello.info.extra, "driver": "firstspike.drivers.serial_backend", "protocol_version": hello.version,
                 "port": self._port, "framing": "COBS + CRC-32, selective-repeat ARQ"}
        self._info = replace(hello.info, extra=extra)

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def open(cls, port_or_url: str, *, baud: int = DEFAULT_BAUD, timeout_s: float = 5.0, **kw: Any) -> SerialBackend:
        """Open a device path or any pyserial URL (``socket://h:p``, ``loop://``) and do the handshake."""
        import serial

        try:
            ser = serial.serial_for_url(port_or_url, baudrate=baud, timeout=0, write_timeout=timeout_s,
                                        exclusive=True)
        except (serial.SerialException, ValueError, OSError) as e:
            raise LinkError(f"serial: cannot open {port_or_url!r}: {e}") from e
        stream = SerialStream(ser, write_timeout_s=timeout_s, name=port_or_url)
        try:
            return cls(stream, timeout_s=timeout_s, port=port_or_url, **kw)
        except BaseException:
            stream.close()
            raise

    @classmethod
    def from_uri(cls, uri: DeviceURI) -> SerialBackend:
        """``serial:///dev/ttyUSB0?baud=...`` or ``serial:///?url=socket://host:port`` (see module doc)."""
        uri.check_params(URI_PARAMS)
        url = uri.param("url")
        if uri.netloc:
            raise ValueError(f"serial:// takes a device path (serial:///dev/ttyUSB0) or url= "
                             f"(serial:///?url=socket://host:port), not a host {uri.netloc!r}")
        if url is not None:
            if uri.path not in ("", "/"):
                raise ValueError(f"serial://: give either a device path or url=, not both ({uri.path!r} and {url!r})")
            if not url:
                raise ValueError("serial://: url= is empty; e.g. url=socket://127.0.0.1:5000")
            port = url
        else:
            if uri.path in ("", "/"):
                raise ValueError("serial:// needs a device path (serial:///dev/ttyUSB0) or url= "
                                 "(serial:///?url=socket://127.0.0.1:5000)")
            port = uri.path
        baud = uri.int_param("baud", DEFAULT_BAUD, 50, 100_000_000)
        timeout = uri.float_param("timeout", 5.0, 0.05, 3600.0)
        call_timeout = uri.float_param("call_timeout", 120.0, 0.05, 86400.0)
        fragment = uri.int_param("fragment", 240, 16, 1024)
        window = uri.int_param("window", 64, 1, 128)
        rto_min = uri.int_param("rto_ms", 20, 1, 1000) / 1000
        adaptive = uri.int_param("adaptive", 1, 0, 1) == 1
        opts = LinkOptions(fragment=fragment, min_fragment=min(32, fragment), adaptive=adaptive, window=window,
                           rto_min_s=rto_min, rto_initial_s=max(rto_min, 0.1), rto_max_s=max(rto_min, 1.0),
                           ack_delay_s=min(0.002, rto_min / 2), timeout_s=timeout)
        return cls.open(port, baud=baud, timeout_s=timeout, call_timeout_s=call_timeout, options=opts)

    # ---- calls -------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(f"serial:// device {self._port} is closed")

    def _ensure_link(self) -> None:
        """Before a call: if the link lost its session or the device fell silent, start a new session."""
        try:
            self._link.check()
        except LinkError:
            if self._link.dead:
                raise
            self.link_resets += 1
            self._link.connect(self._timeout)

    def _call(self, msg: Message, encoded: bytes | None = None) -> Message:
        with self._lock:
            self._check_open()
            rid = self._next_id
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF
            data = bytearray(encoded if encoded is not None else encode_message(msg, rid))
            struct.pack_into("<I", data, ENVELOPE.size - 4, rid)
            deadline = time.monotonic() + self._call_timeout
            self._ensure_link()
            self._link.send(bytes(data))
            resets = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LinkError(f"serial {self._port}: no answer to {type(msg).__name__} within "
                                    f"call_timeout {self._call_timeout} s")
                try:
                    reply = self._link.recv(min(left, 0.5))
                except (LinkStalledError, LinkSessionLostError) as e:
                    # The device is alive but the link is stuck or was reset on its side: start a new session
                    # and repeat the request with the same id (the device answers from its cache if it ran it).
                    if resets >= self._retries:
                        raise LinkError(f"{e} (gave up after {resets} link resets)") from e
                    resets += 1
                    self.link_resets += 1
                    self._link.connect(min(self._timeout / 2, max(deadline - time.monotonic(), 0.01)))
                    self._link.send(bytes(data))
                    continue
                if reply is None:
                    continue
                got, resp = decode_message(reply)
                if got != rid:
                    self.discarded_responses += 1
                    continue
                if isinstance(resp, Error):
                    raise exception_from_error(resp)
                return resp

    def info(self) -> DeviceInfo:
        """What the device reported in the handshake (``extra`` adds driver, protocol version and port)."""
        self._check_open()
        return self._info

    def _load_config(self, config: ChipConfig, digest: bytes) -> None:
        resp = self._expect(self._call(Configure(config)), Configured)
        self._check_digest(resp, digest)

    def _apply_diff(self, diff: ConfigDiff, target: ChipConfig | None) -> None:
        resp = self._expect(self._call(Configure(diff)), Configured)  # the device checks the base, too
        self._check_digest(resp, diff.target_digest)

    def _check_digest(self, resp: Configured, expected: bytes) -> None:
        if resp.config_digest != expected:
            raise BackendError(f"device reports config digest {resp.config_digest.hex()[:16]}..., "
                               f"expected {expected.hex()[:16]}...")

    @staticmethod
    def _expect(resp: Message, cls: type) -> Any:
        if not isinstance(resp, cls):
            raise ProtocolError(f"expected {cls.__name__}, the device answered {type(resp).__name__}")
        return resp

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        """Run a batch on the device (event times in ticks); exactly once, even across retransmissions."""
        self._check_open()
        self.check_run_request(inputs, options)
        resp = self._expect(self._call(Run(inputs, options)), Result)
        res: RunResult = resp.result
        if res.spikes.batch_size != inputs.batch_size:
            raise ProtocolError(f"device returned {res.spikes.batch_size} batch entries for {inputs.batch_size}")
        return res

    def ping(self, payload: bytes = b"") -> float:
        """Round trip of a PING through the whole stack; returns seconds."""
        t0 = time.perf_counter()
        resp = self._expect(self._call(Ping(payload)), Pong)
        if resp.payload != payload:
            raise ProtocolError("PONG payload differs from PING payload")
        return time.perf_counter() - t0

    @property
    def link_stats(self) -> LinkStats:
        """Counters of the link (bytes and frames on the wire, retransmissions, ...)."""
        return self._link.stats

    def close(self) -> None:
        """Stop the link threads and close the port. Idempotent."""
        if self._closed:
            return
        self._closed = True  # without the call lock: a call in progress ends with LinkError at once
        self._link.close()


__all__ = ["DEFAULT_BAUD", "PROTOCOL_VERSION", "URI_PARAMS", "SerialBackend"]
