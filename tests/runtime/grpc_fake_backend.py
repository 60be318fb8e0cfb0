"""A small deterministic fake device for the gRPC tests (scheme ``fake://``), registered on import.

Results depend on the configuration (enabled neurons, weights, thresholds) and the inputs, so two clients
with different networks get different events; optional per-entry noise is keyed by (seed, entry_offset +
entry) like the simulator's; ``delay_ms`` makes runs slow (for kill-mid-run and shutdown tests).
"""

from __future__ import annotations

import time

import numpy as np

from firstspike.hal import chip
from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import BackendError
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents
from firstspike.hal.registry import DeviceURI, register


class FakeBackend(Backend):
    """Each enabled neuron n fires in entry b at min over inputs (t, ch) with w = weight[half(n), ch % 256,
    col(n)] > 0 of ``t + threshold[n] // 8 - w`` (+ noise), if that is inside the run."""

    scheme = "fake"

    def __init__(self, serial: int = 0, delay_ms: int = 0, noise: int = 0, max_batch: int = chip.MAX_BATCH) -> None:
        self.serial = serial
        self.delay_s = delay_ms / 1000.0
        self.noise = noise
        self.max_batch = max_batch
        self._config = ChipConfig()
        self._closed = False
        self.configures = 0

    @classmethod
    def from_uri(cls, uri: DeviceURI) -> FakeBackend:
        uri.check_params({"serial", "delay_ms", "noise", "max_batch"})
        return cls(
            serial=uri.int_param("serial", 0, 0, 2**31 - 1),
            delay_ms=uri.int_param("delay_ms", 0, 0, 600_000),
            noise=uri.int_param("noise", 0, 0, 1000),
            max_batch=uri.int_param("max_batch", chip.MAX_BATCH, 1, chip.MAX_BATCH),
        )

    def info(self) -> DeviceInfo:
        if self._closed:
            raise BackendError("fake:// device is closed")
        return DeviceInfo(
            model="fake-test",
            serial=self.serial,
            version="1.0",
            max_batch=self.max_batch,
            membrane_readout=4,
            extra={"noise": self.noise, "fake": True},
        )

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        if self._closed:
            raise BackendError("fake:// device is closed")
        if isinstance(config, ConfigDiff):
            self._config = config.apply(self._config)
        elif isinstance(config, ChipConfig):
            self._config = config.copy()
        else:
            raise TypeError(f"configure() takes a ChipConfig or ConfigDiff, not {type(config).__name__}")
        self.configures += 1

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        if self._closed:
            raise BackendError("fake:// device is closed")
        self.check_run_request(inputs, options)
        if self.delay_s:
            time.sleep(self.delay_s)
        return fake_result(self._config, inputs, options, self.noise)

    def close(self) -> None:
        self._closed = True


def fake_result(cfg: ChipConfig, inputs: InputSpikes, options: RunOptions, noise: int = 0) -> RunResult:
    """The fake device's answer (pure function of config, inputs, options and noise amplitude)."""
    enabled = np.flatnonzero(cfg.neurons.values["enabled"])
    ev = inputs.events
    b_size = inputs.batch_size
    best = np.full((b_size, len(enabled)), np.iinfo(np.int64).max, dtype=np.int64)
    if len(ev) and len(enabled):
        half, col = enabled // chip.COLUMNS_PER_HALF, enabled % chip.COLUMNS_PER_HALF
        w = cfg.synapses.weights[half[None, :], (ev["label"] % chip.ROWS_PER_HALF)[:, None], col[None, :]]
        thr = cfg.neurons.values["threshold"][enabled].astype(np.int64) // 8
        t = ev["time"].astype(np.int64)[:, None] + thr[None, :] - w.astype(np.int64)
        t = np.where(w > 0, np.maximum(t, 0), np.iinfo(np.int64).max)
        rows = np.repeat(ev["batch"].astype(np.int64), len(enabled))
        cols = np.tile(np.arange(len(enabled)), len(ev))
        np.minimum.at(best, (rows, cols), t.reshape(-1))
    if noise:
        entry = options.entry_offset + np.arange(b_size, dtype=np.uint64)[:, None]
        with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the point of this hash
            key = (np.uint64(options.seed) * np.uint64(0x9E3779B97F4A7C15)) ^ (entry * np.uint64(0xBF58476D1CE4E5B9))
            key = key ^ (enabled.astype(np.uint64)[None, :] * np.uint64(0x94D049BB133111EB))
            key ^= key >> np.uint64(29)
        jitter = (key % np.uint64(noise + 1)).astype(np.int64)
        best = np.where(best < np.iinfo(np.int64).max, best + jitter, best)
    b, n = np.nonzero(best < options.duration_ticks)
    times = [best[b, n]]
    bs, ns = [b], [n]
    if options.record == "all":  # a second spike 100 ticks later, when it fits
        later = best[b, n] + 100
        keep = later < options.duration_ticks
        times.append(later[keep])
        bs.append(b[keep])
        ns.append(n[keep])
    out = np.empty(sum(len(x) for x in bs), dtype=SPIKE_DTYPE)
    out["batch"] = np.concatenate(bs)
    out["time"] = np.concatenate(times)
    out["label"] = enabled[np.concatenate(ns)]
    membrane = None
    if options.readout:
        n_samples = options.duration_ticks // options.readout_period
        entries = options.entry_offset + np.arange(b_size)
        grid = np.add.outer(np.add.outer(entries, np.asarray(options.readout)), np.arange(n_samples))
        membrane = (grid % 300).astype(np.int16)
    stats = {"input_events": len(ev), "output_events": len(out)}
    return RunResult(SpikeEvents(out, b_size), 0, membrane, stats)


register("fake", FakeBackend.from_uri)
