"""The one small interface every device implements.

Like a tinygrad device runtime, a backend does four things: describe itself (:meth:`Backend.info`), take
a configuration (:meth:`Backend.configure`, a full :class:`ChipConfig` or a :class:`ConfigDiff` against
the one it holds), run a batch of input spike trains for a duration and return what it recorded
(:meth:`Backend.run`), and :meth:`Backend.close`. Everything else (sessions, compilation, training,
remote serving, pools) is built on top of these four calls, so adding a device = adding one class.

Semantics every backend honours (the conformance suite checks them):

* each batch entry starts from the reset state (membranes at reset/leak, synaptic currents zero) and
  runs for ``options.duration_ticks`` ticks; entries never influence each other;
* event times are integer ticks since the start of their own batch entry;
* returned events are sorted by (batch, time, label); with ``record="first"`` only each neuron's first
  spike per entry is returned;
* events beyond the device's buffer are counted in ``RunResult.dropped``, never silently lost;
* invalid configs raise before anything is applied; the device keeps its previous config.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from firstspike.hal import chip
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import CapacityError, FieldRangeError
from firstspike.hal.events import InputSpikes, SpikeEvents


@dataclass(frozen=True)
class DeviceInfo:
    """What a device is: identity, versions, resource model and capabilities."""

    model: str  # e.g. "firstspike-sim", "bss2-like-serial"
    serial: int  # chip serial number (keys the simulator's fixed-pattern mismatch)
    version: str  # firmware or simulator version
    resource_model: dict[str, int | float] = field(default_factory=chip.resource_model)
    max_batch: int = chip.MAX_BATCH
    max_duration_ticks: int = chip.MAX_DURATION_TICKS
    max_events: int = 1 << 24  # output buffer size per run call
    deterministic: bool = True  # same config + inputs + seed -> same events
    membrane_readout: int = 0  # how many neurons can be read out at once (0 = none)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    """How to run a batch.

    ``duration_ticks``: run length per batch entry (ticks). ``record``: "first" keeps each neuron's first
    spike per entry, "all" keeps every spike. ``seed``: temporal-noise seed of this run (ignored by ideal
    devices). ``readout``: neuron ids whose membrane is sampled every ``readout_period`` ticks.
    ``entry_offset``: global index of this call's batch entry 0; a noisy device keys the temporal noise of
    entry ``b`` by ``(seed, entry_offset + b)``, so splitting a batch into chunks (pools, streaming) with the
    right offsets reproduces the unsplit run exactly.
    """

    duration_ticks: int = 8 * chip.NOMINAL_TAU_S_TICKS
    record: Literal["first", "all"] = "first"
    seed: int = 0
    readout: tuple[int, ...] = ()
    readout_period: int = 8
    entry_offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= int(self.duration_ticks) <= chip.MAX_DURATION_TICKS:
            raise FieldRangeError("RunOptions.duration_ticks", self.duration_ticks, 1, chip.MAX_DURATION_TICKS)
        if self.record not in ("first", "all"):
            raise ValueError(f"RunOptions.record: {self.record!r} not allowed; use 'first' or 'all'")
        if not 0 <= int(self.seed) < 2**63:
            raise FieldRangeError("RunOptions.seed", self.seed, 0, 2**63 - 1)
        for n in self.readout:
            if not 0 <= int(n) < chip.N_NEURONS:
                raise FieldRangeError("RunOptions.readout", n, 0, chip.N_NEURONS - 1)
        if not 1 <= int(self.readout_period) <= self.duration_ticks:
            raise FieldRangeError("RunOptions.readout_period", self.readout_period, 1, self.duration_ticks)
        if not 0 <= int(self.entry_offset) < 2**63:
            raise FieldRangeError("RunOptions.entry_offset", self.entry_offset, 0, 2**63 - 1)


@dataclass(frozen=True, eq=False)
class RunResult:
    """What a run recorded.

    ``spikes``: recorded neuron spikes. ``dropped``: events that did not fit the output buffer (counted,
    not returned). ``membrane``: if readout was requested, int16/int32 samples of shape
    (batch, len(readout), n_samples) in membrane LSB, else None. ``stats``: device counters, e.g.
    ``synaptic_events``, ``input_events``, ``lost_input_events``.
    """

    spikes: SpikeEvents
    dropped: int = 0
    membrane: np.ndarray | None = None
    stats: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def concatenate(parts: list[RunResult]) -> RunResult:
        """Join results of consecutive sub-batches: spikes joined (batch indices shifted), dropped events and
        counters summed, membrane traces joined along the batch axis if every part has them."""
        traces = [p.membrane for p in parts if p.membrane is not None]
        membrane = np.concatenate(traces, axis=0) if parts and len(traces) == len(parts) else None
        stats: dict[str, int] = {}
        for p in parts:
            for k, v in p.stats.items():
                stats[k] = stats.get(k, 0) + int(v)
        spikes = SpikeEvents.concatenate([p.spikes for p in parts])
        return RunResult(spikes, sum(int(p.dropped) for p in parts), membrane, stats)


class Backend(abc.ABC):
    """A device: describe, configure, run, close. Subclasses implement the four abstract methods."""

    #: URI scheme this backend answers to (e.g. "sim"); set by subclasses.
    scheme: str = ""

    @abc.abstractmethod
    def info(self) -> DeviceInfo:
        """Identity, versions, resource model and limits of the device."""

    @abc.abstractmethod
    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        """Apply a full configuration or a diff against the current one (validated before applying)."""

    @abc.abstractmethod
    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        """Run every batch entry from the reset state for ``options.duration_ticks``; return the spikes."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device. Further calls raise; closing twice is harmless."""

    # ---- conveniences shared by every backend --------------------------------------------------
    def check_run_request(self, inputs: InputSpikes, options: RunOptions) -> None:
        """Reject batches and durations beyond this device's limits (raises CapacityError)."""
        info = self.info()
        if inputs.batch_size > info.max_batch:
            raise CapacityError(
                f"batch of {inputs.batch_size} entries exceeds this device's max_batch {info.max_batch}"
            )
        if options.duration_ticks > info.max_duration_ticks:
            raise CapacityError(
                f"duration {options.duration_ticks} ticks exceeds max_duration_ticks {info.max_duration_ticks}"
            )
        if len(inputs) and int(inputs.events["time"].max()) >= options.duration_ticks:
            late = int(inputs.events["time"].max())
            raise FieldRangeError("InputSpikes.time", late, 0, options.duration_ticks - 1, "inside the run")
        if len(options.readout) > info.membrane_readout:
            raise CapacityError(
                f"{len(options.readout)} readout neurons requested; this device reads out {info.membrane_readout}"
            )

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
