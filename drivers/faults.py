"""Fault injection between driver and device, for tests and benchmarks.

:class:`FaultyStream` wraps any :class:`~firstspike.drivers.streams.ByteStream` and damages the bytes going out
(``tx``) and coming in (``rx``) according to a :class:`FaultSpec`: bit flips at a bit-error rate, whole
frames dropped, duplicated or truncated, single bytes dropped or duplicated, bursts of random noise, and
delays. Frame-level faults find frames by the 0x00 delimiter (the injector knows the framing, the link
must not care). Specs can be swapped while running (``set_faults``) to cut a link or heal it.

:class:`EchoBackend` is a tiny deterministic stand-in device for link tests and benchmarks: its result
is a pure function of the inputs, so any corruption that slipped through would show.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from firstspike.drivers.streams import ByteStream
from firstspike.hal import chip
from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import BackendError
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents


@dataclass(frozen=True)
class FaultSpec:
    """What goes wrong on one direction of the line. Probabilities per bit, byte or frame."""

    ber: float = 0.0  # probability that any one bit is flipped
    frame_loss: float = 0.0  # probability that a whole frame vanishes
    frame_dup: float = 0.0  # probability that a frame is delivered twice
    truncate: float = 0.0  # probability that a frame is cut at a random point (its rest is lost)
    byte_drop: float = 0.0  # probability per byte of being dropped
    byte_dup: float = 0.0  # probability per byte of being doubled
    noise: float = 0.0  # probability per frame of a burst of random bytes before it
    noise_max: int = 64  # longest noise burst (bytes)
    delay_s: float = 0.0  # stall before each write (seconds)
    jitter_s: float = 0.0  # extra uniform random stall up to this (seconds)

    def __post_init__(self) -> None:
        for name in ("ber", "frame_loss", "frame_dup", "truncate", "byte_drop", "byte_dup", "noise"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"FaultSpec.{name}={v!r} not allowed; use a probability in [0, 1]")
        if self.noise_max < 1 or self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("FaultSpec: noise_max must be >= 1 and delays >= 0")

    @property
    def drops_everything(self) -> bool:
        return self.frame_loss >= 1.0


CLEAN = FaultSpec()
DEAD = FaultSpec(frame_loss=1.0)


@dataclass
class FaultCounts:
    """What an injector did."""

    frames: int = 0
    frames_lost: int = 0
    frames_duplicated: int = 0
    frames_truncated: int = 0
    bits_flipped: int = 0
    bytes_dropped: int = 0
    bytes_duplicated: int = 0
    noise_bytes: int = 0


class FaultInjector:
    """Applies a :class:`FaultSpec` to a byte stream, chunk by chunk (keeps an unterminated frame tail)."""

    def __init__(self, spec: FaultSpec, seed: int = 0) -> None:
        self.spec = spec
        self.counts = FaultCounts()
        self._rng = np.random.default_rng(seed)
        self._tail = b""

    def process(self, data: bytes) -> bytes:
        """Damage ``data``; complete frames (ending in 0x00) are returned, an unterminated tail is held
        back until its delimiter arrives (or passed on once it is longer than any frame)."""
        spec = self.spec
        buf = self._tail + bytes(data)
        cut = buf.rfind(b"\x00") + 1
        if cut == 0 and len(buf) <= 4096:
            self._tail = buf
            return b""
        if cut == 0:
            cut = len(buf)
        self._tail = buf[cut:]
        pieces = buf[:cut].split(b"\x00")
        if buf[:cut].endswith(b"\x00"):
            pieces.pop()
            pieces = [p + b"\x00" for p in pieces]
        out: list[bytes] = []
        rng = self._rng
        for frame in pieces:
            if frame == b"\x00":  # a bare delimiter (leading zero of an idle frame): bit errors only
                out.append(self._byte_faults(frame))
                continue
            self.counts.frames += 1
            if spec.noise and rng.random() < spec.noise:
                burst = rng.integers(0, 256, int(rng.integers(1, spec.noise_max + 1)), dtype=np.uint8).tobytes()
                out.append(burst)
                self.counts.noise_bytes += len(burst)
            if spec.frame_loss and rng.random() < spec.frame_loss:
                self.counts.frames_lost += 1
                continue
            if spec.truncate and rng.random() < spec.truncate and len(frame) > 1:
                frame = frame[: int(rng.integers(1, len(frame)))]
                self.counts.frames_truncated += 1
            frame = self._byte_faults(frame)
            out.append(frame)
            if spec.frame_dup and rng.random() < spec.frame_dup:
                out.append(frame)
                self.counts.frames_duplicated += 1
        return b"".join(out)

    def _byte_faults(self, frame: bytes) -> bytes:
        spec, rng = self.spec, self._rng
        if not (spec.ber or spec.byte_drop or spec.byte_dup) or not frame:
            return frame
        a = np.frombuffer(frame, dtype=np.uint8).copy()
        if spec.ber:
            nflip = int(rng.binomial(8 * len(a), spec.ber))
            if nflip:
                bits = rng.integers(0, 8 * len(a), nflip)
                np.bitwise_xor.at(a, bits >> 3, (1 << (bits & 7)).astype(np.uint8))
                self.counts.bits_flipped += nflip
        if spec.byte_drop or spec.byte_dup:
            reps = np.ones(len(a), dtype=np.int64)
            if spec.byte_drop:
                drop = rng.random(len(a)) < spec.byte_drop
                reps[drop] = 0
                self.counts.bytes_dropped += int(drop.sum())
            if spec.byte_dup:
                dup = (rng.random(len(a)) < spec.byte_dup) & (reps > 0)
                reps[dup] = 2
                self.counts.bytes_duplicated += int(dup.sum())
            a = np.repeat(a, reps)
        return a.tobytes()


class FaultyStream:
    """A :class:`ByteStream` that damages what it writes (``tx``) and what it reads (``rx``)."""

    def __init__(self, inner: ByteStream, tx: FaultSpec = CLEAN, rx: FaultSpec = CLEAN, *, seed: int = 0) -> None:
        self.inner = inner
        self.name = f"faulty({inner.name})"
        self._lock = threading.Lock()
        self.tx = FaultInjector(tx, seed * 2 + 1)
        self.rx = FaultInjector(rx, seed * 2 + 2)
        self._jitter = random.Random(seed)

    def set_faults(self, tx: FaultSpec | None = None, rx: FaultSpec | None = None) -> None:
        """Change the faults while running (e.g. ``DEAD`` to cut the line, ``CLEAN`` to heal it)."""
        with self._lock:
            if tx is not None:
                self.tx.spec = tx
            if rx is not None:
                self.rx.spec = rx

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while True:
            data = self.inner.read(max_bytes, max(deadline - time.monotonic(), 0.0))
            if not data:
                return b""
            with self._lock:
                out = self.rx.process(data)
            if out or time.monotonic() >= deadline:
                return out

    def write(self, data: bytes, timeout_s: float) -> None:
        with self._lock:
            spec = self.tx.spec
            out = self.tx.process(data)
        stall = spec.delay_s + (self._jitter.uniform(0, spec.jitter_s) if spec.jitter_s else 0.0)
        if stall:
            time.sleep(stall)
        if out:
            self.inner.write(out, timeout_s)

    def close(self) -> None:
        self.inner.close()


def symmetric(stream: ByteStream, spec: FaultSpec, seed: int = 0) -> FaultyStream:
    """Wrap ``stream`` so both directions suffer ``spec`` (put it on the device end of a link)."""
    return FaultyStream(stream, spec, replace(spec, delay_s=0.0, jitter_s=0.0), seed=seed)


class EchoBackend(Backend):
    """A deterministic stand-in device for link tests: each input event (b, t, channel) comes back as a
    spike of neuron ``channel % 512`` at time ``t + 1 + (digest byte of the current config) % 7``.

    It validates configs like a device (diffs must match its base) and counts executed runs in ``runs``,
    so tests can check that retransmitted requests are not executed twice.
    """

    scheme = "echo"

    def __init__(self, serial: int = 7) -> None:
        self._config = ChipConfig()
        self._shift = self._config.digest()[0] % 7
        self._serial = serial
        self._closed = False
        self.runs = 0
        self.configures = 0

    def info(self) -> DeviceInfo:
        self._check()
        return DeviceInfo(model="echo-test-device", serial=self._serial, version="1", membrane_readout=4,
                          extra={"purpose": "link tests"})

    def _check(self) -> None:
        if self._closed:
            raise BackendError("echo device is closed")

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        self._check()
        if isinstance(config, ConfigDiff):
            new = config.apply(self._config)
        elif isinstance(config, ChipConfig):
            new = config.copy()
        else:
            raise TypeError(f"configure() takes a ChipConfig or ConfigDiff, not {type(config).__name__}")
        self._config = new
        self._shift = new.digest()[0] % 7
        self.configures += 1

    @property
    def config(self) -> ChipConfig:
        return self._config

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        self._check()
        self.check_run_request(inputs, options)
        self.runs += 1
        ev = inputs.events
        out = np.empty(len(ev), dtype=SPIKE_DTYPE)
        out["batch"] = ev["batch"]
        out["time"] = ev["time"] + 1 + self._shift
        out["label"] = ev["label"] % chip.N_NEURONS
        keep = out["time"] < options.duration_ticks
        out = out[keep]
        membrane = None
        if options.readout:
            n = options.duration_ticks // options.readout_period
            membrane = np.zeros((inputs.batch_size, len(options.readout), n), dtype=np.int16)
            for j, nrn in enumerate(options.readout):
                membrane[:, j, :] = (nrn + np.arange(n)) % 1000
        stats = {"input_events": len(ev), "runs": self.runs}
        return RunResult(SpikeEvents(out, inputs.batch_size), dropped=int((~keep).sum()), membrane=membrane,
                         stats=stats)

    def close(self) -> None:
        self._closed = True
