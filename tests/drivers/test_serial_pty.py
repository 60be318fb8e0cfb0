"""The whole hardware path without hardware: pyserial over a pty or TCP to the device side, URIs,
the blocking serve entry point, and (when it exists) the simulator behind the line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from firstspike.drivers.device_side import DeviceState, serve_pty, serve_tcp
from firstspike.drivers.faults import EchoBackend, FaultSpec, symmetric
from firstspike.drivers.link import LinkOptions
from firstspike.drivers.serial_backend import SerialBackend
from firstspike.hal.backend import RunOptions
from firstspike.hal.config import ChipConfig
from firstspike.hal.errors import DeviceBusyError, LinkError
from firstspike.hal.events import InputSpikes
from firstspike.hal.registry import DeviceURI, open_backend

FAST = LinkOptions(rto_min_s=0.01, rto_initial_s=0.03, rto_max_s=0.2, ack_delay_s=0.002, poll_s=0.02)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _our_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "link" in t.name or "serial-device" in t.name}


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """No file descriptor and no link/device thread outlives the test."""
    before, threads = _fds(), _our_threads()
    yield
    for _ in range(100):  # daemon threads end within a poll period of being stopped
        if _fds() <= before and _our_threads() <= threads:
            break
        time.sleep(0.02)
    assert _fds() <= before, "file descriptors leaked"
    assert _our_threads() <= threads, f"threads leaked: {_our_threads() - threads}"


def _inputs(seed: int, batch: int = 4, n: int = 40) -> InputSpikes:
    rng = np.random.default_rng(seed)
    return InputSpikes.from_times(rng.uniform(0, 3000, (batch, n)))


def test_pty_end_to_end_by_uri(no_fd_leak: None) -> None:
    dev = EchoBackend()
    path, stop = serve_pty(dev, options=FAST)
    try:
        with open_backend(f"serial://{path}?baud=3000000&timeout=2&rto_ms=10") as drv:
            assert isinstance(drv, SerialBackend)
            assert drv.info().extra["port"] == path
            cfg = ChipConfig()
            cfg.synapses.weights[0, 3, 4] = 5
            drv.configure(cfg)
            assert dev.config == cfg
            ref = EchoBackend()
            ref.configure(cfg)
            for i in range(20):
                inp = _inputs(i)
                assert drv.run(inp, RunOptions(4000)).spikes == ref.run(inp, RunOptions(4000)).spikes
        # A second host on the same pty later: the device kept its config; the driver learns it.
        with SerialBackend.open(path, timeout_s=2, options=FAST) as drv2:
            sent = drv2.link_stats.payload_bytes_sent
            drv2.configure(cfg)
            assert drv2.link_stats.payload_bytes_sent == sent  # nothing to send
            assert dev.configures == 1
    finally:
        stop()


def test_pty_with_faults_matches_reference(no_fd_leak: None) -> None:
    spec = FaultSpec(ber=1e-4, frame_loss=0.01)
    path, stop = serve_pty(EchoBackend(), options=FAST, wrap=lambda s: symmetric(s, spec, seed=4))
    try:
        with SerialBackend.open(path, timeout_s=3, options=FAST) as drv:
            ref = EchoBackend()
            for i in range(100):
                inp = _inputs(i, 2, 20)
                assert drv.run(inp, RunOptions(4000, seed=i)).stats == ref.run(inp, RunOptions(4000, seed=i)).stats
    finally:
        stop()


def test_pty_closed_under_the_driver_raises_link_error(no_fd_leak: None) -> None:
    path, stop = serve_pty(EchoBackend(), options=FAST)
    drv = SerialBackend.open(path, timeout_s=1, options=FAST)
    try:
        stop()  # the board is unplugged
        t0 = time.monotonic()
        with pytest.raises(LinkError):
            drv.run(_inputs(0), RunOptions(4000))
        assert time.monotonic() - t0 < 5
    finally:
        drv.close()


def test_pty_nobody_serving_raises_link_error(no_fd_leak: None) -> None:
    master, slave = os.openpty()
    try:
        with pytest.raises(LinkError, match="nothing at all was received"):
            SerialBackend.open(os.ttyname(slave), timeout_s=0.3)
    finally:
        os.close(master)
        os.close(slave)


def test_tcp_socket_url_and_busy(no_fd_leak: None) -> None:
    dev = EchoBackend()
    port, stop = serve_tcp(dev, options=FAST, state=DeviceState(8))
    try:
        uri = f"serial:///?url=socket://127.0.0.1:{port}&timeout=2"
        with open_backend(uri) as drv:
            inp = _inputs(1)
            assert drv.run(inp, RunOptions(4000)).spikes == EchoBackend().run(inp, RunOptions(4000)).spikes
            with pytest.raises(DeviceBusyError, match="another host"):
                open_backend(uri)
        for _ in range(100):  # the device notices the first host leaving
            try:
                with open_backend(uri) as drv:
                    assert drv.ping() >= 0
                break
            except DeviceBusyError:
                time.sleep(0.05)
        else:
            pytest.fail("device stayed busy after the host left")
    finally:
        stop()


def test_loop_url_is_recognised_as_no_device() -> None:
    with pytest.raises(LinkError, match="loopback"):
        open_backend("serial:///?url=loop://&timeout=0.3")


def test_unopenable_port_raises_link_error() -> None:
    with pytest.raises(LinkError, match="cannot open"):
        open_backend("serial:///dev/does-not-exist-firstspike")


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("serial://", "needs a device path"),
        ("serial:///", "needs a device path"),
        ("serial://host:5000", "not a host"),
        ("serial:///dev/ttyUSB0?url=loop://", "not both"),
        ("serial:///?url=", "empty"),
        ("serial:///dev/ttyUSB0?bauds=9600", "does not take parameter"),
        ("serial:///dev/ttyUSB0?baud=fast", "not an integer"),
        ("serial:///dev/ttyUSB0?timeout=-1", "out of range"),
        ("serial:///dev/ttyUSB0?timeout=soon", "not a number"),
        ("serial:///dev/ttyUSB0?window=0", "out of range"),
        ("serial:///dev/ttyUSB0?fragment=4096", "out of range"),
    ],
)
def test_bad_uris_are_rejected(uri: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SerialBackend.from_uri(DeviceURI.parse(uri))


def test_run_serial_device_announces_and_stops_on_sigterm() -> None:
    code = textwrap.dedent(
        """
        import sys
        from firstspike.drivers.device_side import run_serial_device
        from firstspike.drivers.faults import EchoBackend
        run_serial_device(EchoBackend(), pty=True, tcp_port=0, on_ready=lambda s: print(s, flush=True))
        print("stopped", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pty_uri = proc.stdout.readline().strip()
        tcp_uri = proc.stdout.readline().strip()
        assert pty_uri.startswith("serial:///dev/") and tcp_uri.startswith("serial:///?url=socket://127.0.0.1:")
        with open_backend(pty_uri + "?timeout=3") as drv:
            assert drv.info().model == "echo-test-device"
        with open_backend(tcp_uri + "&timeout=3") as drv:
            assert drv.ping() >= 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stdout.readline().strip() == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _sim_config() -> ChipConfig:
    """Ten neurons of half 0, each driven by input channel i through an excitatory row."""
    cfg = ChipConfig()
    n = 10
    cfg.neurons.set(np.arange(n), enabled=1, threshold=500, gain_exc=640)  # one input event crosses threshold
    cfg.row_modes[0, :n] = 1
    cfg.synapses.weights[0, np.arange(n), np.arange(n)] = 63
    for i in range(n):
        cfg.routing.add(0, i, 0, i, 0)
    return cfg


def test_simulator_behind_a_pty_matches_the_simulator(no_fd_leak: None) -> None:
    direct = open_backend("sim://")
    served = open_backend("sim://")
    path, stop = serve_pty(served, options=FAST)
    try:
        with SerialBackend.open(path, timeout_s=5, options=FAST) as drv:
            cfg = _sim_config()
            direct.configure(cfg)
            drv.configure(cfg)
            rng = np.random.default_rng(0)
            t = rng.uniform(0, 1500, (8, 10))
            inp = InputSpikes.from_times(t, np.arange(10))
            opts = RunOptions(duration_ticks=6000)
            want = direct.run(inp, opts)
            got = drv.run(inp, opts)
            assert len(want.spikes) >= 8
            assert got.spikes == want.spikes and got.dropped == want.dropped
            assert drv.info().model == direct.info().model
    finally:
        stop()
        direct.close()
        served.close()
