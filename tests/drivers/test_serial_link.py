"""The ARQ link on its own, over in-memory pipes with injected faults."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from firstspike.drivers.faults import CLEAN, DEAD, FaultSpec, FaultyStream
from firstspike.drivers.framing import FLAG_ACK, Frame, FrameType, encode_frame
from firstspike.drivers.link import Link, LinkOptions, LinkSessionLostError
from firstspike.drivers.streams import StreamClosedError, memory_pipe
from firstspike.hal.errors import LinkError

FAST = LinkOptions(rto_min_s=0.01, rto_initial_s=0.05, rto_max_s=0.2, ack_delay_s=0.002, timeout_s=2.0,
                   poll_s=0.02)


class Pair:
    """A connected host and device link; the device end sees faults."""

    def __init__(self, spec: FaultSpec = CLEAN, opts: LinkOptions = FAST, latency: float = 0.0, seed: int = 0):
        a, b = memory_pipe(latency_s=latency)
        self.faulty = FaultyStream(b, spec, spec, seed=seed)
        self.host = Link(a, "host", opts, seed=seed).start()
        self.dev = Link(self.faulty, "device", opts).start()

    def close(self) -> None:
        self.host.close()
        self.dev.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    p.host.connect(2)
    yield p
    p.close()


def _echo_device(link: Link, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            m = link.recv(0.05)
        except LinkError:
            return
        if m is not None:
            link.send(m[::-1])


def test_messages_of_all_sizes_arrive_in_order(pair: Pair) -> None:
    sizes = [0, 1, 239, 240, 241, 5000, 300_000]
    msgs = [os.urandom(n) for n in sizes]
    for m in msgs:
        pair.host.send(m)
    got = [pair.dev.recv(10) for _ in msgs]
    assert got == msgs
    assert pair.dev.recv(0.05) is None
    # The window kept many frames in flight: far fewer acks than data frames.
    assert pair.dev.stats.acks_sent < pair.host.stats.data_frames_sent / 4


FAULTS = {
    "ber1e-3": FaultSpec(ber=1e-3),
    "frame_loss": FaultSpec(frame_loss=0.05),
    "frame_dup": FaultSpec(frame_dup=0.1),
    "truncate": FaultSpec(truncate=0.05),
    "byte_drop": FaultSpec(byte_drop=2e-4),
    "byte_dup": FaultSpec(byte_dup=2e-4),
    "noise": FaultSpec(noise=0.05, noise_max=40),
    "delays": FaultSpec(delay_s=0.0005, jitter_s=0.002),
    "everything": FaultSpec(ber=2e-4, frame_loss=0.02, frame_dup=0.02, truncate=0.01, byte_drop=5e-5,
                            byte_dup=5e-5, noise=0.02, jitter_s=0.001),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_exactly_once_in_order_under_faults(name: str) -> None:
    p = Pair(FAULTS[name], seed=hash(name) & 0xFFFF)
    stop = threading.Event()
    t = threading.Thread(target=_echo_device, args=(p.dev, stop), daemon=True)
    try:
        p.host.connect(5)
        t.start()
        rng = __import__("random").Random(3)
        msgs = [os.urandom(rng.choice([1, 50, 400, 3000])) for _ in range(40)]
        for m in msgs[:20]:  # a burst: many messages in flight at once
            p.host.send(m)
        got = [p.host.recv(10) for _ in range(20)]
        for m in msgs[20:]:  # request / response
            p.host.send(m)
            got.append(p.host.recv(10))
        assert got == [m[::-1] for m in msgs]
        assert p.host.recv(0.1) is None  # nothing duplicated
        counts = p.faulty.tx.counts
        if name != "delays":
            c = counts.__dict__
            assert sum(v for k, v in c.items() if k != "frames") > 0  # faults really happened
    finally:
        stop.set()
        t.join(2)
        p.close()


def test_adaptive_fragment_follows_the_error_rate() -> None:
    p = Pair(FaultSpec(ber=1e-3))
    try:
        p.host.connect(5)
        p.host.send(os.urandom(60_000))
        assert len(p.dev.recv(30)) == 60_000
        assert p.host.stats.fragment < FAST.fragment  # shrank on a noisy line
    finally:
        p.close()
    q = Pair()
    try:
        q.host.connect(5)
        q.host.send(os.urandom(60_000))
        assert len(q.dev.recv(30)) == 60_000
        assert q.host.stats.fragment == FAST.fragment
    finally:
        q.close()


def test_dead_line_raises_link_error_within_timeout() -> None:
    opts = LinkOptions(rto_min_s=0.01, rto_initial_s=0.02, timeout_s=0.5, poll_s=0.02)
    p = Pair(opts=opts)
    try:
        p.host.connect(2)
        p.faulty.set_faults(DEAD, DEAD)
        p.host.send(b"hello")
        t0 = time.monotonic()
        with pytest.raises(LinkError, match=r"nothing received|no frame acknowledged"):
            while p.host.recv(0.1) is None:
                pass
        assert time.monotonic() - t0 < 5 * opts.timeout_s  # an error, not a hang
    finally:
        p.close()


def test_connect_to_nothing_and_to_a_closed_stream() -> None:
    a, b = memory_pipe()
    host = Link(a, "host", FAST).start()
    with pytest.raises(LinkError, match="nothing at all was received"):
        host.connect(0.3)
    b.close()
    with pytest.raises(LinkError):
        host.connect(1.0)
    assert host.dead
    host.close()


def test_peer_closing_the_stream_is_reported(pair: Pair) -> None:
    pair.dev.close()  # closes the device end of the pipe
    with pytest.raises(StreamClosedError):
        for _ in range(100):
            pair.host.recv(0.05)


class _Loopback:
    """A stream that returns what is written to it (like pyserial's loop://)."""

    name = "loopback"

    def __init__(self) -> None:
        self._a, self._b = memory_pipe()

    def read(self, n: int, t: float) -> bytes:
        data = self._b.read(n, t)
        return data

    def write(self, data: bytes, t: float) -> None:
        self._a.write(data, t)

    def close(self) -> None:
        self._a.close()
        self._b.close()


def test_loopback_is_recognised() -> None:
    host = Link(_Loopback(), "host", FAST).start()
    with pytest.raises(LinkError, match="loopback"):
        host.connect(0.3)
    host.close()


def test_device_restart_is_reported_as_session_lost() -> None:
    a, b = memory_pipe()

    class NoClose:
        name = "keep"

        def read(self, n: int, t: float) -> bytes:
            return b.read(n, t)

        def write(self, d: bytes, t: float) -> None:
            b.write(d, t)

        def close(self) -> None:
            pass

    host = Link(a, "host", FAST).start()
    dev = Link(NoClose(), "device", FAST).start()
    try:
        host.connect(2)
        host.send(b"one")
        assert dev.recv(2) == b"one"
        dev.close()
        dev = Link(NoClose(), "device", FAST).start()  # the firmware restarted its link
        host.send(b"two")
        with pytest.raises(LinkSessionLostError):
            for _ in range(100):
                host.recv(0.05)
        host.connect(2)  # a new session works
        host.send(b"three")
        assert dev.recv(2) == b"three"
    finally:
        host.close()
        dev.close()
        b.close()


def test_frames_of_other_sessions_and_directions_are_ignored(pair: Pair) -> None:
    stale = Frame(FrameType.DATA, 0x01 | 0x80 | FLAG_ACK, (pair.host.session + 1) & 0xFFFF or 1, 0, 0, b"stale")
    echo = Frame(FrameType.DATA, 0x01 | FLAG_ACK, pair.host.session, 0, 0, b"echo")
    pair.faulty.inner.write(encode_frame(stale) + encode_frame(echo), 1)
    pair.dev.send(b"real")
    assert pair.host.recv(2) == b"real"
    assert pair.host.recv(0.1) is None
    assert pair.host.stats.foreign_session >= 1 and pair.host.stats.echoed >= 1


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="window"):
        LinkOptions(window=0)
    with pytest.raises(ValueError, match="fragment"):
        LinkOptions(fragment=5000)
    with pytest.raises(ValueError, match="ack_delay"):
        LinkOptions(ack_delay_s=0.5)
    p = Pair(opts=LinkOptions(max_message=100))
    try:
        with pytest.raises(ValueError, match="max_message"):
            p.host.send(b"x" * 101)
    finally:
        p.close()
