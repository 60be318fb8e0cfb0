"""Deliberately broken variants of the example backend: the conformance suite must catch each of them.

Each class breaks one promise of the hal contract; tests register them under their own URI scheme through
a temporary entry point and check that the suite fails the right check.
"""

from __future__ import annotations

import numpy as np
from example_backend.backend import ExampleBackend, _prepare

from firstspike.hal.backend import DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff, RowMode
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents


class CarryStateBackend(ExampleBackend):
    """Runs the batch entries back to back on one timeline: state leaks from one entry into the next."""

    scheme = "mutant-carry"

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        self.check_run_request(inputs, options)
        d = options.duration_ticks
        ev = inputs.events.copy()
        ev["time"] += ev["batch"] * d
        spikes, _ = self._run_entry(ev, d * inputs.batch_size)
        out = np.array([(t // d, t % d, n) for t, n in spikes], dtype=np.int64).reshape(-1, 3)
        if options.record == "first":
            _, keep = np.unique(out[:, 0] * 512 + out[:, 2], return_index=True)
            out = out[np.sort(keep)]
        arr = np.empty(len(out), SPIKE_DTYPE)
        arr["batch"], arr["time"], arr["label"] = out[:, 0], out[:, 1], out[:, 2]
        return RunResult(SpikeEvents(arr, inputs.batch_size))


class InhibitionExcitesBackend(ExampleBackend):
    """Treats inhibitory rows as excitatory (a sign bug)."""

    scheme = "mutant-sign"

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        super().configure(config)
        flipped = self._config.copy()
        flipped.row_modes[flipped.row_modes == RowMode.INHIBITORY] = RowMode.EXCITATORY
        self._net = _prepare(flipped)


class IgnoresLabelsBackend(ExampleBackend):
    """Every synapse on a row responds to every event on it, whatever its label."""

    scheme = "mutant-labels"

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        super().configure(config)
        blind = self._config.copy()
        routes = blind.routing.routes.copy()
        for r in routes:
            blind.synapses.labels[r["half"], r["row"]] = r["address"]
        self._net = _prepare(blind)


class AppliesBeforeValidatingBackend(ExampleBackend):
    """Takes a config without validating it (and so keeps an invalid one)."""

    scheme = "mutant-novalidate"

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        if isinstance(config, ChipConfig):
            self._config = config
            self._net = _prepare(config)
            return
        super().configure(config)


class NanosecondsBackend(ExampleBackend):
    """Reports time stamps in nanoseconds instead of ticks (and claims a large max duration)."""

    scheme = "mutant-ns"

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        res = super().run(inputs, options)
        ev = res.spikes.events.copy()
        ev["time"] *= 8
        return RunResult(SpikeEvents(ev, res.spikes.batch_size), res.dropped, res.membrane, res.stats)


class LastSpikeBackend(ExampleBackend):
    """record='first' returns each neuron's LAST spike."""

    scheme = "mutant-last"

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        if options.record == "all":
            return super().run(inputs, options)
        res = super().run(inputs, RunOptions(**{**options.__dict__, "record": "all"}))
        ev = res.spikes.events[::-1]
        _, keep = np.unique(ev["batch"].astype(np.int64) * 512 + ev["label"], return_index=True)
        return RunResult(SpikeEvents(ev[keep].copy(), res.spikes.batch_size))


class WrongResourceModelBackend(ExampleBackend):
    """Claims a chip with 3 halves."""

    scheme = "mutant-info"

    def info(self) -> DeviceInfo:
        i = super().info()
        return DeviceInfo(
            i.model,
            i.serial,
            i.version,
            {**i.resource_model, "halves": 3},
            i.max_batch,
            i.max_duration_ticks,
            i.max_events,
            i.deterministic,
            i.membrane_readout,
            i.extra,
        )
