"""The ARQ link's state machine (:class:`firstspike.drivers.arq.LinkMachine`) under a fake clock: no threads, no wall
clock, every run deterministic. A simulated serial line carries the bytes (FIFO, latency, optional bandwidth) and
damages them on request: loss, duplication, reordering, corruption, truncation, noise, or a rule per frame."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstspike.drivers.arq import (
    MIN_DEVICE_KEEPALIVE_S,
    LinkMachine,
    LinkOptions,
    LinkSessionLostError,
    LinkStalledError,
)
from firstspike.drivers.faults import CLEAN, FaultInjector, FaultSpec
from firstspike.drivers.framing import FLAG_ACK, FLAG_FROM_DEVICE, Frame, FrameError, FrameType, decode_frame
from firstspike.hal.errors import LinkError


def _payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# Binary fractions of a second, so that the fake clock's sums are exact and schedules can be compared with ==.
OPTS = LinkOptions(rto_initial_s=0.125, rto_min_s=1 / 64, rto_max_s=1.0, ack_delay_s=1 / 512, timeout_s=2.0,
                   keepalive_s=0.25)
LATENCY = 1 / 1024
MIN_WAIT = 1 / 2048  # the writer's shortest sleep when a wake-up time is already past (as Link's)


@dataclass
class Sent:
    """A frame one end wrote: when, and what (None: bytes that are not a frame)."""

    time: float
    frame: Frame | None


def _frames_of(data: bytes) -> list[bytes]:
    """``data`` cut after each 0x00 delimiter (a frame keeps its delimiters; a bare 0x00 is its own piece)."""
    out, start = [], 0
    for i, b in enumerate(data):
        if b == 0:
            out.append(data[start : i + 1])
            start = i + 1
    if start < len(data):
        out.append(data[start:])
    return out


def _decode(piece: bytes) -> Frame | None:
    body = piece.strip(b"\x00")
    if not body:
        return None
    try:
        return decode_frame(body)
    except FrameError:
        return None


@dataclass
class Line:
    """One direction of the line. Written bytes are split into frames; each is kept or dropped by ``drop`` (a rule on
    the decoded frame and how many frames this line carried before it), damaged by ``faults`` (byte and frame faults of
    :class:`firstspike.drivers.faults.FaultInjector`), held back by ``reorder_delay`` with probability ``reorder``
    (later frames overtake it), and arrives ``latency`` after its last byte left (``bytes_per_s``: None = at once)."""

    latency: float = LATENCY
    bytes_per_s: float | None = None
    faults: FaultSpec = CLEAN
    reorder: float = 0.0
    reorder_delay: float = 0.01
    drop: Callable[[Frame | None, int], bool] | None = None
    seed: int = 0
    cut: bool = False  # nothing gets through
    sent: list[Sent] = field(default_factory=list)  # every frame written, before any damage
    reordered: int = 0
    dropped_by_rule: int = 0

    def __post_init__(self) -> None:
        self.injector = FaultInjector(self.faults, seed=self.seed)
        self._rng = random.Random(self.seed)
        self._free = 0.0

    def write(self, data: bytes, now: float) -> list[tuple[float, bytes]]:
        """(arrival time, bytes) of what reaches the other end."""
        out = []
        for piece in _frames_of(data):
            frame = _decode(piece)
            k = sum(1 for s in self.sent if s.frame is not None)
            self.sent.append(Sent(now, frame))
            start = max(now, self._free)
            self._free = start + (len(piece) / self.bytes_per_s if self.bytes_per_s else 0.0)
            if self.cut:
                continue
            if self.drop is not None and frame is not None and self.drop(frame, k):
                self.dropped_by_rule += 1
                continue
            damaged = self.injector.process(piece) if self.faults != CLEAN else piece
            if not damaged:
                continue
            at = self._free + self.latency
            if self.reorder and self._rng.random() < self.reorder:
                at += self.reorder_delay
                self.reordered += 1
            out.append((at, damaged))
        return out

    def data_frames(self) -> list[Sent]:
        return [s for s in self.sent if s.frame is not None and s.frame.type in (FrameType.DATA, FrameType.PART)]


class Sim:
    """A host and a device machine joined by two :class:`Line` s, driven by a fake clock like :class:`Link`'s
    threads drive them: a machine is polled when an event reached it or its wake-up time came; whatever it hands
    out is written at once and it is polled again; with nothing to write it sleeps until its wake-up time (at
    least ``MIN_WAIT``). ``echo``: the device answers every message with its reverse."""

    def __init__(self, opts: LinkOptions = OPTS, *, to_dev: Line | None = None, to_host: Line | None = None,
                 echo: bool = False, dev_opts: LinkOptions | None = None, seed: int = 0) -> None:
        self.now = 0.0
        self.host = LinkMachine("host", opts, now=0.0, seed=seed, name="host")
        self.dev = LinkMachine("device", dev_opts or opts, now=0.0, name="dev")
        self.to_dev = to_dev or Line()
        self.to_host = to_host or Line()
        self.echo = echo
        self.got: list[bytes] = []  # messages the host received
        self.dev_got: list[bytes] = []
        self._q: list[tuple[float, int, str, bytes]] = []  # (arrival, order, receiver, bytes)
        self._n = 0
        self._wake = {"host": 0.0, "dev": 0.0}
        self.host_alive = True  # False: the host stops polling and reading (its program is gone)

    def machine(self, who: str) -> LinkMachine:
        return self.host if who == "host" else self.dev

    def restart_device(self) -> None:
        self.dev = LinkMachine("device", self.dev.opt, now=self.now, name="dev")
        self._wake["dev"] = self.now

    def _poll(self, who: str) -> None:
        m = self.machine(who)
        line = self.to_dev if who == "host" else self.to_host
        other = "dev" if who == "host" else "host"
        while True:
            out = m.poll(self.now)
            if not out.frames:
                self._wake[who] = max(out.wake, self.now + MIN_WAIT)
                return
            data = out.encode()
            for at, chunk in line.write(data, self.now):
                heapq.heappush(self._q, (at, self._n, other, chunk))
                self._n += 1
            m.wrote(len(data), len(out.frames), self.now)

    def _apps(self) -> None:
        while (msg := self.dev.next_message()) is not None:
            self.dev_got.append(msg)
            if self.echo and self.dev.connected:
                self.dev.send(msg[::-1])
                self._wake["dev"] = self.now
        while (msg := self.host.next_message()) is not None:
            self.got.append(msg)

    def run(self, until: float, stop: Callable[[], bool] = lambda: False) -> bool:
        """Advance to ``until`` (seconds of fake time) or until ``stop()``; returns whether it stopped."""
        while True:
            while self._q and self._q[0][0] <= self.now:
                _, _, who, chunk = heapq.heappop(self._q)
                if who == "host" and not self.host_alive:
                    continue
                self.machine(who).receive(chunk, self.now)
                self._wake[who] = self.now
            self._apps()
            for who in ("host", "dev"):
                if (who == "dev" or self.host_alive) and self._wake[who] <= self.now:
                    self._poll(who)
            self._apps()
            if stop():
                return True
            nxt = min([self._wake["dev"]] + ([self._wake["host"]] if self.host_alive else [])
                      + ([self._q[0][0]] if self._q else []))
            if nxt > until:
                self.now = until
                return False
            self.now = max(nxt, self.now)

    def connect(self, timeout_s: float = 2.0) -> None:
        self.host.connect(self.now, timeout_s)
        self._wake["host"] = self.now
        assert self.run(self.now + timeout_s, lambda: self.host.connected), self.host.no_answer_reason(timeout_s)

    def host_send(self, msg: bytes) -> None:
        self.host.send(msg)
        self._wake["host"] = self.now

    def dev_send(self, msg: bytes) -> None:
        self.dev.send(msg)
        self._wake["dev"] = self.now


def _types(sent: list[Sent], t: FrameType) -> list[Sent]:
    return [s for s in sent if s.frame is not None and s.frame.type == t]


def _error(m: LinkMachine, now: float) -> LinkError | None:
    """What :meth:`LinkMachine.check` raises now, if anything."""
    try:
        m.check(now)
    except LinkError as e:
        return e
    return None


# ---- sessions --------------------------------------------------------------------------------------------------


def test_reset_is_repeated_with_backoff_until_answered() -> None:
    """RESET at once, then after rto_initial_s, backing off by 1.5x (capped at 0.5 s), until RESET_ACK."""
    sim = Sim(to_dev=Line(drop=lambda f, k: k < 4))  # the device misses the first four RESETs
    sim.connect()
    resets = [s.time for s in _types(sim.to_dev.sent, FrameType.RESET)]
    assert resets == [0.0, 0.125, 0.3125, 0.59375, 1.015625]  # intervals 0.125, 0.1875, 0.28125, 0.421875
    assert sim.host.session == sim.dev.session != 0
    assert sim.now == 1.015625 + 2 * LATENCY  # connected when the answer to the fifth arrived


def test_connect_to_silence_gives_up_at_its_deadline_and_says_why() -> None:
    sim = Sim(to_dev=Line(cut=True))
    sim.host.connect(0.0, 0.5)
    assert sim.run(5.0, lambda: sim.host.connect_failed(sim.now)) and sim.now == 0.5
    assert not sim.host.connected
    sim.run(3.0)
    resets = [s.time for s in _types(sim.to_dev.sent, FrameType.RESET)]
    assert resets == [0.0, 0.125, 0.3125]  # none at or after the deadline
    assert "nothing at all was received" in sim.host.no_answer_reason(0.5)


def test_a_loopback_is_recognised() -> None:
    host = LinkMachine("host", OPTS, now=0.0)
    host.connect(0.0, 0.5)
    out = host.poll(0.0)
    host.receive(out.encode(), 0.001)  # our own RESET comes back
    assert not host.connected and host.stats.echoed == 1
    assert "loopback" in host.no_answer_reason(0.5)


def test_device_restart_is_reported_as_session_lost_and_a_new_session_works() -> None:
    sim = Sim()
    sim.connect()
    sim.host_send(b"one")
    sim.run(1.0, lambda: sim.dev_got == [b"one"])
    sim.restart_device()
    sim.host_send(b"two")
    sim.run(2.0, lambda: _error(sim.host, sim.now) is not None)
    with pytest.raises(LinkSessionLostError):
        sim.host.check(sim.now)
    assert sim.dev.stats.foreign_session >= 1
    sim.connect()
    sim.host.check(sim.now)
    sim.host_send(b"three")
    assert sim.run(sim.now + 1.0, lambda: sim.dev_got == [b"one", b"three"])


def test_frames_of_other_sessions_and_our_own_direction_are_ignored() -> None:
    sim = Sim()
    sim.connect()
    s = sim.host.session
    stale = Frame(FrameType.DATA, 0x01 | FLAG_FROM_DEVICE | FLAG_ACK, (s + 1) & 0xFFFF or 1, 0, 0, b"stale")
    echo = Frame(FrameType.DATA, 0x01 | FLAG_ACK, s, 0, 0, b"echo")
    sim.host.receive_frames([stale, echo], 0, sim.now)
    sim.dev_send(b"real")
    sim.run(sim.now + 1.0, lambda: bool(sim.got))
    assert sim.got == [b"real"]
    assert sim.host.stats.foreign_session == 1 and sim.host.stats.echoed == 1


# ---- delivery, acks and resends ---------------------------------------------------------------------------------


def test_messages_of_all_sizes_arrive_in_order_and_the_window_saves_acks() -> None:
    """Frames that arrive together are acked together (at most one ACK per quarter window). (At 300 KB/s frames
    arrive one by one and the 2 ms ack delay covers about two of them.)"""
    sim = Sim()
    sim.connect()
    msgs = [_payload(n, n) for n in (0, 1, 239, 240, 241, 5000, 100_000)]
    for m in msgs:
        sim.host_send(m)
    assert sim.run(10.0, lambda: len(sim.dev_got) == len(msgs))
    sim.run(sim.now + 1.0)
    assert sim.dev_got == msgs
    assert sim.dev.stats.acks_sent < sim.host.stats.data_frames_sent / 4
    assert sim.host.stats.retransmits == 0 and sim.host.idle


def test_an_in_order_frame_is_acked_after_the_ack_delay_or_by_the_answer() -> None:
    sim = Sim()
    sim.connect()
    sim.host_send(b"ping")
    t0 = sim.now
    sim.run(t0 + 0.1)
    acks = _types(sim.to_host.sent, FrameType.ACK)
    arrived = t0 + LATENCY
    assert [a.time for a in acks if a.time > t0][:1] == [arrived + OPTS.ack_delay_s]
    # answered at once: the answer's DATA frame carries the ack, no ACK frame
    sim2 = Sim(echo=True)
    sim2.connect()
    before = sim2.dev.stats.acks_sent
    sim2.host_send(b"ping")
    sim2.run(sim2.now + 0.1, lambda: bool(sim2.got))
    assert sim2.got == [b"gnip"] and sim2.dev.stats.acks_sent == before


def test_a_lost_frame_is_resent_as_soon_as_a_later_one_reveals_it() -> None:
    """Exact loss detection: the receiver NACKs at the gap naming the last transmission it saw, and the sender
    resends the lost frame at once, without waiting for its retransmission timer."""
    first_data = {}

    def lose_first_tx_of_seq_2(f: Frame, k: int) -> bool:
        if f.type == FrameType.DATA and f.seq == 2 and 2 not in first_data:
            first_data[2] = k
            return True
        return False

    sim = Sim(to_dev=Line(drop=lose_first_tx_of_seq_2))
    sim.connect()
    msg = _payload(5 * OPTS.fragment)
    t0 = sim.now
    sim.host_send(msg)
    assert sim.run(t0 + 1.0, lambda: bool(sim.dev_got))
    assert sim.dev_got == [msg]
    st_ = sim.host.stats
    assert (st_.losses_detected, st_.timeouts, st_.retransmits) == (1, 0, 1)
    resend = [s for s in sim.to_dev.data_frames() if s.frame is not None and s.frame.seq == 2][1]
    nack = _types(sim.to_host.sent, FrameType.NACK)[0]
    assert nack.time == t0 + LATENCY  # the gap is answered at once ...
    assert resend.time == nack.time + LATENCY  # ... and the frame resent when the NACK arrives
    assert sim.now < t0 + OPTS.rto_initial_s


def test_a_lost_tail_is_resent_when_the_retransmission_timer_expires() -> None:
    sim = Sim(to_dev=Line(drop=lambda f, k: f.type == FrameType.DATA and f.seq == 0 and f.flags & 0x0C == 0))
    sim.connect()
    t0 = sim.now
    sim.host_send(b"tail")
    assert sim.run(t0 + 1.0, lambda: bool(sim.dev_got))
    tx = [s.time for s in sim.to_dev.data_frames()]
    assert tx == [t0, t0 + OPTS.rto_initial_s]  # no round-trip sample yet: the initial timeout
    assert (sim.host.stats.timeouts, sim.host.stats.losses_detected) == (1, 0)


def test_the_retransmission_timer_backs_off_while_nothing_progresses() -> None:
    sim = Sim(to_dev=Line(drop=lambda f, k: f.type == FrameType.DATA), to_host=Line())
    sim.connect()
    t0 = sim.now
    sim.host_send(b"x")
    sim.run(t0 + 2.9)
    tx = [s.time - t0 for s in sim.to_dev.data_frames()]
    # timeout 0.125 s, backed off by 1.5x per expiry up to 4x (0.5 s)
    assert tx == [0.0, 0.125, 0.3125, 0.59375, 1.015625, 1.515625, 2.015625, 2.515625]
    assert sim.host.stats.timeouts == 7


def test_a_duplicate_is_dropped_and_acked_at_once() -> None:
    sim = Sim(to_dev=Line(faults=FaultSpec(frame_dup=1.0)))
    sim.connect()
    t0 = sim.now
    sim.host_send(b"twice")
    sim.run(t0 + 0.1)
    assert sim.dev_got == [b"twice"]
    assert sim.dev.stats.duplicates >= 1
    acks = [a.time for a in _types(sim.to_host.sent, FrameType.ACK) if a.time > t0]
    assert acks[0] == t0 + LATENCY  # not after the ack delay: the sender must learn at once


def test_the_round_trip_estimate_excludes_the_receivers_holding_time() -> None:
    latency = 1 / 128
    sim = Sim(to_dev=Line(latency=latency), to_host=Line(latency=latency))
    sim.connect()
    sim.host_send(b"rtt")
    sim.run(sim.now + 1.0)
    # the ACK left ack_delay_s after the frame arrived; the estimate is the two line latencies (10 us units)
    assert abs(sim.host.stats.srtt_ms / 1e3 - 2 * latency) <= 1e-5


def test_the_fragment_shrinks_on_a_noisy_line_and_old_frames_are_resent_in_parts() -> None:
    sim = Sim(to_dev=Line(faults=FaultSpec(ber=1e-3), seed=4), to_host=Line(faults=FaultSpec(ber=1e-3), seed=5),
              seed=1)
    sim.connect(5.0)
    msg = _payload(60_000)
    sim.host_send(msg)
    assert sim.run(sim.now + 60.0, lambda: bool(sim.dev_got))
    assert sim.dev_got == [msg]
    assert sim.host.stats.fragment < OPTS.fragment
    assert _types(sim.to_dev.sent, FrameType.PART)  # frames cut at the old size went out in pieces
    clean = Sim()
    clean.connect()
    clean.host_send(msg)
    assert clean.run(clean.now + 10.0, lambda: bool(clean.dev_got))
    assert clean.host.stats.fragment == OPTS.fragment and not _types(clean.to_dev.sent, FrameType.PART)


FAULTS = {
    "loss": dict(faults=FaultSpec(frame_loss=0.1)),
    "duplication": dict(faults=FaultSpec(frame_dup=0.2)),
    "reordering": dict(reorder=0.1, reorder_delay=0.004),
    "corruption": dict(faults=FaultSpec(ber=5e-4)),
    "truncation": dict(faults=FaultSpec(truncate=0.05)),
    "bytes": dict(faults=FaultSpec(byte_drop=2e-4, byte_dup=2e-4, noise=0.05, noise_max=40)),
    "everything": dict(faults=FaultSpec(ber=2e-4, frame_loss=0.03, frame_dup=0.03, truncate=0.01, noise=0.02),
                       reorder=0.03),
}


def _exchange(kind: str, seed: int, n: int = 30) -> Sim:
    spec = FAULTS[kind]
    sim = Sim(to_dev=Line(bytes_per_s=300_000, seed=2 * seed, **spec),
              to_host=Line(bytes_per_s=300_000, seed=2 * seed + 1, **spec), echo=True, seed=seed)
    sim.connect(10.0)
    rng = random.Random(seed)
    msgs = [rng.randbytes(rng.choice([1, 50, 400, 3000])) for _ in range(n)]
    for m in msgs[: n // 2]:  # a burst: many frames in flight at once
        sim.host_send(m)
    assert sim.run(sim.now + 60.0, lambda: len(sim.got) == n // 2), (kind, seed, len(sim.got))
    for m in msgs[n // 2 :]:  # request / response
        sim.host_send(m)
        k = len(sim.got)
        assert sim.run(sim.now + 30.0, lambda k=k: len(sim.got) == k + 1), (kind, seed)
    sim.run(sim.now + 1.0)  # nothing more arrives: every message exactly once
    assert sim.got == [m[::-1] for m in msgs]
    assert sim.dev_got == msgs
    return sim


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_exactly_once_in_order_under_faults(kind: str) -> None:
    sim = _exchange(kind, seed=7)
    damaged = sum(v for k, v in vars(sim.to_dev.injector.counts).items() if k != "frames") + sim.to_dev.reordered
    assert damaged > 0  # the faults really happened
    if kind == "duplication":
        assert sim.host.stats.duplicates + sim.dev.stats.duplicates > 0
    elif kind != "reordering":  # reordering and duplication lose nothing
        assert sim.host.stats.retransmits + sim.dev.stats.retransmits > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(FAULTS)), seed=st.integers(0, 2**16))
def test_exactly_once_in_order_for_any_seed(kind: str, seed: int) -> None:
    _exchange(kind, seed, n=10)


# ---- keep-alives and dead peers ----------------------------------------------------------------------------------


def test_idle_ends_send_keepalives_and_poll_says_when() -> None:
    sim = Sim()
    sim.connect()
    t0 = sim.now
    sim.run(t0 + 1.2)
    host_ka = [s.time for s in _types(sim.to_dev.sent, FrameType.ACK)]
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(host_ka)}
    assert gaps == {OPTS.keepalive} and len(host_ka) >= 4
    last = host_ka[-1]
    assert sim.host.poll(sim.now).wake == last + OPTS.keepalive  # nothing to send: wake for the next one
    assert sim.host.poll(sim.now).frames == []


def test_host_reports_a_silent_device_after_the_timeout() -> None:
    sim = Sim()
    sim.connect()
    sim.to_host.cut = True
    t_last = max(s.time for s in sim.to_host.sent) + LATENCY  # the device's last frame arrived then
    sim.run(t_last + OPTS.timeout_s)
    sim.host.check(sim.now)  # exactly the timeout: not yet
    sim.run(t_last + OPTS.timeout_s + 0.01)
    with pytest.raises(LinkError, match="nothing received from the device"):
        sim.host.check(sim.now)


def test_host_reports_stalled_frames_when_the_device_is_alive() -> None:
    sim = Sim(to_dev=Line(drop=lambda f, k: f.type == FrameType.DATA))
    sim.connect()
    t0 = sim.now
    sim.host_send(b"lost")
    sim.run(t0 + OPTS.timeout_s / 2)
    sim.host.check(sim.now)
    sim.run(t0 + OPTS.timeout_s / 2 + 0.05)
    with pytest.raises(LinkStalledError, match="no frame acknowledged"):
        sim.host.check(sim.now)


def test_device_gives_up_its_frames_and_keepalives_when_the_host_is_gone() -> None:
    sim = Sim(to_dev=Line())
    sim.connect()
    sim.host_alive = False  # the host program is gone: it reads and writes nothing any more
    t_host = max(s.time for s in sim.to_dev.sent) + LATENCY  # the host's last frame reached the device
    sim.dev_send(_payload(2000))
    sim.run(t_host + 3 * OPTS.timeout_s)
    assert sim.dev.idle  # the unacknowledged frames were given up
    after = [s for s in sim.to_host.sent if s.time > t_host + OPTS.timeout_s + 1e-9]
    assert after == []  # nothing at all written into a line nobody reads
    assert sim.dev.stats.retransmits > 0  # it did resend while the host could still have been there


def test_a_message_too_large_kills_the_host_and_resets_the_device() -> None:
    small = LinkOptions(rto_initial_s=0.125, rto_min_s=1 / 64, ack_delay_s=1 / 512, timeout_s=2.0, max_message=100)
    sim = Sim(dev_opts=small)
    sim.connect()
    sim.host_send(b"x" * 300)
    sim.run(sim.now + 1.0, lambda: _error(sim.host, sim.now) is not None)
    assert not sim.dev.connected and sim.dev_got == []
    with pytest.raises(LinkSessionLostError):
        sim.host.check(sim.now)
    sim2 = Sim(small, dev_opts=OPTS)
    sim2.connect()
    sim2.dev_send(b"y" * 300)
    sim2.run(sim2.now + 1.0, lambda: sim2.host.dead)
    with pytest.raises(LinkError, match="larger than max_message"):
        sim2.host.check(sim2.now)


def test_send_without_a_session_and_oversized_messages_are_refused() -> None:
    host = LinkMachine("host", LinkOptions(max_message=10), now=0.0)
    with pytest.raises(LinkError, match="connect first"):
        host.send(b"x")
    with pytest.raises(ValueError, match="max_message"):
        host.send(b"x" * 11)
    with pytest.raises(RuntimeError, match="only the host"):
        LinkMachine("device", OPTS, now=0.0).connect(0.0, 1.0)
    with pytest.raises(ValueError, match="role"):
        LinkMachine("board", OPTS, now=0.0)  # type: ignore[arg-type]
    host.fail(LinkError("gone"))
    with pytest.raises(LinkError, match="gone"):
        host.check(0.0)


# ---- robustness: anything may arrive ----------------------------------------------------------------------------

frames = st.builds(
    Frame,
    type=st.sampled_from(list(FrameType)),
    flags=st.sampled_from([0, FLAG_ACK, FLAG_ACK | 0x01, FLAG_ACK | FLAG_FROM_DEVICE, FLAG_FROM_DEVICE | 0x0D]),
    session=st.integers(0, 3),
    seq=st.integers(0, 0xFFFF) | st.integers(0, 70),
    ack=st.integers(0, 0xFFFF) | st.integers(0, 70),
    payload=st.binary(max_size=40),
)


@settings(max_examples=150, deadline=None)
@given(incoming=st.lists(frames, max_size=30), garbage=st.binary(max_size=200))
def test_arbitrary_frames_and_bytes_never_break_a_connected_link(incoming: list[Frame], garbage: bytes) -> None:
    """Forged or stale frames of any type, session, sequence number, ack and payload (truncated ack and PART heads
    included) and random bytes are handled without an exception; the machines keep running."""
    sim = Sim(seed=3)
    sim.connect()
    sid = sim.host.session
    for f in incoming:
        g = Frame(f.type, f.flags, sid if f.session == 1 else f.session, f.seq, f.ack, f.payload)
        for m in (sim.host, sim.dev):
            m.receive_frames([g], 0, sim.now)
            m.poll(sim.now)
    for m in (sim.host, sim.dev):
        m.receive(garbage, sim.now)
    sim.run(sim.now + 0.5)


def test_device_keepalive_follows_the_host_timeout() -> None:
    """A host whose timeout is shorter than the device's keep-alive interval: its RESET asks the device for keep-alives
    every timeout / 4, so a device busy with a long run (sending nothing else) never looks dead to it."""
    host_opts = LinkOptions(rto_initial_s=0.125, rto_min_s=1 / 64, ack_delay_s=1 / 512, timeout_s=0.4)
    dev_opts = LinkOptions(rto_initial_s=0.125, rto_min_s=1 / 64, ack_delay_s=1 / 512, timeout_s=5.0)
    assert dev_opts.keepalive == 1.0 > host_opts.timeout_s  # on its own, the device would be silent for 1 s
    sim = Sim(host_opts, dev_opts=dev_opts)
    sim.connect()
    assert sim.dev.keepalive == 0.1  # 0.4 s / 4
    t0 = sim.now
    while sim.now < t0 + 4.0:  # a 4 s run: the device sends nothing but keep-alives
        sim.run(sim.now + 0.01)
        sim.host.check(sim.now)
    dev_ka = [s.time for s in _types(sim.to_host.sent, FrameType.ACK) if s.time > t0]
    assert len(dev_ka) >= 35
    assert max(b - a for a, b in itertools.pairwise(dev_ka)) <= 0.1 + 2 * MIN_WAIT  # the writer sleeps >= MIN_WAIT


def test_device_keeps_its_own_keepalive_without_a_request_or_for_a_slower_host() -> None:
    """An empty RESET payload (an older host) leaves the device's interval alone; a host asking for a longer interval
    than the device's own does not slow it down; a request below the floor is raised to it."""
    dev = LinkMachine("device", OPTS, now=0.0)
    old_reset = Frame(FrameType.RESET, 0, 77, 0, 0, b"")
    dev.receive_frames([old_reset], 0, 0.0)
    assert dev.connected and dev.keepalive == OPTS.keepalive
    slow = LinkMachine("host", LinkOptions(timeout_s=30.0), now=0.0)
    slow.connect(0.0, 1.0)
    (reset,) = slow.poll(0.0).frames
    assert reset.type == FrameType.RESET and reset.payload == (1000).to_bytes(2, "little")  # capped at 1 s
    dev.receive_frames([reset], 0, 0.1)
    assert dev.keepalive == OPTS.keepalive  # 0.25 s < 1 s: the device's own stays
    fast = Frame(FrameType.RESET, 0, 78, 0, 0, (1).to_bytes(2, "little"))  # 1 ms asked
    dev.receive_frames([fast], 0, 0.2)
    assert dev.keepalive == MIN_DEVICE_KEEPALIVE_S
