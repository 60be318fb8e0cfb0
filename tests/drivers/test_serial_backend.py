"""The serial:// driver against the device side over in-memory lines with injected faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from firstspike.drivers.device_side import DeviceSide, DeviceState
from firstspike.drivers.faults import CLEAN, DEAD, EchoBackend, FaultSpec, FaultyStream
from firstspike.drivers.link import Link, LinkOptions
from firstspike.drivers.messages import Result, Run, decode_message, encode_message
from firstspike.drivers.serial_backend import SerialBackend
from firstspike.drivers.streams import memory_pipe
from firstspike.hal import chip
from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import BackendError, CapacityError, ConfigError, FieldRangeError, LinkError
from firstspike.hal.events import InputSpikes
from firstspike.hal.null_backend import NullBackend

FAST = LinkOptions(rto_min_s=0.01, rto_initial_s=0.03, rto_max_s=0.2, ack_delay_s=0.002, poll_s=0.02)


class Line:
    """Driver <-> memory pipe <-> fault injector <-> device side around ``backend``."""

    def __init__(self, backend: Backend, spec: FaultSpec = CLEAN, *, timeout: float = 3.0, seed: int = 0,
                 opts: LinkOptions = FAST) -> None:
        a, b = memory_pipe()
        self.backend = backend
        self.faulty = FaultyStream(b, spec, spec, seed=seed)
        self.state = DeviceState()
        self.side = DeviceSide(backend, self.faulty, options=opts, state=self.state)
        self.thread = threading.Thread(target=self.side.serve_forever, daemon=True)
        self.thread.start()
        try:
            self.drv = SerialBackend(a, timeout_s=timeout, call_timeout_s=60, options=opts)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if hasattr(self, "drv"):
            self.drv.close()
        self.side.stop()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def line() -> Iterator[Line]:
    ln = Line(EchoBackend())
    yield ln
    ln.close()


def _inputs(rng: np.random.Generator, batch: int, n: int, tmax: int = 3000) -> InputSpikes:
    t = rng.uniform(0, tmax, (batch, n))
    t[rng.random((batch, n)) < 0.3] = np.inf
    return InputSpikes.from_times(t, rng.permutation(chip.N_INPUT_CHANNELS)[:n])


def _same(a: RunResult, b: RunResult) -> bool:
    return (
        a.spikes == b.spikes
        and a.dropped == b.dropped
        and a.stats == b.stats
        and ((a.membrane is None and b.membrane is None) or np.array_equal(a.membrane, b.membrane))
    )


def test_handshake_reports_the_device(line: Line) -> None:
    info = line.drv.info()
    assert info.model == "echo-test-device" and info.serial == 7 and info.membrane_readout == 4
    assert info.extra["purpose"] == "link tests"  # the device's own extra survives
    assert info.extra["driver"] == "firstspike.drivers.serial_backend" and info.extra["protocol_version"] == 1
    assert line.drv.ping(b"abc") >= 0


def test_runs_match_the_backend(line: Line) -> None:
    rng = np.random.default_rng(0)
    ref = EchoBackend()
    for batch, n in [(1, 0), (3, 5), (50, 200)]:
        inp = _inputs(rng, batch, n)
        opts = RunOptions(duration_ticks=4000, readout=(3, 400), readout_period=16)
        assert _same(line.drv.run(inp, opts), ref.run(inp, opts))


def test_configure_full_diff_and_skip(line: Line) -> None:
    drv, dev = line.drv, line.backend
    cfg = ChipConfig()
    cfg.synapses.weights[0, :20, :20] = 9
    drv.configure(cfg)
    assert dev.config == cfg and dev.configures == 1
    sent = drv.link_stats.payload_bytes_sent
    cfg.synapses.weights[1, 7, 9] = 33
    drv.configure(cfg)  # sent as a diff: a few hundred bytes, not the whole config
    assert dev.config == cfg and dev.configures == 2
    assert drv.link_stats.payload_bytes_sent - sent < 1000
    sent = drv.link_stats.payload_bytes_sent
    drv.configure(cfg)  # the device already holds it: nothing is sent
    assert drv.link_stats.payload_bytes_sent == sent and dev.configures == 2
    other = ChipConfig()
    drv.configure(cfg.diff(other))  # an explicit diff
    assert dev.config == other


def test_config_errors_are_typed_and_leave_the_device_unchanged(line: Line) -> None:
    drv, dev = line.drv, line.backend
    good = ChipConfig()
    good.synapses.weights[0, 0, 0] = 1
    drv.configure(good)
    bad = good.copy()
    bad.synapses.weights[0, 1, 1] = 64  # invalid: refused before anything is sent
    sent = drv.link_stats.payload_bytes_sent
    with pytest.raises(FieldRangeError, match=r"synapses\.weights"):
        drv.configure(bad)
    assert drv.link_stats.payload_bytes_sent == sent
    # A diff made for another base is refused by the device, with the device's message and type.
    target = ChipConfig()
    target.synapses.weights[0, 5, 5] = 3
    with pytest.raises(ConfigError, match="base configuration differs"):
        drv.configure(ChipConfig().diff(target))
    assert dev.config == good
    with pytest.raises(TypeError):
        drv.configure("not a config")  # type: ignore[arg-type]


class _Grumpy(NullBackend):
    """Raises device-side errors on request (by batch size)."""

    def info(self) -> DeviceInfo:
        return DeviceInfo(model="grumpy", serial=1, version="0", max_batch=100)

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        if inputs.batch_size == 2:
            raise CapacityError("device buffer full: 2 entries is too many today")
        if inputs.batch_size == 3:
            raise FieldRangeError("neurons.threshold[5]", 5000, 0, 1022, "calibration")
        if inputs.batch_size == 4:
            raise RuntimeError("firmware assertion failed")
        return super().run(inputs, options)


def test_device_errors_come_back_typed() -> None:
    ln = Line(_Grumpy())
    try:
        drv = ln.drv
        with pytest.raises(CapacityError, match="2 entries is too many today"):
            drv.run(InputSpikes.from_times(np.zeros((2, 0))), RunOptions(100))
        with pytest.raises(FieldRangeError, match=r"neurons\.threshold\[5\]") as ei:
            drv.run(InputSpikes.from_times(np.zeros((3, 0))), RunOptions(100))
        assert ei.value.high == 1022
        with pytest.raises(BackendError, match=r"RuntimeError.*firmware assertion"):
            drv.run(InputSpikes.from_times(np.zeros((4, 0))), RunOptions(100))
        # Limits the device reported are enforced before sending.
        with pytest.raises(CapacityError, match="max_batch 100"):
            drv.run(InputSpikes.from_times(np.zeros((101, 0))), RunOptions(100))
        assert drv.run(InputSpikes.from_times(np.zeros((1, 0))), RunOptions(100)).spikes.batch_size == 1
    finally:
        ln.close()


def test_closed_backend_raises_and_close_is_idempotent(line: Line) -> None:
    line.drv.close()
    line.drv.close()
    with pytest.raises(BackendError, match="closed"):
        line.drv.info()
    with pytest.raises(BackendError, match="closed"):
        line.drv.run(InputSpikes.from_times(np.zeros((1, 0))), RunOptions(100))


def test_1000_runs_at_ber_1e4_and_1pct_frame_loss_match_the_reference() -> None:
    """The issue's acceptance test: every result identical to the fault-free reference, none lost or
    duplicated (the echo device's stats count its runs, so a repeated execution would show)."""
    spec = FaultSpec(ber=1e-4, frame_loss=0.01)
    ln = Line(EchoBackend(), spec, seed=11)
    ref = EchoBackend()
    rng = np.random.default_rng(5)
    try:
        for i in range(1000):
            inp = _inputs(rng, int(rng.integers(1, 4)), int(rng.integers(0, 12)))
            opts = RunOptions(duration_ticks=4000, seed=i)
            got = ln.drv.run(inp, opts)
            want = ref.run(inp, opts)
            assert _same(got, want), f"run {i} differs"
        assert ln.backend.runs == 1000 and ln.state.executed == 1000
        c = ln.faulty.tx.counts
        r = ln.faulty.rx.counts
        assert c.frames_lost + r.frames_lost > 10 and c.bits_flipped + r.bits_flipped > 10
        assert ln.drv.link_stats.retransmits + ln.side.link.stats.retransmits > 0
    finally:
        ln.close()


def test_duplicated_frames_never_execute_twice() -> None:
    ln = Line(EchoBackend(), FaultSpec(frame_dup=0.3, ber=1e-4), seed=3)
    ref = EchoBackend()
    rng = np.random.default_rng(1)
    try:
        for i in range(100):
            inp = _inputs(rng, 2, 30)
            assert _same(ln.drv.run(inp, RunOptions(4000, seed=i)), ref.run(inp, RunOptions(4000, seed=i)))
        assert ln.backend.runs == 100
        assert ln.side.link.stats.duplicates > 0
    finally:
        ln.close()


def test_repeated_request_is_answered_from_the_cache() -> None:
    """A request repeated with the same id (as after a link reset) runs once; both answers are equal."""
    a, b = memory_pipe()
    backend = EchoBackend()
    side = DeviceSide(backend, b, options=FAST)
    t = threading.Thread(target=side.serve_forever, daemon=True)
    t.start()
    host = Link(a, "host", FAST).start()
    try:
        host.connect(2)
        req = encode_message(Run(_inputs(np.random.default_rng(2), 4, 20), RunOptions(4000)), 1234)
        host.send(req)
        host.send(req)
        r1, r2 = host.recv(5), host.recv(5)
        assert r1 == r2
        rid, msg = decode_message(r1)
        assert rid == 1234 and isinstance(msg, Result)
        assert backend.runs == 1 and side.state.cache_hits == 1
    finally:
        host.close()
        side.stop()
        t.join(5)


def test_link_reset_mid_call_repeats_the_request_without_rerunning_it() -> None:
    """The device runs the request but every frame back is lost; the driver stalls, resets the link and
    repeats the request id; the device answers from its cache."""
    ln = Line(EchoBackend(), timeout=2.0)
    try:
        inp = _inputs(np.random.default_rng(3), 3, 10)
        want = EchoBackend().run(inp, RunOptions(4000))
        ln.faulty.set_faults(tx=DEAD)  # device -> host is cut

        def heal_after_reset() -> None:  # the line comes back once the driver has given up on the session
            while ln.drv.link_resets == 0 and not done.is_set():
                time.sleep(0.005)
            ln.faulty.set_faults(tx=CLEAN)

        done = threading.Event()
        healer = threading.Thread(target=heal_after_reset, daemon=True)
        healer.start()
        try:
            got = ln.drv.run(inp, RunOptions(4000))
        finally:
            done.set()
            healer.join(5)
        assert _same(got, want)
        assert ln.backend.runs == 1 and ln.state.cache_hits >= 1 and ln.drv.link_resets >= 1
    finally:
        ln.close()


@pytest.mark.parametrize("cut", ["both", "to_device", "from_device"])
def test_dead_line_raises_link_error_within_timeout(cut: str) -> None:
    timeout = 0.6
    ln = Line(EchoBackend(), timeout=timeout)
    try:
        ln.faulty.set_faults(tx=DEAD if cut != "to_device" else None, rx=DEAD if cut != "from_device" else None)
        t0 = time.monotonic()
        with pytest.raises(LinkError):
            ln.drv.run(_inputs(np.random.default_rng(0), 1, 3), RunOptions(4000))
        assert time.monotonic() - t0 < 4 * timeout + 1  # a typed error, never a hang
    finally:
        ln.close()


def test_device_gone_raises_link_error() -> None:
    ln = Line(EchoBackend(), timeout=1.0)
    try:
        ln.side.stop()
        ln.thread.join(5)  # the device side closes its end of the line
        with pytest.raises(LinkError):
            ln.drv.run(_inputs(np.random.default_rng(0), 1, 3), RunOptions(4000))
    finally:
        ln.close()


def test_handshake_with_no_device_raises_link_error() -> None:
    a, b = memory_pipe()
    t0 = time.monotonic()
    with pytest.raises(LinkError, match="no device answered"):
        SerialBackend(a, timeout_s=0.3, options=FAST)
    assert time.monotonic() - t0 < 3
    b.close()


def test_large_config_is_fragmented_under_faults() -> None:
    """A full config with random weights (poorly compressible, ~200 KB) crosses a lossy line intact."""
    ln = Line(EchoBackend(), FaultSpec(ber=1e-4, frame_loss=0.01), seed=8)
    try:
        cfg = ChipConfig()
        rng = np.random.default_rng(0)
        cfg.synapses.weights[:] = rng.integers(0, 64, cfg.synapses.weights.shape, dtype=np.uint8)
        cfg.synapses.labels[:] = rng.integers(0, 64, cfg.synapses.labels.shape, dtype=np.uint8)
        ln.drv.configure(cfg)
        assert ln.backend.config == cfg
        assert ln.drv.link_stats.payload_bytes_sent > 150_000
        d = ConfigDiff.from_bytes(cfg.diff(ChipConfig()).to_bytes())
        ln.drv.configure(d)
        assert ln.backend.config == ChipConfig()
    finally:
        ln.close()


class _SlowEcho(EchoBackend):
    """An echo device whose runs take ``seconds`` (sleeping: the device's link threads keep running)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        time.sleep(self.seconds)
        return super().run(inputs, options)


def test_run_longer_than_a_short_timeout_succeeds_while_the_device_is_alive() -> None:
    """``serial://...?timeout=0.3`` against a device whose own keep-alive interval is 1 s (timeout 5 s) and a run of
    1.5 s: the device keeps alive as often as the host's timeout needs (its RESET asked for 75 ms), so the run
    succeeds without a link reset. (Before, the host saw 1 s of silence and raised LinkError after 0.3 s.)"""
    assert FAST.keepalive == 1.0
    inp = _inputs(np.random.default_rng(3), 2, 5)
    want = EchoBackend().run(inp, RunOptions(4000))
    ln = Line(_SlowEcho(1.5), timeout=0.3)
    try:
        t0 = time.monotonic()
        got = ln.drv.run(inp, RunOptions(4000))
        assert time.monotonic() - t0 >= 1.5
        assert _same(got, want)
        assert ln.drv.link_resets == 0 and ln.backend.runs == 1
    finally:
        ln.close()
