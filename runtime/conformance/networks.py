"""Hand-built chip configurations for the conformance suite (``hal`` only: no compiler, no simulator).

Every network uses one "standard" neuron setting, chosen from the nominal calibration
(:mod:`firstspike.hal.calibration`) so that one digital weight step is 0.1 model weight units:

* leak = reset = 300 LSB, threshold = 400 LSB (span 100 LSB = 1 model unit of voltage);
* gain_exc = gain_inh = 640, so an event through a synapse of weight ``d`` makes the synaptic current jump
  by ``d * 640 / 64 = 10 d`` LSB = ``0.1 d`` model units;
* tau_mem = tau_syn = code 188 (752 ticks nominal), refractory 0.

A weight-63 synapse (6.3 model units) then fires its neuron about 0.19 tau (~140 ticks) after the input,
with the membrane peaking at 2.3x the threshold span: robust against analog mismatch. The probes below
use such clear-cut cases; the reference networks use random weights and are compared to the reference
device within tolerances (see :mod:`firstspike.runtime.conformance.tolerance`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firstspike.hal import chip
from firstspike.hal.backend import RunOptions
from firstspike.hal.config import ChipConfig, RowMode, SourceKind
from firstspike.hal.events import InputSpikes

LEAK = 300
THRESHOLD = 400
RESET = 300
GAIN = 640
TAU_CODE = 188  # 752 ticks nominal
TAU_TICKS = 752
STRONG = 63  # digital weight that fires a standard neuron on its own
DURATION = 6000  # ticks per entry for most checks (8 tau)


@dataclass
class Case:
    """A configuration, the inputs to run on it, run options and the neurons whose spikes matter."""

    name: str
    config: ChipConfig
    inputs: InputSpikes
    options: RunOptions
    neurons: np.ndarray  # observed neuron ids (0..511)


def standard_neurons(cfg: ChipConfig, ids: list[int] | np.ndarray, **overrides: int) -> None:
    """Enable neurons ``ids`` with the standard parameters (``overrides`` replace single fields)."""
    params: dict[str, int] = {
        "leak": LEAK,
        "threshold": THRESHOLD,
        "reset": RESET,
        "tau_mem": TAU_CODE,
        "tau_syn_exc": TAU_CODE,
        "tau_syn_inh": TAU_CODE,
        "refractory": 0,
        "gain_exc": GAIN,
        "gain_inh": GAIN,
        "enabled": 1,
    }
    params.update(overrides)
    cfg.neurons.set(np.asarray(ids, dtype=np.int64), **params)


def route(cfg: ChipConfig, kind: int, source: int, half: int, row: int, address: int, mode: RowMode) -> None:
    """Route an event source to ``row`` of ``half`` with ``address`` and set that row's mode."""
    cfg.routing.add(int(kind), int(source), int(half), int(row), int(address))
    cfg.row_modes[half, row] = int(mode)


def synapse(cfg: ChipConfig, half: int, row: int, column: int, weight: int, label: int) -> None:
    """Set one synapse's 6-bit weight and label."""
    cfg.synapses.weights[half, row, column] = weight
    cfg.synapses.labels[half, row, column] = label


# ---- probes: small, clear-cut configurations for the semantic checks ------------------------------------

#: probe neurons (half 0, columns 0..3) and the weights that drive them from input channels 0..3
PROBE_NEURONS = np.array([0, 1, 2, 3])
PROBE_WEIGHTS = (63, 55, 47, 40)
#: a sub-threshold neuron: two inputs within ~tau fire it, one alone does not (detects carried-over state)
PAIR_NEURON = 4
PAIR_CHANNEL = 4
PAIR_WEIGHT = 22  # 2.2 model units: one input peaks at 0.81 of the span, two coincident ones at 1.6


def probe_config() -> ChipConfig:
    """Neurons 0..3 each driven by input channel 0..3 (weights 63, 55, 47, 40) and neuron 4 by channel 4
    with a sub-threshold weight; all on excitatory rows 0..4 of half 0."""
    cfg = ChipConfig()
    standard_neurons(cfg, [*PROBE_NEURONS.tolist(), PAIR_NEURON])
    for ch, w in enumerate(PROBE_WEIGHTS):
        route(cfg, SourceKind.INPUT, ch, 0, ch, ch + 1, RowMode.EXCITATORY)
        synapse(cfg, 0, ch, ch, w, ch + 1)
    route(cfg, SourceKind.INPUT, PAIR_CHANNEL, 0, PAIR_CHANNEL, 7, RowMode.EXCITATORY)
    synapse(cfg, 0, PAIR_CHANNEL, PAIR_NEURON, PAIR_WEIGHT, 7)
    return cfg


def probe_inputs(times: list[float | None], pair_times: list[list[float]] | None = None) -> InputSpikes:
    """One batch entry per element of ``times``: channels 0..3 all spike at that tick (None = no input).

    ``pair_times[b]`` lists extra spikes of the sub-threshold channel 4 in entry ``b``.
    """
    rows: list[tuple[int, float, int]] = []
    for b, t in enumerate(times):
        if t is not None:
            rows.extend((b, float(t), ch) for ch in range(len(PROBE_WEIGHTS)))
        for tp in pair_times[b] if pair_times else []:
            rows.append((b, float(tp), PAIR_CHANNEL))
    return _events(rows, len(times))


def _events(rows: list[tuple[int, float, int]], batch: int) -> InputSpikes:
    from firstspike.hal.events import SPIKE_DTYPE

    ev = np.empty(len(rows), dtype=SPIKE_DTYPE)
    for i, (b, t, ch) in enumerate(rows):
        ev[i] = (b, round(t), ch)
    return InputSpikes(ev, batch)


def probe_case(batch: int = 8, t0: int = 100, step: int = 37) -> Case:
    """The probe configuration with inputs at ``t0 + b * step`` in entry ``b`` (sub-threshold pair
    channel too, once per entry), observed on neurons 0..4."""
    times: list[float | None] = [float(t0 + b * step) for b in range(batch)]
    pairs = [[float(t0 + b * step)] for b in range(batch)]
    return Case(
        "probe",
        probe_config(),
        probe_inputs(times, pairs),
        RunOptions(duration_ticks=3000, record="first"),
        np.array([*PROBE_NEURONS.tolist(), PAIR_NEURON]),
    )


# ---- routing and sign probe --------------------------------------------------------------------------

#: neuron -> what must happen in :func:`routing_config` (True: fires)
ROUTING_EXPECT = {
    20: True,  # input ch 10 -> half 0 row 20 (excitatory, address 5) -> synapse label 5, weight 63
    21: False,  # input ch 11 -> half 0 row 21 (INHIBITORY, address 6) -> weight 63: inhibition never fires
    22: False,  # the excitatory input of 20 plus an equal inhibitory one at the same time: cancels
    23: False,  # on row 20 but the synapse's label (7) differs from the routed address (5)
    24: False,  # on row 20 with label 5 and weight 63 but the neuron is disabled
    25: False,  # input ch 12 -> half 0 row 25 whose mode is OFF
    256 + 20: False,  # half 1, row 20, label 5, weight 63: the input is routed to half 0 only
    256 + 40: True,  # neuron 20's OUTPUT -> half 1 row 30 (excitatory, address 9): fires after 20
}
ROUTING_INPUT_TICK = 200


def routing_config() -> ChipConfig:
    """Routing, row sign, labels, enable and half isolation in one configuration (see ROUTING_EXPECT)."""
    cfg = ChipConfig()
    standard_neurons(cfg, [20, 21, 22, 23, 25, 256 + 20, 256 + 40])
    standard_neurons(cfg, [24], enabled=0)
    route(cfg, SourceKind.INPUT, 10, 0, 20, 5, RowMode.EXCITATORY)
    route(cfg, SourceKind.INPUT, 11, 0, 21, 6, RowMode.INHIBITORY)
    route(cfg, SourceKind.INPUT, 12, 0, 25, 8, RowMode.OFF)
    for col in (20, 22, 24):
        synapse(cfg, 0, 20, col, STRONG, 5)
    synapse(cfg, 0, 20, 23, STRONG, 7)
    synapse(cfg, 0, 21, 21, STRONG, 6)
    synapse(cfg, 0, 21, 22, STRONG, 6)
    synapse(cfg, 0, 25, 25, STRONG, 8)
    synapse(cfg, 1, 20, 20, STRONG, 5)  # the other half's row 20: never reached
    route(cfg, SourceKind.NEURON, 20, 1, 30, 9, RowMode.EXCITATORY)
    synapse(cfg, 1, 30, 40, STRONG, 9)
    return cfg


def routing_case(batch: int = 2) -> Case:
    """:func:`routing_config` with input channels 10, 11 and 12 spiking at tick 200 in every entry."""
    rows = [(b, float(ROUTING_INPUT_TICK), ch) for b in range(batch) for ch in (10, 11, 12)]
    return Case(
        "routing",
        routing_config(),
        _events(rows, batch),
        RunOptions(duration_ticks=3000, record="all"),
        np.arange(chip.N_NEURONS),
    )


#: merged column used by :func:`merged_probe_config`
MERGED_COLUMN = 50


def merged_probe_config() -> ChipConfig:
    """Column 50 merged: input ch 13 reaches only half 1 (row 40); the logical neuron must spike as 50."""
    cfg = ChipConfig()
    standard_neurons(cfg, [MERGED_COLUMN, 256 + MERGED_COLUMN])
    cfg.neurons.merged_columns[MERGED_COLUMN] = True
    route(cfg, SourceKind.INPUT, 13, 1, 40, 10, RowMode.EXCITATORY)
    synapse(cfg, 1, 40, MERGED_COLUMN, STRONG, 10)
    return cfg


# ---- multi-spike probe (first vs all) --------------------------------------------------------------------


def burst_case(batch: int = 4) -> Case:
    """Neuron 0 driven by four strong inputs 300 ticks apart: it fires several times (refractory 0)."""
    cfg = probe_config()
    rows: list[tuple[int, float, int]] = []
    for b in range(batch):
        for k in range(4):
            rows.extend((b, float(100 + 50 * b + 300 * k), ch) for ch in range(len(PROBE_WEIGHTS)))
    return Case("burst", cfg, _events(rows, batch), RunOptions(duration_ticks=4000, record="all"), PROBE_NEURONS.copy())


# ---- reference networks (compared with the reference device) ---------------------------------------------


def _signed_layer(
    cfg: ChipConfig,
    rng: np.random.Generator,
    sources: list[tuple[int, int]],
    half: int,
    first_row: int,
    columns: list[int],
    mean: float,
    std: float,
) -> int:
    """Connect every source (kind, id) to every column of ``half`` with a random signed weight in model
    units (N(mean, std), 0.1 model per digital step); each source gets an excitatory and an inhibitory
    row, address = 1 + index. Returns the next free row."""
    row = first_row
    for i, (kind, src) in enumerate(sources):
        addr = 1 + (i % (chip.N_LABELS - 1))
        route(cfg, kind, src, half, row, addr, RowMode.EXCITATORY)
        route(cfg, kind, src, half, row + 1, addr, RowMode.INHIBITORY)
        w = rng.normal(mean, std, size=len(columns))
        d = np.clip(np.rint(np.abs(w) * 10), 0, chip.WEIGHT_MAX).astype(np.uint8)
        for col, dig, sign in zip(columns, d, w >= 0, strict=True):
            synapse(cfg, half, row if sign else row + 1, col, int(dig), addr)
        row += 2
    return row


def _yinyang_like_times(rng: np.random.Generator, batch: int) -> np.ndarray:
    """(batch, 5) input times in ticks: (x, y, 1-x, 1-y) -> 0.15 + v * 1.85 tau, and a bias at 0.9 tau."""
    xy = rng.random((batch, 2))
    v = np.concatenate([xy, 1 - xy], axis=1)
    t = 0.15 + v * 1.85
    t = np.concatenate([t, np.full((batch, 1), 0.9)], axis=1)
    return t * TAU_TICKS


def yinyang_like_case(seed: int = 1, batch: int = 12) -> Case:
    """A 4+1 -> 16 -> 3 network: inputs 0..4 -> hidden half 0 columns 0..15 -> outputs half 1 columns 0..2
    (hidden outputs cross halves through the routing crossbar). Random weights, hidden N(1.0, 1.0) and
    output N(0.3, 0.8) model units, and the longest refractory period (2040 ticks: each neuron fires once,
    as in TTFS), so that about 90 % of the hidden and 2/3 of the output neurons fire."""
    rng = np.random.default_rng(seed)
    cfg = ChipConfig()
    hidden = list(range(16))
    outputs = [256 + c for c in range(3)]
    standard_neurons(cfg, hidden + outputs, refractory=chip.REFRACTORY_MAX)
    _signed_layer(cfg, rng, [(SourceKind.INPUT, ch) for ch in range(5)], 0, 0, hidden, 1.0, 1.0)
    _signed_layer(cfg, rng, [(SourceKind.NEURON, n) for n in hidden], 1, 0, [0, 1, 2], 0.3, 0.8)
    inputs = InputSpikes.from_times(_yinyang_like_times(rng, batch))
    return Case(
        "yinyang_like_4+1-16-3",
        cfg,
        inputs,
        RunOptions(duration_ticks=DURATION, record="first", seed=seed),
        np.array(hidden + outputs),
    )


def merged_case(seed: int = 2, batch: int = 12) -> Case:
    """Six merged columns (200..205) fed by 6 inputs on half 0 and 6 other inputs on half 1; the logical
    neurons have tau_mem = 2 tau_syn. Outputs are reported as the half-0 neurons."""
    rng = np.random.default_rng(seed)
    cfg = ChipConfig()
    cols = list(range(200, 206))
    standard_neurons(cfg, cols + [256 + c for c in cols], tau_mem=2 * TAU_CODE)
    cfg.neurons.merged_columns[cols] = True
    _signed_layer(cfg, rng, [(SourceKind.INPUT, ch) for ch in range(6)], 0, 100, cols, 0.7, 0.9)
    _signed_layer(cfg, rng, [(SourceKind.INPUT, ch) for ch in range(6, 12)], 1, 100, cols, 0.7, 0.9)
    t = (0.1 + rng.random((batch, 12)) * 2.0) * TAU_TICKS
    t[rng.random((batch, 12)) < 0.15] = np.nan  # some inputs stay silent
    return Case(
        "merged_columns_12-6",
        cfg,
        InputSpikes.from_times(t),
        RunOptions(duration_ticks=DURATION, record="first", seed=seed),
        np.array(cols + [256 + c for c in cols]),
    )


def reference_cases() -> list[Case]:
    """The reference networks every non-mock backend must reproduce within its tolerance."""
    return [yinyang_like_case(), merged_case()]
