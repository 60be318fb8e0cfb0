"""The ARQ link's protocol logic as a sans-IO state machine: bytes, messages and time in; frames and wake-up times out.

:class:`LinkMachine` is one end of a link (selective-repeat ARQ over COBS frames; the protocol is
``docs/serial-protocol.md`` section 3). It never reads a clock, sleeps, locks or touches a stream: every event comes
in as a call that carries the current time (seconds on any monotonic clock), and what the end wants to write comes
out of :meth:`LinkMachine.poll` together with the time it wants to be polled again. So the same code runs under
:class:`firstspike.drivers.link.Link` (a reader and a writer thread over a byte stream and the wall clock) and
under a test's fake clock, deterministically.

Events in:

* :meth:`~LinkMachine.receive` (bytes from the peer; or :meth:`~LinkMachine.decode` then
  :meth:`~LinkMachine.receive_frames`);
* :meth:`~LinkMachine.send` (queue a message), :meth:`~LinkMachine.connect` (host: start a link session);
* time passing: :meth:`~LinkMachine.poll` with a later ``now``;
* :meth:`~LinkMachine.wrote` (the last poll's frames reached the line), :meth:`~LinkMachine.write_timed_out`,
  :meth:`~LinkMachine.fail` (the stream failed or the link was closed).

Out: :meth:`~LinkMachine.poll` -> :class:`Transmit` (frames to write now, the next wake-up time),
:meth:`~LinkMachine.next_message` (delivered messages, in order, exactly once), :meth:`~LinkMachine.check`
(raises the link's error: dead, and on the host: session lost, peer silent, frames stalled).

What the protocol does (details in the methods):

* messages are cut into DATA frames of at most ``fragment`` payload bytes (the last one has FLAG_END);
* every DATA frame carries a 16-bit sequence number; up to ``window`` frames are in flight;
* the receiver acknowledges cumulatively (piggybacked on its own DATA frames, or in an ACK frame after
  ``ack_delay_s``) and selectively (a bitmap of the frames it holds beyond the first gap). A gap or a
  duplicate is answered at once (NACK / ACK);
* loss detection is exact because a serial line is FIFO: every DATA frame carries a 2-bit transmission
  epoch and every ACK names the last transmission (sequence number, epoch) that arrived. Any frame sent
  *before* that transmission and still not acknowledged was lost, and is resent at once;
* a single retransmission timer (adaptive, from measured round trips, gently backed off) covers the
  tail: when it expires, the oldest frames not heard of for a whole timeout are resent as probes;
* duplicates are recognised by sequence number and dropped;
* optionally (``adaptive``) the fragment size follows the measured loss rate; a frame cut before the line got
  worse is resent as PART pieces of the current size, collected by the receiver across resends;
* a link *session* (16 bits, chosen by the host) starts with RESET / RESET_ACK; frames of other sessions
  are ignored;
* both sides send keep-alives when idle, so a silent peer is a dead peer (host: :meth:`~LinkMachine.check`);
  the host's RESET tells the device the host's keep-alive interval (a quarter of the host's ``timeout_s``), and the
  device keeps alive at least that often, so a host with a short timeout never mistakes a device busy with a long
  run for a dead one; the device gives up its unacknowledged frames once the host has been silent for ``timeout_s``.
"""

from __future__ import annotations

import collections
import math
import random
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from firstspike.drivers.framing import (
    CRC_SIZE,
    EPOCH_MASK,
    EPOCH_SHIFT,
    FLAG_ACK,
    FLAG_END,
    FLAG_FROM_DEVICE,
    HEADER_SIZE,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    FrameType,
    encode_frame,
)
from firstspike.hal.errors import LinkError

Role = Literal["host", "device"]

_FRAME_OVERHEAD = HEADER_SIZE + CRC_SIZE + 3  # + COBS code byte(s) + delimiters, roughly
_PART_HEAD = struct.Struct("<HH")  # PART payload: offset, total length of the frame resent in pieces
# ACK/NACK payload head: last DATA/PART seq received, its epoch | 0x80 if valid, how long the receiver held
# that report before sending it (10 us units, 0xFFFF = longer), then the selective-ack bitmap.
_ACK_HEAD = struct.Struct("<HBH")
_HOLD_UNIT_S = 1e-5
#: a device answers frames of an unknown session with RESET_REQUEST at most this often (seconds)
_RESET_REQUEST_INTERVAL_S = 0.05
#: the host repeats RESET, backing off by 1.5x from max(rto_initial_s, this) up to _RESET_MAX_INTERVAL_S (seconds)
_RESET_MIN_INTERVAL_S = 0.02
_RESET_MAX_INTERVAL_S = 0.5
#: RESET payload: the keep-alive interval the host asks of the device (milliseconds, 1..65535; an empty payload, as
#: older hosts send, asks nothing). The host's silence limit is its own ``timeout_s``, which the device does not know.
_KEEPALIVE_REQUEST = struct.Struct("<H")
#: the device never sends keep-alives more often than this, whatever a host asks (seconds)
MIN_DEVICE_KEEPALIVE_S = 0.005
#: frames one poll hands out at most (resends and new fragments); with more pending, the next wake-up is at once
_POLL_BUDGET = 64


class LinkStalledError(LinkError):
    """Our frames make no progress although the peer is alive; a link reset may recover."""


class LinkSessionLostError(LinkError):
    """The peer does not know our link session any more (it restarted); reset the link and resend."""


@dataclass(frozen=True)
class LinkOptions:
    """Tuning of the link. Times in seconds, sizes in bytes, ``window`` in frames."""

    fragment: int = 240  # largest DATA payload per frame
    min_fragment: int = 32  # smallest fragment the adaptive sizing may choose
    adaptive: bool = True  # follow the loss rate with the fragment size
    window: int = 64  # frames in flight (1..128)
    rto_initial_s: float = 0.1  # retransmission timeout before the first round-trip sample
    rto_min_s: float = 0.02
    rto_max_s: float = 1.0
    ack_delay_s: float = 0.002  # wait this long for a DATA frame to carry the ack before sending an ACK
    timeout_s: float = 5.0  # peer silence that means the link is dead (host side)
    keepalive_s: float | None = None  # idle time before a keep-alive (default timeout_s / 4, <= 1 s)
    idle_delimiter_s: float = 0.005  # after this much idle time a frame gets a leading 0x00
    max_message: int = 64 << 20  # largest message accepted (bytes)
    poll_s: float = 0.05  # longest the reader blocks in one read (bounds close() latency)

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, allowed: str) -> None:
            if not ok:
                raise ValueError(f"LinkOptions.{name}={getattr(self, name)!r} not allowed; {allowed}")

        check("fragment", 16 <= self.fragment <= MAX_PAYLOAD, f"use 16..{MAX_PAYLOAD}")
        check("min_fragment", 16 <= self.min_fragment <= self.fragment, "use 16..fragment")
        check("window", 1 <= self.window <= 128, "use 1..128")
        check("rto_min_s", 0 < self.rto_min_s <= self.rto_max_s, "use 0 < rto_min_s <= rto_max_s")
        check("rto_initial_s", self.rto_min_s <= self.rto_initial_s <= self.rto_max_s, "use rto_min..rto_max")
        check("ack_delay_s", 0 <= self.ack_delay_s < self.rto_min_s, "use 0 <= ack_delay_s < rto_min_s")
        check("timeout_s", self.timeout_s > 0, "use a positive number of seconds")
        check("keepalive_s", self.keepalive_s is None or 0 < self.keepalive_s < self.timeout_s,
              "use None or 0 < keepalive_s < timeout_s")
        check("max_message", self.max_message >= 1, "use a positive byte count")
        check("poll_s", 0 < self.poll_s <= 1, "use 0 < poll_s <= 1")

    @property
    def keepalive(self) -> float:
        """Idle time before a keep-alive (seconds)."""
        return self.keepalive_s if self.keepalive_s is not None else min(self.timeout_s / 4, 1.0)


@dataclass
class LinkStats:
    """Counters of one link (both directions as seen from this end)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    data_frames_sent: int = 0  # first transmissions
    retransmits: int = 0  # frames resent (a frame resent in PART pieces counts once)
    losses_detected: int = 0  # resends decided from an ack (exact, FIFO)
    timeouts: int = 0  # retransmission timer expiries (each resends one probe frame)
    nacks_sent: int = 0
    nacks_received: int = 0
    acks_sent: int = 0
    duplicates: int = 0  # DATA/PART frames received twice (dropped)
    out_of_window: int = 0
    bad_frames: int = 0  # pieces that failed COBS/CRC/length checks
    echoed: int = 0  # our own frames coming back (a loopback, not a device)
    foreign_session: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    payload_bytes_sent: int = 0  # message bytes handed to the link
    payload_bytes_received: int = 0
    resets: int = 0
    write_timeouts: int = 0
    fragment: int = 0  # current fragment size
    srtt_ms: float = 0.0


class Transmit(NamedTuple):
    """What :meth:`LinkMachine.poll` hands out: ``frames`` to write now (in order, possibly none), the time
    ``wake`` at which to poll again at the latest (sooner if an event arrives), and whether the line was idle
    long enough for the bytes to start with a delimiter. (A NamedTuple: every poll makes one, and it is made
    twice as fast as a frozen dataclass.)"""

    frames: list[Frame]
    wake: float
    leading_delimiter: bool

    def encode(self) -> bytes:
        """The bytes for the line (pure: callable outside any lock)."""
        return b"".join(encode_frame(f, leading_delimiter=self.leading_delimiter and i == 0)
                        for i, f in enumerate(self.frames))


@dataclass
class _Pending:
    seq: int
    payload: bytes
    end: bool
    # (write order on the link, time) of every transmission; transmission i has epoch i & 3
    txs: list[tuple[int, float]] = field(default_factory=list)
    sacked: bool = False
    queued: bool = False

    @property
    def first_sent(self) -> float:
        return self.txs[0][1]

    @property
    def sent_at(self) -> float:
        return self.txs[-1][1]

    def tx_of(self, epoch: int) -> tuple[int, float] | None:
        """The latest transmission with this epoch."""
        for i in range(len(self.txs) - 1, -1, -1):
            if i & 3 == epoch:
                return self.txs[i]
        return None


def _unwrap(v16: int, ref: int) -> int:
    """The unbounded sequence number closest to ``ref`` whose low 16 bits are ``v16``."""
    d = (v16 - ref) & 0xFFFF
    if d >= 0x8000:
        d -= 0x10000
    return ref + d


@dataclass
class _Parts:
    buf: bytearray
    mask: bytearray
    missing: int
    end: bool


@dataclass
class _Receiver:
    expected: int = 0
    ooo: dict[int, tuple[bytes, bool]] = field(default_factory=dict)
    parts: dict[int, _Parts] = field(default_factory=dict)  # DATA frames arriving in PART pieces
    partial: list[bytes] = field(default_factory=list)
    partial_len: int = 0
    unacked: int = 0  # frames received since the last ack we sent
    ack_due: float | None = None
    nack_due: float | None = None
    last: tuple[int, int, float] | None = None  # (seq16, epoch, arrival time) of the last DATA/PART frame


class LinkMachine:
    """One end of a link, ``role`` "host" (starts sessions) or "device" (answers them). ``now`` is the current
    time (seconds, monotonic); ``seed`` seeds the host's choice of session numbers. Not thread-safe: the caller
    serialises calls (except :meth:`decode`, see there)."""

    def __init__(self, role: Role, options: LinkOptions | None = None, *, now: float, name: str | None = None,
                 seed: int | None = None) -> None:
        if role not in ("host", "device"):
            raise ValueError(f"role {role!r} not allowed; use 'host' or 'device'")
        self.role: Role = role
        self.opt = options or LinkOptions()
        self.name = name or f"{role}-link"
        self.stats = LinkStats(fragment=self.opt.fragment)
        self._rng = random.Random(seed)
        self._tx_flag = FLAG_FROM_DEVICE if role == "device" else 0
        self._decoder = FrameDecoder()
        self._dead: LinkError | None = None
        self._session = 0
        self._connected = False
        self._session_lost = False
        self._ctrl: collections.deque[Frame] = collections.deque()
        self._last_tx = -math.inf  # nothing written yet
        self._last_rx = now
        self._last_reset_request = -math.inf
        # host, while connecting: when the next RESET is due, the interval after it, and when to give up
        self._reset_due: float | None = None
        self._reset_interval = 0.0
        self._reset_until = -math.inf
        # RTT estimate (Jacobson/Karels) and adaptive fragment size.
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._loss = 0.0
        self._fragment = self.opt.fragment
        # device: the keep-alive interval the host asked for in its RESET (seconds; None: our own)
        self._peer_keepalive: float | None = None
        self._reset_state(now)

    # ---- state -----------------------------------------------------------------------------------
    def _reset_state(self, now: float) -> None:
        self._next_seq = 0
        self._base = 0
        self._window: dict[int, _Pending] = {}
        self._recent: collections.OrderedDict[int, _Pending] = collections.OrderedDict()  # acked lately
        self._retx: collections.deque[int] = collections.deque()
        self._outbox: collections.deque[bytes] = collections.deque()
        self._out_pos = 0
        self._rto_deadline: float | None = None
        self._tx_counter = 0  # transmissions in write order (the line is FIFO)
        self._backoff = 1.0
        self._rx = _Receiver()
        self._inbox: collections.deque[bytes] = collections.deque()
        self._last_progress = now

    @property
    def dead(self) -> bool:
        """True once the stream failed or the link was closed (no reset can revive it)."""
        return self._dead is not None

    @property
    def connected(self) -> bool:
        """A link session is up (host: RESET_ACK arrived; device: a RESET arrived)."""
        return self._connected

    @property
    def session(self) -> int:
        return self._session

    @property
    def keepalive(self) -> float:
        """This end's idle time before a keep-alive (seconds): the options' value; on the device, shortened to what
        the host asked for in its RESET (never below :data:`MIN_DEVICE_KEEPALIVE_S`)."""
        if self._peer_keepalive is None:
            return self.opt.keepalive
        return max(min(self.opt.keepalive, self._peer_keepalive), MIN_DEVICE_KEEPALIVE_S)

    @property
    def idle(self) -> bool:
        """True when nothing is queued or unacknowledged."""
        return not self._window and not self._outbox

    def _rto(self) -> float:
        o = self.opt
        if self._srtt is None:
            return o.rto_initial_s
        return min(max(self._srtt + 4 * self._rttvar + o.ack_delay_s, o.rto_min_s), o.rto_max_s)

    def _rtt_sample(self, rtt: float) -> None:
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        self.stats.srtt_ms = self._srtt * 1e3

    def _loss_event(self, lost: bool) -> None:
        if not self.opt.adaptive:
            return
        a = 1 / 64  # smooth: single losses come in bursts (one ack reveals several)
        self._loss = self._loss * (1 - a) + (a if lost else 0.0)
        wire_bits = 8 * (self._fragment + _FRAME_OVERHEAD)
        p = -math.log(1 - min(self._loss, 0.9)) / wire_bits  # per-bit error rate that explains the loss
        h = _FRAME_OVERHEAD
        # Payload size maximising payload / (payload + h) * (1 - p)^(8 (payload + h)).
        best = self.opt.fragment if p <= 0 else (-h + math.sqrt(h * h + 4 * h / (8 * p))) / 2
        self._fragment = int(min(max(best, self.opt.min_fragment), self.opt.fragment))
        self.stats.fragment = self._fragment

    # ---- events: the stream, the caller ----------------------------------------------------------
    def fail(self, err: LinkError) -> None:
        """The stream failed or the link is being closed: the link is dead (the first error is kept)."""
        if self._dead is None:
            self._dead = err

    def raise_dead(self) -> None:
        """Raise (a fresh copy of) the error that killed the link."""
        assert self._dead is not None
        raise type(self._dead)(str(self._dead))

    def check(self, now: float) -> None:
        """Raise if the link is dead, lost its session or (host) the device is silent or our frames stall."""
        if self._dead is not None:
            self.raise_dead()
        if self.role != "host":
            return
        if self._session_lost:
            raise LinkSessionLostError(f"{self.name}: the device lost link session {self._session} (did it restart?)")
        silent = now - self._last_rx
        if silent > self.opt.timeout_s:
            raise LinkError(f"{self.name}: nothing received from the device for {silent:.2f} s "
                            f"(timeout {self.opt.timeout_s} s): the link is down or the device is gone")
        if self._window:
            oldest = next(iter(self._window.values()))
            since = now - max(self._last_progress, oldest.first_sent)
            if since > self.opt.timeout_s / 2:
                raise LinkStalledError(f"{self.name}: no frame acknowledged for {since:.2f} s although the device "
                                       f"is alive (frames to the device are lost)")

    def connect(self, now: float, timeout_s: float) -> None:
        """Host: start a new link session. Picks a new session number, forgets every frame and message of the old
        one, and sends RESET at once and again (after max(rto_initial_s, 20 ms), backing off by 1.5x up to 0.5 s)
        until RESET_ACK arrives or ``timeout_s`` has passed (:meth:`connect_failed`)."""
        if self.role != "host":
            raise RuntimeError("only the host starts link sessions")
        if self._dead is not None:
            self.raise_dead()
        old = self._session
        while self._session in (0, old):
            self._session = self._rng.randrange(1, 0x10000)
        self._connected = False
        self._session_lost = False
        self._reset_state(now)
        self.stats.resets += 1
        self._reset_due = now
        self._reset_interval = max(self.opt.rto_initial_s, _RESET_MIN_INTERVAL_S)
        self._reset_until = now + timeout_s

    @property
    def connect_deadline(self) -> float:
        """Host: when the session started by the last :meth:`connect` gives up waiting for RESET_ACK."""
        return self._reset_until

    def connect_failed(self, now: float) -> bool:
        """Host: the session started by :meth:`connect` got no RESET_ACK in time (no more RESETs are sent)."""
        return not self._connected and now >= self._reset_until

    def no_answer_reason(self, timeout_s: float) -> str:
        """Why a :meth:`connect` of ``timeout_s`` seconds got no answer, as far as this end can tell."""
        msg = f"{self.name}: no device answered the link reset within {timeout_s} s"
        if self.stats.echoed:
            msg += f"; {self.stats.echoed} of our own frames came back (a loopback such as loop://, no device)"
        elif self._decoder.stats.foreign_version is not None:
            msg += f"; the peer speaks framing version {self._decoder.stats.foreign_version}"
        elif self.stats.bytes_received:
            msg += f"; {self.stats.bytes_received} bytes arrived but no valid frame ({self._decoder.stats.last_error})"
        else:
            msg += "; nothing at all was received"
        return msg

    def send(self, message: bytes) -> None:
        """Queue a message for reliable delivery (it goes out at the next :meth:`poll`)."""
        if len(message) > self.opt.max_message:
            raise ValueError(f"message of {len(message)} bytes exceeds max_message {self.opt.max_message}")
        if self._dead is not None:
            self.raise_dead()
        if not self._connected:
            raise LinkError(f"{self.name}: no link session (connect first)")
        self._outbox.append(bytes(message))
        self.stats.messages_sent += 1
        self.stats.payload_bytes_sent += len(message)

    def next_message(self) -> bytes | None:
        """The next delivered message, or None."""
        return self._inbox.popleft() if self._inbox else None

    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the stream arrived (any chunking; frames may span calls)."""
        self.receive_frames(self.decode(data), len(data), now)

    def decode(self, data: bytes) -> list[Frame]:
        """The frames ``data`` completes. Touches only the frame decoder: a single reader may call it without
        serialising with the other calls, then hand the frames to :meth:`receive_frames`."""
        return self._decoder.feed(data)

    def receive_frames(self, frames: Iterable[Frame], nbytes: int, now: float) -> None:
        """``frames`` (decoded from ``nbytes`` bytes by :meth:`decode`) arrived."""
        self.stats.bytes_received += nbytes
        self.stats.bad_frames = self._decoder.stats.errors
        for f in frames:
            self._handle(f, now)

    def wrote(self, nbytes: int, nframes: int, now: float) -> None:
        """The frames of the last :meth:`poll` (``nbytes`` bytes) were written (or dropped, see
        :meth:`write_timed_out`)."""
        self._last_tx = now
        self.stats.bytes_sent += nbytes
        self.stats.frames_sent += nframes

    def write_timed_out(self, err: LinkError) -> bool:
        """The peer did not read the last frames in time. Host: the link is dead (returns True). Device: the host
        is not reading; the bytes are dropped (ARQ resends what matters): call :meth:`wrote` as if they went out."""
        self.stats.write_timeouts += 1
        if self.role == "host":
            self.fail(err)
            return True
        return False

    # ---- out: what to write, and when to come back ------------------------------------------------
    def poll(self, now: float) -> Transmit:
        """Time has come to ``now``: the frames to write now and the time of the next wake-up."""
        frames, wake = self._collect(now)
        return Transmit(frames, wake, now - self._last_tx > self.opt.idle_delimiter_s)

    def _collect(self, now: float) -> tuple[list[Frame], float]:
        frames: list[Frame] = []
        while self._ctrl:
            frames.append(self._ctrl.popleft())
        keepalive = self.keepalive
        ka = self._last_tx + keepalive
        wake = ka if ka > now else now + keepalive
        if not self._connected:
            if self._reset_due is not None:  # host, connecting: RESET until RESET_ACK (or until it gives up)
                if now >= self._reset_until:
                    self._reset_due = None
                else:
                    if now >= self._reset_due:
                        frames.append(self._frame(FrameType.RESET, payload=self._keepalive_request()))
                        self._reset_due = now + self._reset_interval
                        self._reset_interval = min(self._reset_interval * 1.5, _RESET_MAX_INTERVAL_S)
                    wake = min(wake, self._reset_due, self._reset_until)
            return frames, wake
        if self.role == "device" and (self._window or self._outbox) and now - self._last_rx > self.opt.timeout_s:
            # The host is gone: stop resending into a line nobody reads. If it comes back it resets the
            # link and repeats its request, which the device answers from its response cache.
            self._window.clear()
            self._retx.clear()
            self._outbox.clear()
            self._out_pos = 0
            self._base = self._next_seq
            self._rto_deadline = None
        # Retransmission timer: nothing revealed the fate of the newest frames (the tail). Resend the oldest
        # frames not heard of for a whole timeout; at most a quarter window, so a late ack costs little.
        if self._rto_deadline is not None and now >= self._rto_deadline:
            rto = self._rto() * self._backoff
            expired = [p for p in self._window.values() if not p.sacked and not p.queued and now - p.sent_at >= rto]
            for p in expired[: max(1, self.opt.window // 4)]:
                p.queued = True  # not a loss event for the fragment sizing: a late ack looks the same
                self._retx.append(p.seq)
            if expired:
                self.stats.timeouts += 1
                self._backoff = min(self._backoff * 1.5, 4.0)
            pending = any(not p.sacked for p in self._window.values())
            self._rto_deadline = now + min(self._rto() * self._backoff, self.opt.rto_max_s) if pending else None
        budget = _POLL_BUDGET
        data_sent = False
        while self._retx and budget:
            resend = self._window.get(self._retx.popleft())
            if resend is None or resend.sacked:
                continue
            resend.queued = False
            frames.extend(self._transmit(resend, now))
            self.stats.retransmits += 1
            data_sent = True
            budget -= 1
        # New fragments within the window.
        while self._outbox and budget and self._next_seq < self._base + self.opt.window:
            msg = self._outbox[0]
            chunk = msg[self._out_pos : self._out_pos + self._fragment]
            self._out_pos += len(chunk)
            end = self._out_pos >= len(msg)
            if end:
                self._outbox.popleft()
                self._out_pos = 0
            if not self._window:
                self._last_progress = now
            p = _Pending(self._next_seq, chunk, end)
            self._window[p.seq] = p
            self._next_seq += 1
            frames.extend(self._transmit(p, now))
            self.stats.data_frames_sent += 1
            data_sent = True
            budget -= 1
        if data_sent and self._rto_deadline is None:
            self._rto_deadline = now + min(self._rto() * self._backoff, self.opt.rto_max_s)
        if self._retx or (self._outbox and self._next_seq < self._base + self.opt.window):
            wake = now  # budget exhausted: come back at once
        if self._rto_deadline is not None:
            wake = min(wake, self._rto_deadline)
        rx = self._rx
        if rx.nack_due is not None and rx.nack_due <= now:
            frames.append(self._ack_frame(nack=True, now=now))
            self.stats.nacks_sent += 1
            rx.nack_due = rx.ack_due = None
            rx.unacked = 0
        elif rx.ack_due is not None and rx.ack_due <= now and not data_sent:
            frames.append(self._ack_frame(nack=False, now=now))
            self.stats.acks_sent += 1
            rx.ack_due = None
            rx.unacked = 0
        elif data_sent and rx.ack_due is not None and not rx.ooo:
            rx.ack_due = None  # the DATA frames carry the cumulative ack, and nothing selective is pending
            rx.unacked = 0
        for t in (rx.ack_due, rx.nack_due):
            if t is not None:
                wake = min(wake, t)
        # Keep-alive: the host always; the device only while the host is around (never fill a dead pty).
        if (not frames and now >= ka  # the wake-up time itself (now - last_tx >= keepalive can round below it)
                and (self.role == "host" or now - self._last_rx < self.opt.timeout_s)):
            frames.append(self._ack_frame(nack=False, now=now))
        return frames, wake

    # ---- frames ------------------------------------------------------------------------------------
    def _keepalive_request(self) -> bytes:
        """RESET payload: the keep-alive interval we ask of the device, a quarter of our silence limit ``timeout_s``
        (at most 1 s, in ms, rounded down); the device adopts it if it is shorter than its own."""
        return _KEEPALIVE_REQUEST.pack(min(max(int(min(self.opt.timeout_s / 4, 1.0) * 1000), 1), 0xFFFF))

    def _frame(self, ftype: FrameType, *, seq: int = 0, payload: bytes = b"", end: bool = False,
               epoch: int = 0) -> Frame:
        flags = self._tx_flag | (FLAG_END if end else 0) | ((epoch & 3) << EPOCH_SHIFT)
        ack = 0
        if self._connected and ftype in (FrameType.DATA, FrameType.PART, FrameType.ACK, FrameType.NACK):
            flags |= FLAG_ACK
            ack = self._rx.expected & 0xFFFF
        return Frame(ftype, flags, self._session, seq & 0xFFFF, ack, payload)

    def _ack_frame(self, nack: bool, now: float) -> Frame:
        rx = self._rx
        nbits = self.opt.window
        bitmap = bytearray((nbits + 7) // 8)
        for s in rx.ooo:
            i = s - rx.expected - 1
            if 0 <= i < nbits:
                bitmap[i >> 3] |= 1 << (i & 7)
        if rx.last is None:
            head = _ACK_HEAD.pack(0, 0, 0)
        else:
            hold = min(max(int((now - rx.last[2]) / _HOLD_UNIT_S), 0), 0xFFFF)
            head = _ACK_HEAD.pack(rx.last[0], rx.last[1] | 0x80, hold)
        return self._frame(FrameType.NACK if nack else FrameType.ACK, payload=head + bytes(bitmap))

    def _transmit(self, p: _Pending, now: float) -> list[Frame]:
        """Frames for one transmission of ``p``: a DATA frame, or, if the line got worse since ``p`` was
        cut, PART pieces of the current fragment size (the receiver collects pieces across resends)."""
        epoch = len(p.txs) & 3
        self._tx_counter += 1
        p.txs.append((self._tx_counter, now))
        step = self._fragment
        if len(p.payload) <= step or len(p.txs) == 1:
            return [self._frame(FrameType.DATA, seq=p.seq, payload=p.payload, end=p.end, epoch=epoch)]
        step -= _PART_HEAD.size
        total = len(p.payload)
        return [
            self._frame(FrameType.PART, seq=p.seq, end=p.end, epoch=epoch,
                        payload=_PART_HEAD.pack(off, total) + p.payload[off : off + step])
            for off in range(0, total, step)
        ]

    # ---- in: frames from the peer -----------------------------------------------------------------
    def _handle(self, f: Frame, now: float) -> None:
        if (f.flags & FLAG_FROM_DEVICE) == self._tx_flag:
            self.stats.echoed += 1
            return
        self.stats.frames_received += 1
        t = f.type
        if self.role == "device":
            if t == FrameType.RESET:
                self._last_rx = now
                if len(f.payload) >= _KEEPALIVE_REQUEST.size:
                    (ms,) = _KEEPALIVE_REQUEST.unpack_from(f.payload)
                    self._peer_keepalive = ms / 1000 if ms else None
                else:
                    self._peer_keepalive = None
                if f.session != self._session or not self._connected:
                    self._session = f.session
                    self._connected = True
                    self._reset_state(now)
                    self.stats.resets += 1
                self._ctrl.append(self._frame(FrameType.RESET_ACK))
                return
            if t in (FrameType.RESET_ACK, FrameType.RESET_REQUEST):
                return
            if f.session != self._session or not self._connected:
                self.stats.foreign_session += 1
                if now - self._last_reset_request > _RESET_REQUEST_INTERVAL_S:
                    self._last_reset_request = now
                    self._ctrl.append(Frame(FrameType.RESET_REQUEST, self._tx_flag, f.session))
                return
        else:
            if f.session != self._session:
                self.stats.foreign_session += 1
                return
            if t == FrameType.RESET_ACK:
                if not self._connected:
                    self._last_progress = now
                self._connected = True
                self._reset_due = None
                self._last_rx = now
                return
            if t == FrameType.RESET_REQUEST:
                if self._connected:
                    self._session_lost = True
                return
            if t == FrameType.RESET or not self._connected:
                return
        self._last_rx = now
        if t in (FrameType.DATA, FrameType.PART):
            self._rx.last = (f.seq, (f.flags & EPOCH_MASK) >> EPOCH_SHIFT, now)
        if f.flags & FLAG_ACK:
            self._on_ack(f, now)
        if t == FrameType.DATA:
            self._on_data(f.seq, f.payload, bool(f.flags & FLAG_END), now)
        elif t == FrameType.PART:
            self._on_part(f, now)

    # ---- sender side of acks ----------------------------------------------------------------------
    def _on_ack(self, f: Frame, now: float) -> None:
        cum = _unwrap(f.ack, self._base)
        if not self._base <= cum <= self._next_seq:
            return
        selective = f.type in (FrameType.ACK, FrameType.NACK) and len(f.payload) >= _ACK_HEAD.size
        if f.type == FrameType.NACK:
            self.stats.nacks_received += 1
        # The transmission the peer saw last: everything we sent before it has arrived or is lost.
        horizon: int | None = None
        bitmap = b""
        if selective:
            s16, e, hold = _ACK_HEAD.unpack_from(f.payload)
            bitmap = f.payload[_ACK_HEAD.size :]
            if e & 0x80:
                s = _unwrap(s16, self._base)
                p = self._window.get(s) or self._recent.get(s)
                tx = p.tx_of(e & 3) if p is not None else None
                if tx is not None:
                    horizon = tx[0]
                    rtt = now - tx[1] - hold * _HOLD_UNIT_S  # the receiver's holding time does not count
                    if hold < 0xFFFF and rtt >= 0:
                        self._rtt_sample(rtt)
        progressed = False
        for s in range(self._base, cum):
            p = self._window.pop(s, None)
            if p is None:
                continue
            progressed = True
            self._recent[s] = p
            if not p.sacked:
                self._loss_event(False)  # one of its transmissions arrived
        while len(self._recent) > 2 * self.opt.window:
            self._recent.popitem(last=False)
        self._base = cum
        for i in range(len(bitmap) * 8):
            if bitmap[i >> 3] >> (i & 7) & 1:
                p = self._window.get(cum + 1 + i)
                if p is not None and not p.sacked:
                    p.sacked = True
                    progressed = True
                    self._loss_event(False)
        if horizon is not None:
            for p in self._window.values():
                if not p.sacked and not p.queued and p.txs[-1][0] < horizon:
                    p.queued = True
                    self._retx.append(p.seq)
                    self.stats.losses_detected += 1
                    self._loss_event(True)
        if progressed:
            self._last_progress = now
            self._backoff = 1.0
            self._rto_deadline = now + self._rto() if any(not p.sacked for p in self._window.values()) else None
        elif not self._window:
            self._last_progress = now
            self._rto_deadline = None

    # ---- receiver ----------------------------------------------------------------------------------
    def _on_part(self, f: Frame, now: float) -> None:
        rx = self._rx
        seq = _unwrap(f.seq, rx.expected)
        if seq < rx.expected or seq in rx.ooo or seq >= rx.expected + self.opt.window:
            self._on_data(f.seq, b"", bool(f.flags & FLAG_END), now)  # duplicate / out-of-window handling
            return
        if len(f.payload) < _PART_HEAD.size:
            return
        off, total = _PART_HEAD.unpack_from(f.payload)
        piece = f.payload[_PART_HEAD.size :]
        part = rx.parts.get(seq)
        if part is None or len(part.buf) != total:
            if total > MAX_PAYLOAD:
                return
            part = rx.parts[seq] = _Parts(bytearray(total), bytearray(total), total, bool(f.flags & FLAG_END))
        if not piece or off + len(piece) > total:
            return
        part.missing -= part.mask[off : off + len(piece)].count(0)
        part.buf[off : off + len(piece)] = piece
        part.mask[off : off + len(piece)] = b"\x01" * len(piece)
        if part.missing == 0:
            del rx.parts[seq]
            self._on_data(f.seq, bytes(part.buf), part.end, now)

    def _on_data(self, seq16: int, payload: bytes, end: bool, now: float) -> None:
        rx = self._rx
        seq = _unwrap(seq16, rx.expected)
        if seq < rx.expected or seq in rx.ooo:
            self.stats.duplicates += 1
            rx.ack_due = now  # the sender missed our ack (or resent early): tell it now
            return
        if seq >= rx.expected + self.opt.window:
            self.stats.out_of_window += 1
            return
        rx.parts.pop(seq, None)
        if seq > rx.expected:
            rx.ooo[seq] = (payload, end)
            rx.nack_due = now  # a gap: tell the sender which transmission we saw last
            return
        self._deliver(payload, end, now)
        while rx.expected in rx.ooo:
            self._deliver(*rx.ooo.pop(rx.expected), now)
        rx.unacked += 1
        threshold = max(1, self.opt.window // 4)
        if rx.ooo:
            rx.nack_due = now
        elif rx.unacked >= threshold:
            rx.ack_due = now
        else:
            # Hold the ack briefly: more frames, or the answer to this message, may carry it for free.
            rx.ack_due = min(rx.ack_due or math.inf, now + self.opt.ack_delay_s)

    def _deliver(self, payload: bytes, end: bool, now: float) -> None:
        rx = self._rx
        rx.expected += 1
        rx.partial.append(payload)
        rx.partial_len += len(payload)
        if rx.partial_len > self.opt.max_message:
            err = f"{self.name}: peer sent a message larger than max_message {self.opt.max_message} bytes"
            if self.role == "host":
                self.fail(LinkError(err))
            else:
                # Forget the session: the host gets RESET_REQUEST and must start over.
                self._connected = False
                self._reset_state(now)
            return
        if end:
            msg = b"".join(rx.partial)
            rx.partial.clear()
            rx.partial_len = 0
            self._inbox.append(msg)
            self.stats.messages_received += 1
            self.stats.payload_bytes_received += len(msg)
