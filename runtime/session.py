"""Sessions: a compiled network on a device, run on batches of input times in model units.

A :class:`Session` owns the link between a :class:`compiler.CompiledNetwork` and a :class:`hal.Backend`:

* it uploads the artifact's configuration once, and afterwards only :class:`hal.ConfigDiff` s
  (:meth:`Session.update_weights`: re-quantise float weights with the artifact's FIXED per-layer steps q, and
  send only the synapse weights that changed; :meth:`Session.update_parameters` does the same for weights and
  axonal delays, which become the route delay codes of each source). What travels is decided by the device's
  configuration mirror (:meth:`hal.Backend.sync`, :mod:`firstspike.hal.mirror`): a diff always goes against the
  configuration the device holds;
* :meth:`Session.run` takes input spike times in model units (units of tau_s, ``inf`` = no spike), adds every
  layer's bias spike, converts model time to ticks with the artifact's realised ``tau_s_ticks``, runs the batch
  (split into chunks of at most the device's ``max_batch`` entries, each with ``RunOptions.entry_offset`` = its
  position, so chunking never changes a noisy device's result) and returns the first spike of every neuron of
  every layer in model units (``inf`` = silent);
* a network split into several stages (one chip configuration each) runs stage by stage: configure stage s,
  run, replay its last layer's first spikes as the next stage's inputs.

Run window. Unless given, ``duration_ticks`` covers the latest input or bias spike of the batch plus
:data:`DEFAULT_MARGIN_TAU` (6 tau_s): a TTFS neuron that has not fired ~4 tau_s after its last input almost never
fires (the PSP kernel ``s e^-s`` has decayed to < 7 % of its peak at s = 4), and each layer adds well under
one tau_s of latency in trained networks; spikes later than the window are reported as silent. Route delays add
each layer's longest delay to the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from firstspike.compiler.artifact import CompiledNetwork
from firstspike.hal import chip
from firstspike.hal.backend import Backend, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.events import InputSpikes, SpikeEvents
from firstspike.hal.mirror import ConfigPlan

__all__ = ["DEFAULT_MARGIN_TAU", "Session", "SessionError", "SessionResult"]

#: run-window margin after the latest input/bias spike, in units of tau_s (see the module docstring)
DEFAULT_MARGIN_TAU = 6.0


class SessionError(ValueError):
    """A request that does not fit the session's network or device (names what is wrong and what is allowed)."""


def _float64(x: Any) -> np.ndarray:
    return np.array(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class SessionResult:
    """What one :meth:`Session.run` produced.

    ``layer_times[l]``: (batch, n_l) float64 first spike times of layer ``l`` in model units, ``inf`` = silent.
    ``events``: the recorded spikes (raw ticks and neuron ids) of stage 0; ``stage_events`` of every stage.
    ``stats``: device counters summed over chunks and stages (e.g. ``spikes``, ``synaptic_events``,
    ``input_events``, ``lost_input_events``). ``dropped``: events lost to the device's output buffer.
    ``duration_ticks``: run window per batch entry and stage. ``membrane``: readout samples of stage 0 (or None).
    ``input_times``: the model-unit input times the device actually received (rounded to ticks, ``inf`` = none).
    """

    layer_times: list[np.ndarray]
    stage_events: tuple[SpikeEvents, ...]
    stats: dict[str, int]
    dropped: int
    duration_ticks: int
    tau_s_ticks: float
    input_times: np.ndarray
    membrane: np.ndarray | None = None
    chunks: int = 1

    @property
    def events(self) -> SpikeEvents:
        """Recorded spikes of stage 0 (the whole network for single-stage artifacts)."""
        return self.stage_events[0]

    @property
    def output_times(self) -> np.ndarray:
        """(batch, n_classes) first spike times of the last layer (model units, ``inf`` = silent)."""
        return self.layer_times[-1]

    @property
    def batch_size(self) -> int:
        return int(self.input_times.shape[0])

    @property
    def chip_seconds(self) -> float:
        """Chip time of the run: batch entries x stages x window (seconds)."""
        return self.batch_size * len(self.stage_events) * self.duration_ticks * chip.TICK_S


@dataclass
class _Uploads:
    """Counters of what travelled to the device."""

    full_configs: int = 0
    diffs: int = 0
    changed_entries: int = 0


class Session:
    """A compiled network loaded on a device (see the module docstring).

    ``device``: any hal Backend (``firstspike.runtime.open(uri)``). ``compiled``: the artifact.
    ``duration_ticks``: fixed run window per batch entry (default: per run, latest input + ``margin_tau`` tau_s).
    ``chunk_size``: most entries per device call (default and upper bound: the device's ``max_batch``).
    ``configure``: upload the artifact's configuration now (single-stage artifacts; multi-stage ones are configured
    per run).
    """

    def __init__(
        self,
        device: Backend,
        compiled: CompiledNetwork,
        *,
        duration_ticks: int | None = None,
        margin_tau: float = DEFAULT_MARGIN_TAU,
        chunk_size: int | None = None,
        configure: bool = True,
    ) -> None:
        if not isinstance(compiled, CompiledNetwork):
            raise TypeError(f"compiled must be a compiler.CompiledNetwork, not {type(compiled).__name__}")
        self.device = device
        self.compiled = compiled
        self.info = device.info()
        cal = compiled.calibration
        if cal is not None and (cal["device_model"], cal["serial"], cal["spec_version"]) != (
                self.info.model, self.info.serial, self.info.version):
            raise SessionError(f"the network carries the calibration of {cal['device_model']} serial {cal['serial']} "
                               f"(spec {cal['spec_version']}); this device is {self.info.model} serial "
                               f"{self.info.serial} (spec {self.info.version})")
        if duration_ticks is not None and not 1 <= int(duration_ticks) <= self.info.max_duration_ticks:
            raise SessionError(f"duration_ticks {duration_ticks} not in [1, {self.info.max_duration_ticks}]"
                               " (the device's max_duration_ticks)")
        if not (math.isfinite(margin_tau) and margin_tau > 0):
            raise SessionError(f"margin_tau must be a positive number of tau_s, got {margin_tau!r}")
        max_batch = int(self.info.max_batch)
        if chunk_size is not None and int(chunk_size) < 1:
            raise SessionError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = max_batch if chunk_size is None else min(int(chunk_size), max_batch)
        self.duration_ticks = None if duration_ticks is None else int(duration_ticks)
        self.margin_tau = float(margin_tau)
        self.tau_s_ticks = float(compiled.tau_s_ticks)
        self._stage_configs: list[ChipConfig] = [s.config for s in compiled.stages]
        self._loaded: int | None = None  # index of the stage this session last brought the device to
        self._generation = -1  # the device mirror's generation just after that: unchanged = still loaded
        self.uploads = _Uploads()
        self.weights: list[np.ndarray] | None = None  # last float weights given to update_weights
        self.delays: list[np.ndarray | None] | None = None  # last float axonal delays given to update_parameters
        self._delay_window = self._window_extra(self._stage_configs)
        if configure:
            self._load_stage(0)

    # ---- configuration -------------------------------------------------------------------------------------
    @property
    def n_stages(self) -> int:
        return len(self._stage_configs)

    @property
    def stage_configs(self) -> list[ChipConfig]:
        """The current configuration of every stage (after weight updates), as copies: the device's mirror may
        hold the session's own objects, which must not change under it."""
        return [c.copy() for c in self._stage_configs]

    def _send(self, target: ChipConfig, *, built: bool = False) -> ConfigPlan:
        """Bring the device to ``target`` through its configuration mirror and count what travelled.

        The session's first upload is the whole configuration (unless the device holds it already); later
        ones are diffs against the configuration the device holds. ``built``: the session made ``target`` itself
        (valid by construction, shared with nobody, never modified), so the device may keep it without a
        validated copy; that copy was a third of a training step's upload."""
        if built:
            plan = self.device.sync(target, digest=target.digest(validate=False), owned=True,
                                    compute_diff=self._loaded is not None)
        else:
            plan = self.device.sync(target, compute_diff=self._loaded is not None)
        if plan.kind == "full":
            self.uploads.full_configs += 1
        elif plan.kind == "diff":
            self.uploads.diffs += 1
            self.uploads.changed_entries += plan.changed_entries
        self._generation = self.device.mirror.generation
        return plan

    def _load_stage(self, s: int) -> None:
        if self._loaded == s and self.device.mirror.generation == self._generation:
            return
        self._send(self._stage_configs[s])
        self._loaded = s

    def update_weights(self, weights: Sequence[Any]) -> ConfigDiff | None:
        """Re-quantise float weights (one (n_in [+1], n_out) matrix per layer, model units) with the artifact's
        fixed steps and send the change to the device. Returns the diff sent for the stage the device holds
        (empty if nothing changed; the other stages' changes travel when they are next loaded). Returns None
        if nothing is loaded yet, or if the stage had to be loaded whole. Weights beyond 63 steps clip to 63.
        The route delays stay as they are."""
        return self.update_parameters(weights)

    def update_parameters(self, weights: Sequence[Any] | None = None,
                          delays: Sequence[Any] | None = None) -> ConfigDiff | None:
        """Re-quantise float weights (as :meth:`update_weights`; None: keep) and axonal delays (one array per
        layer, model units (tau_s), shape (n_in [+1 bias],), or None for a layer without delays; codes
        ``round(d * tau_s_ticks / 8)`` clipped to 0..511; None: keep) and send only what changed, weights and
        route delays in one diff. Returns that diff as :meth:`update_weights` does."""
        new = self.compiled.update_stage_parameters(weights, delays, base=self._stage_configs)
        # copies: the caller's tensors keep changing (optimizer steps in place)
        if weights is not None:
            self.weights = [_float64(w) for w in weights]
        if delays is not None:
            self.delays = [None if d is None else _float64(d) for d in delays]
            self._delay_window = self._window_extra(new)
        self._stage_configs = new
        if self._loaded is None:
            return None
        return self._send(new[self._loaded], built=True).diff

    def _window_extra(self, configs: Sequence[ChipConfig]) -> float:
        """How much later (tau_s) the last spike can come because of the route delays: the sum over layers of
        each layer's longest delay (0 without delays, so delay-free windows are what they were)."""
        if not any(c.routing.delayed for c in configs):
            return 0.0
        return float(sum(float(d.max(initial=0.0)) for d in self.compiled.realised_delays(configs)))

    def quantized_delays(self) -> list[np.ndarray]:
        """The axonal delays the chip holds now, per layer (n_in [+1 bias],), model units (tau_s)."""
        return self.compiled.realised_delays(self._stage_configs)

    def quantized_weights(self) -> list[np.ndarray]:
        """The weights the chip realises now (``sign * d * q``), per layer, model units."""
        if self.weights is None:
            if self.compiled.source is None:
                raise SessionError("no weights known: the artifact has no source network and no update_weights yet")
            return self.compiled.quantize(self.compiled.source.weights)
        return self.compiled.quantize(self.weights)

    # ---- time conversion -----------------------------------------------------------------------------------
    def to_ticks(self, times: np.ndarray) -> np.ndarray:
        """Model times -> integer ticks (float64 array; ``inf``/NaN/negative -> NaN = no spike)."""
        t = np.asarray(times, dtype=np.float64)
        out = np.full(t.shape, np.nan)
        ok = np.isfinite(t) & (t >= 0)
        out[ok] = np.rint(t[ok] * self.tau_s_ticks)
        return out

    def tick_rounded(self, times: np.ndarray) -> np.ndarray:
        """Model times as the device sees them: rounded to whole ticks (``inf`` for no spike)."""
        ticks = self.to_ticks(times)
        return np.where(np.isnan(ticks), np.inf, ticks / self.tau_s_ticks)

    def window_for(self, latest_model_time: float) -> int:
        """Run window (ticks) for inputs ending at ``latest_model_time``: ``(latest + margin_tau) * tau_s``, plus
        the longest delay of every layer when the routes have delays."""
        if self.duration_ticks is not None:
            return self.duration_ticks
        latest = max(0.0, float(latest_model_time))
        ticks = math.ceil((latest + self.margin_tau + self._delay_window) * self.tau_s_ticks)
        return int(min(max(ticks, 1), self.info.max_duration_ticks))

    # ---- running -------------------------------------------------------------------------------------------
    def _stage_inputs(self, stage_index: int, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(times (B, k) model units, channels (k,)) of one stage: its inputs, then one bias per layer."""
        st = self.compiled.stages[stage_index]
        cols = [inputs]
        channels = [np.asarray(st.input_channels, dtype=np.int64)]
        b = inputs.shape[0]
        for k in st.layers:
            bias = self.compiled.bias_inputs[k]
            if bias is not None:
                ch, t = bias
                cols.append(np.full((b, 1), float(t)))
                channels.append(np.array([ch], dtype=np.int64))
        return np.concatenate(cols, axis=1), np.concatenate(channels)

    def run(
        self,
        input_times: np.ndarray,
        seed: int = 0,
        *,
        entry_offset: int = 0,
        record: str = "first",
        readout: Sequence[int] = (),
        readout_period: int = 8,
    ) -> SessionResult:
        """Run a batch. ``input_times``: (B, n_inputs) model units, ``inf`` (or NaN, negative) = no spike.

        ``seed``: the device's temporal-noise seed. ``entry_offset``: global index of entry 0 (so that a data set
        run in several calls sees the same noise as one call). ``record``/``readout``/``readout_period``: as in
        :class:`hal.RunOptions` (readout applies to stage 0). Returns per-layer first spike times in model units.
        """
        x = np.asarray(input_times, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.compiled.n_inputs:
            raise SessionError(f"input_times must have shape (batch, {self.compiled.n_inputs}), got {x.shape}")
        x = self.tick_rounded(x)
        n_batch = x.shape[0]
        layer_times: list[np.ndarray | None] = [None] * len(self.compiled.layers)
        stage_events: list[SpikeEvents] = []
        stats: dict[str, int] = {}
        dropped = 0
        membrane = None
        chunks = 0
        duration = None
        stage_in = x
        for st in self.compiled.stages:
            times, channels = self._stage_inputs(st.index, stage_in)
            finite = times[np.isfinite(times)]
            if duration is None:
                duration = self.window_for(float(finite.max()) if finite.size else 0.0)
            self._load_stage(st.index)
            opts = RunOptions(duration_ticks=duration, record=record, seed=int(seed),  # type: ignore[arg-type]
                              readout=tuple(int(n) for n in readout) if st.index == 0 else (),
                              readout_period=int(readout_period))
            res, n_chunks = self._run_chunked(self.to_ticks(times), channels, opts, int(entry_offset))
            chunks += n_chunks
            stage_events.append(res.spikes)
            dropped += int(res.dropped)
            for k, v in res.stats.items():
                stats[k] = stats.get(k, 0) + int(v)
            if st.index == 0:
                membrane = res.membrane
            # every layer of the stage in one pass over the recorded spikes, then split by layer
            ids = [self.compiled.layers[layer].neuron_ids for layer in st.layers]
            stage_times = res.spikes.first_spike_model_times(np.concatenate(ids), self.tau_s_ticks)
            ends = np.cumsum([len(i) for i in ids])
            for layer, end, n in zip(st.layers, ends, (len(i) for i in ids), strict=True):
                layer_times[layer] = np.ascontiguousarray(stage_times[:, end - n : end])
            # next stage replays the recorded spikes of this stage's last layer
            stage_in = layer_times[st.layers[-1]]  # type: ignore[assignment]
        if n_batch == 0:
            duration = duration or 1
        return SessionResult(
            layer_times=[t if t is not None else np.full((n_batch, 0), np.inf) for t in layer_times],
            stage_events=tuple(stage_events),
            stats=stats,
            dropped=dropped,
            duration_ticks=int(duration or 1),
            tau_s_ticks=self.tau_s_ticks,
            input_times=x,
            membrane=membrane,
            chunks=chunks,
        )

    def _run_chunked(
        self, ticks: np.ndarray, channels: np.ndarray, options: RunOptions, entry_offset: int
    ) -> tuple[RunResult, int]:
        """Run (B, k) tick times in chunks of <= chunk_size entries with the right entry offsets; join."""
        n_batch = ticks.shape[0]
        parts: list[RunResult] = []
        for start in range(0, max(n_batch, 1), self.chunk_size):
            chunk = ticks[start : start + self.chunk_size]
            spikes = InputSpikes.from_times(chunk, channels)
            opts = replace(options, entry_offset=entry_offset + start)
            parts.append(self.device.run(spikes, opts))
        if len(parts) == 1:
            return parts[0], 1
        return RunResult.concatenate(parts), len(parts)

    def close(self) -> None:
        """Close the device."""
        self.device.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

