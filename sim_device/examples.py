"""Hand-mapped layered TTFS networks and random configurations for benchmarks, tests and demos (``hal`` only).

:func:`map_layered` places a feed-forward network given in model units (tau_m = tau_s, theta - E_l = 1) onto
a :class:`ChipConfig` with one fixed scale: every neuron gets the same leak/threshold/reset/gain/tau codes,
so one digital weight step is ``gain / 64 / (threshold - leak)`` model units. A layer whose neurons have at most
128 sources sits in one half; a larger one (up to 256 sources) uses merged columns (both halves). Layers share
rows: each source of layer ``l`` gets an excitatory and an inhibitory row, and the synapses of layer ``l`` carry
the address ``l + 1``; optional per-source delay codes go on both routes of the source (axonal delays). This is a
simple placer for known shapes, not the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firstspike.hal import chip
from firstspike.hal.config import ChipConfig, RowMode, SourceKind
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes


@dataclass(frozen=True)
class Scale:
    """The digital codes every mapped neuron uses."""

    leak: int = 300
    threshold: int = 500
    reset: int = 0
    gain: int = 640
    tau_code: int = 188
    refractory: int = 255

    @property
    def weight_step(self) -> float:
        """Model weight units of one digital weight step."""
        return self.gain / 64 / (self.threshold - self.leak)


@dataclass
class MappedNetwork:
    """A network on the chip: its config, where its inputs enter and which neuron ids are its layers.

    ``weights[l]`` are the realised (quantised, signed) weights in model units, shape (sources, neurons); the
    sources of layer ``l`` are the previous layer's neurons (or the inputs) followed by its bias channels.
    """

    config: ChipConfig
    scale: Scale
    input_channels: np.ndarray
    bias_channels: list[np.ndarray]
    neurons: list[np.ndarray]
    weights: list[np.ndarray] = field(default_factory=list)


class _Columns:
    def __init__(self) -> None:
        self.free = [0, 0]  # next free column per half

    def take(self, n: int, merged: bool) -> tuple[int, np.ndarray]:
        if merged:
            start = max(self.free)
            if start + n > chip.COLUMNS_PER_HALF:
                raise ValueError(f"no room for {n} merged columns (from column {start})")
            self.free = [start + n, start + n]
            return 0, np.arange(start, start + n)
        half = int(np.argmin(self.free))
        start = self.free[half]
        if start + n > chip.COLUMNS_PER_HALF:
            raise ValueError(f"no room for {n} columns in half {half} (from column {start})")
        self.free[half] = start + n
        return half, np.arange(start, start + n)


def map_layered(
    weights: list[np.ndarray],
    scale: Scale | None = None,
    bias_per_layer: list[int] | None = None,
    first_input_channel: int = 0,
    delays: list[np.ndarray | None] | None = None,
) -> MappedNetwork:
    """Map layers ``weights[l]`` (sources x neurons, model units, bias sources as the last rows) to a chip.

    ``bias_per_layer[l]`` of layer ``l``'s source rows are bias spikes on their own input channels (numbered
    after the data inputs). ``delays[l]``: the delay code (x 8 ticks) of each of layer ``l``'s sources, on both
    of its routes (None: no delays). Raises ValueError when the network does not fit this simple layout.
    """
    scale = scale or Scale()
    bias = bias_per_layer or [0] * len(weights)
    cfg = ChipConfig()
    cols = _Columns()
    n_in = weights[0].shape[0] - bias[0]
    input_channels = np.arange(first_input_channel, first_input_channel + n_in)
    next_channel = first_input_channel + n_in
    prev_sources: list[tuple[int, int]] = [(SourceKind.INPUT, int(c)) for c in input_channels]
    out = MappedNetwork(cfg, scale, input_channels, [], [])
    for layer, w in enumerate(weights):
        bias_ch = np.arange(next_channel, next_channel + bias[layer])
        next_channel += bias[layer]
        out.bias_channels.append(bias_ch)
        sources = prev_sources + [(SourceKind.INPUT, int(c)) for c in bias_ch]
        if w.shape[0] != len(sources):
            raise ValueError(f"layer {layer}: weights have {w.shape[0]} source rows, expected {len(sources)}")
        n = w.shape[1]
        merged = len(sources) > chip.MAX_SIGNED_INPUTS_PER_HALF
        if len(sources) > 2 * chip.MAX_SIGNED_INPUTS_PER_HALF:
            raise ValueError(f"layer {layer}: {len(sources)} sources exceed 256")
        half0, columns = cols.take(n, merged)
        ids = columns + half0 * chip.COLUMNS_PER_HALF
        phys = np.concatenate([columns, columns + chip.COLUMNS_PER_HALF]) if merged else ids
        cfg.neurons.set(
            phys, leak=scale.leak, threshold=scale.threshold, reset=scale.reset, tau_mem=scale.tau_code,
            tau_syn_exc=scale.tau_code, tau_syn_inh=scale.tau_code, refractory=scale.refractory,
            gain_exc=scale.gain, gain_inh=scale.gain, enabled=1,
        )
        if merged:
            cfg.neurons.merged_columns[columns] = True
        digital = np.clip(np.rint(np.abs(w) / scale.weight_step), 0, chip.WEIGHT_MAX).astype(np.uint8)
        addr = layer + 1
        used_pairs = [0, 0]
        codes = None if delays is None else delays[layer]
        for s, (kind, src) in enumerate(sources):
            half = s % 2 if merged else half0
            pair = used_pairs[half]
            used_pairs[half] += 1
            exc, inh = 2 * pair, 2 * pair + 1
            d = 0 if codes is None else int(codes[s])
            cfg.routing.add(kind, src, half, exc, addr, d)
            cfg.routing.add(kind, src, half, inh, addr, d)
            cfg.row_modes[half, exc] = RowMode.EXCITATORY
            cfg.row_modes[half, inh] = RowMode.INHIBITORY
            positive = w[s] >= 0
            cfg.synapses.weights[half, exc, columns] = np.where(positive, digital[s], 0)
            cfg.synapses.weights[half, inh, columns] = np.where(positive, 0, digital[s])
            cfg.synapses.labels[half, exc, columns] = addr
            cfg.synapses.labels[half, inh, columns] = addr
        out.neurons.append(ids)
        out.weights.append(np.where(w >= 0, 1.0, -1.0) * digital * scale.weight_step)
        prev_sources = [(SourceKind.NEURON, int(i)) for i in ids]
    cfg.validate()
    return out


def random_layered(
    rng: np.random.Generator,
    sizes: list[int],
    means: list[float],
    stds: list[float],
    bias_per_layer: list[int] | None = None,
    scale: Scale | None = None,
) -> MappedNetwork:
    """A random network ``sizes[0] -> ... -> sizes[-1]`` with weights N(mean, std) per layer (model units)."""
    bias = bias_per_layer or [0] * (len(sizes) - 1)
    ws = [
        rng.normal(means[k], stds[k], size=(sizes[k] + bias[k], sizes[k + 1])) for k in range(len(sizes) - 1)
    ]
    return map_layered(ws, scale, bias)


def yinyang_inputs(rng: np.random.Generator, batch: int) -> np.ndarray:
    """(batch, 5) yin-yang-like input times in model units: (x, y, 1-x, 1-y) -> 0.15 + v 1.85, bias at 0.9."""
    xy = rng.random((batch, 2))
    v = np.concatenate([xy, 1 - xy], axis=1)
    return np.concatenate([0.15 + v * 1.85, np.full((batch, 1), 0.9)], axis=1)


def mnist_like_inputs(rng: np.random.Generator, batch: int, n: int = 256, active: float = 0.35) -> np.ndarray:
    """(batch, n) MNIST16-like input times: a fraction ``active`` of pixels at 0.15 + v 1.85, the rest silent."""
    t = 0.15 + rng.random((batch, n)) * 1.85
    t[rng.random((batch, n)) >= active] = np.inf
    return t


def yinyang_network(rng: np.random.Generator, scale: Scale | None = None) -> MappedNetwork:
    """4+1 -> 120+1 -> 3 with the reference initialisation (means 1.5, 0.5; std 0.8)."""
    return random_layered(rng, [4, 120, 3], [1.5, 0.5], [0.8, 0.8], [1, 1], scale)


def mnist16_network(rng: np.random.Generator, scale: Scale | None = None) -> MappedNetwork:
    """256 -> 246 -> 10 with the reference initialisation (means 0.1, 0.6; std 0.4, 0.8)."""
    return random_layered(rng, [256, 246, 10], [0.1, 0.6], [0.4, 0.8], None, scale)


#: delay codes :func:`random_config` draws from (x 8 ticks): none, a tick-level spread, whole update periods (8
#: codes = 64 ticks), and delays past the end of a short run
FUZZ_DELAY_CODES = (0, 0, 0, 1, 2, 3, 7, 8, 16, 31, 64, 150, 511)


def random_config(
    rng: np.random.Generator, n_neurons: int = 8, n_channels: int = 4, recurrent: bool = True,
    delays: bool = False,
) -> ChipConfig:
    """A small random configuration for fuzzing: random neuron codes (some disabled, some merged), random
    routes from input channels (and from the neurons themselves if ``recurrent``), row modes, weights and
    labels drawn from a few values so that labels often match; with ``delays``, every route gets a delay code
    drawn from :data:`FUZZ_DELAY_CODES` (a source's routes often differ). Valid by construction."""
    cfg = ChipConfig()
    cols = rng.choice(chip.COLUMNS_PER_HALF, size=n_neurons, replace=False)
    halves = rng.integers(0, 2, size=n_neurons)
    ids = halves * chip.COLUMNS_PER_HALF + cols
    leak = rng.integers(200, 400, size=n_neurons)
    cfg.neurons.set(
        ids,
        leak=leak,
        threshold=np.clip(leak + rng.integers(-20, 300, size=n_neurons), 0, chip.PARAM_MAX),
        reset=np.clip(leak + rng.integers(-300, 50, size=n_neurons), 0, chip.PARAM_MAX),
        tau_mem=rng.integers(20, 300, size=n_neurons),
        tau_syn_exc=rng.integers(20, 300, size=n_neurons),
        tau_syn_inh=rng.integers(20, 300, size=n_neurons),
        refractory=rng.choice([0, 0, 5, 40, 255], size=n_neurons),
        gain_exc=rng.integers(0, 1023, size=n_neurons),
        gain_inh=rng.integers(0, 1023, size=n_neurons),
        enabled=(rng.random(n_neurons) < 0.9).astype(np.int64),
    )
    # merge a few columns: their other-half neuron joins (it may or may not have been configured)
    merge = cols[rng.random(n_neurons) < 0.2]
    cfg.neurons.merged_columns[merge] = True
    rows = rng.choice(chip.ROWS_PER_HALF, size=12, replace=False)
    for half in range(chip.N_HALVES):
        cfg.row_modes[half, rows] = rng.integers(0, 3, size=len(rows))
        lab = rng.integers(0, 3, size=(len(rows), chip.COLUMNS_PER_HALF))
        w = rng.integers(0, chip.WEIGHT_MAX + 1, size=(len(rows), chip.COLUMNS_PER_HALF))
        w[rng.random(w.shape) < 0.3] = 0
        cfg.synapses.labels[half][rows] = lab
        cfg.synapses.weights[half][rows] = w
    sources = [(SourceKind.INPUT, c) for c in range(n_channels)]
    if recurrent:  # neuron outputs routed back into the arrays: loops and self-loops are likely
        sources += [(SourceKind.NEURON, int(n)) for n in ids]
    for kind, src in sources:
        for _ in range(int(rng.integers(1, 3))):
            cfg.routing.add(kind, src, int(rng.integers(0, 2)), int(rng.choice(rows)), int(rng.integers(0, 3)))
    if delays:  # drawn last, so that the rest of a seed's configuration is the one without delays
        cfg.routing = cfg.routing.with_delays(rng.choice(FUZZ_DELAY_CODES, size=len(cfg.routing)))
    return cfg


def random_inputs(
    rng: np.random.Generator, batch: int, n_channels: int, duration: int, per_entry: int = 6
) -> InputSpikes:
    """Random input spikes: ``per_entry`` events per entry on channels 0..n_channels-1 within the run."""
    n = batch * per_entry
    ev = np.empty(n, dtype=SPIKE_DTYPE)
    ev["batch"] = np.repeat(np.arange(batch), per_entry)
    ev["time"] = rng.integers(0, duration, size=n)
    ev["label"] = rng.integers(0, n_channels, size=n)
    return InputSpikes(ev, batch)
