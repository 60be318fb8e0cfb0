"""A reliable, ordered message link over an unreliable byte stream: the threads around the ARQ state machine.

The protocol (sessions, fragments, sliding window, acks, exact loss detection, retransmission timer,
keep-alives; ``docs/serial-protocol.md`` section 3) is :class:`firstspike.drivers.arq.LinkMachine`, which never
touches a clock or a stream. :class:`Link` drives one over a :class:`~firstspike.drivers.streams.ByteStream` with
the wall clock (``time.monotonic``) and two threads: a reader (bytes -> machine) and a writer (machine -> bytes,
sleeping until the machine's next wake-up or an event). Only the writer writes, and the reader never blocks on the
writer, so two links can never deadlock each other. Callers block in :meth:`Link.connect` and :meth:`Link.recv`.

The host raises :class:`firstspike.hal.errors.LinkError` when nothing arrived for ``timeout_s``
(:class:`LinkStalledError` when its frames make no progress for half of it although the device is alive,
:class:`LinkSessionLostError` when the device restarted), or at once when the stream closes.
"""

from __future__ import annotations

import threading
import time

from firstspike.drivers.arq import (
    LinkMachine,
    LinkOptions,
    LinkSessionLostError,
    LinkStalledError,
    LinkStats,
    Role,
)
from firstspike.drivers.streams import ByteStream, StreamClosedError, StreamTimeoutError
from firstspike.hal.errors import LinkError

__all__ = ["Link", "LinkOptions", "LinkSessionLostError", "LinkStalledError", "LinkStats", "Role"]

#: shortest sleep of the writer between polls (seconds): a wake-up time in the past polls again after this
_MIN_WAIT_S = 0.0005
#: longest a blocked ``recv`` sleeps before it checks the link's health again (seconds)
_RECV_CHECK_S = 0.05


class Link:
    """One end of a reliable message link over ``stream``. ``role`` is "host" (driver) or "device".

    Host: ``start()``, ``connect(timeout_s)``, then ``send()``/``recv()``; ``close()``.
    Device: ``start()``, then ``recv()``/``send()``; sessions are started by the host.
    """

    def __init__(self, stream: ByteStream, role: Role, options: LinkOptions | None = None, *,
                 name: str | None = None, seed: int | None = None) -> None:
        self.stream = stream
        self._m = LinkMachine(role, options, now=time.monotonic(), name=name, seed=seed)
        self.role = self._m.role
        self.opt = self._m.opt
        self.name = self._m.name
        self.stats: LinkStats = self._m.stats
        self._cv = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False

    @property
    def dead(self) -> bool:
        """True once the stream failed or the link was closed (no reset can revive it)."""
        return self._m.dead

    @property
    def connected(self) -> bool:
        return self._m.connected

    @property
    def session(self) -> int:
        return self._m.session

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Link:
        """Start the reader and writer threads (daemons)."""
        if self._threads:
            return self
        for fn, what in ((self._reader, "reader"), (self._writer, "writer")):
            t = threading.Thread(target=fn, name=f"{self.name}-{what}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self, *, close_stream: bool = True) -> None:
        """Stop both threads (bounded by ``poll_s``) and close the stream. Idempotent."""
        with self._cv:
            self._stopping = True
            self._m.fail(LinkError(f"{self.name}: link is closed"))
            self._cv.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=max(2.0, 4 * self.opt.poll_s))
        if close_stream:
            self.stream.close()

    def _fail(self, err: LinkError) -> None:
        with self._cv:
            self._m.fail(err)
            self._cv.notify_all()

    # ---- host: session start -----------------------------------------------------------------------
    def connect(self, timeout_s: float) -> None:
        """Host: start a new link session (RESET until RESET_ACK). Raises LinkError after ``timeout_s``."""
        with self._cv:
            self._m.connect(time.monotonic(), timeout_s)
            self._cv.notify_all()  # the writer sends the first RESET now
            while not self._m.connected:
                if self._m.dead:
                    self._m.raise_dead()
                now = time.monotonic()
                if self._m.connect_failed(now):
                    raise LinkError(self._m.no_answer_reason(timeout_s))
                # the reader wakes us at every arrival; the machine's deadline is exact in its own clock
                self._cv.wait(max(self._m.connect_deadline - now, _MIN_WAIT_S))

    # ---- messages ----------------------------------------------------------------------------------
    def send(self, message: bytes) -> None:
        """Queue a message for reliable delivery (returns at once; progress is checked by ``recv``)."""
        with self._cv:
            self._m.send(message)
            self._cv.notify_all()

    def recv(self, timeout_s: float) -> bytes | None:
        """The next message, waiting up to ``timeout_s``; ``None`` on timeout. Raises LinkError if dead
        (and, on the host, if the device fell silent, our frames stalled or the session was lost)."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._cv:
            while True:
                msg = self._m.next_message()
                if msg is not None:
                    return msg
                now = time.monotonic()
                self._m.check(now)
                if now >= deadline:
                    return None
                self._cv.wait(min(deadline - now, _RECV_CHECK_S))

    def idle(self) -> bool:
        """True when nothing is queued or unacknowledged."""
        with self._cv:
            return self._m.idle

    def check(self) -> None:
        """Raise the link's error, if any (see :meth:`recv`)."""
        with self._cv:
            self._m.check(time.monotonic())

    # ---- threads -----------------------------------------------------------------------------------
    def _writer(self) -> None:
        m = self._m
        write_timeout = self.opt.timeout_s if self.role == "host" else min(self.opt.timeout_s, 0.5)
        while True:
            with self._cv:
                while True:
                    if self._stopping or m.dead:
                        return
                    now = time.monotonic()
                    out = m.poll(now)
                    if out.frames:
                        break
                    self._cv.wait(max(out.wake - now, _MIN_WAIT_S))
            data = out.encode()
            try:
                self.stream.write(data, write_timeout)
            except StreamTimeoutError as e:
                with self._cv:
                    if m.write_timed_out(e):
                        self._cv.notify_all()
                        return
            except (StreamClosedError, LinkError) as e:
                self._fail(e)
                return
            with self._cv:
                m.wrote(len(data), len(out.frames), time.monotonic())

    def _reader(self) -> None:
        m = self._m
        while True:
            with self._cv:
                if self._stopping or m.dead:
                    return
            try:
                data = self.stream.read(1 << 16, self.opt.poll_s)
            except LinkError as e:
                self._fail(e)
                return
            if not data:
                continue
            frames = m.decode(data)  # the decoder is this thread's alone: no lock needed
            with self._cv:
                m.receive_frames(frames, len(data), time.monotonic())
                self._cv.notify_all()
