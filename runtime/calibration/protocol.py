"""The calibration's stimuli: chip configurations and input spike trains, all 512 neurons measured at once.

Three experiments, each a configuration with every neuron enabled and unconnected from the others, stated in
*nominal* codes (what the compiler would write) and mapped through the calibration known so far (the identity in
the first round, so the first round measures the raw chip; later rounds measure the calibrated one):

* **membrane** (no input at all): the leak lies *above* the threshold (``threshold = leak - x``), so each neuron
  spikes at tick 1, resets to ``leak - y`` and relaxes back, spiking again after ``tau_m ln(y/x)``. The
  interspike intervals of several ``(x, y, tau_mem)`` settings give tau_m and the threshold's and reset's
  offsets relative to the leak; with membrane readout the relaxation trace also gives the absolute leak.
* **inhibitory**: same regime, a fast membrane (tau code 1) and ``k`` events at once on one inhibitory row: the
  membrane follows ``-k J exp(-t/tau_i)`` and spikes when it has relaxed to ``-x``, at ``tau_i ln(k J / x)``
  after the input; a slope in ``ln k`` (tau_i) and an intercept per row (J: the inhibitory gain). The neuron's
  spike at tick 1 is held refractory past the input, so the measured spike is the first after the release.
* **excitatory**: threshold ``theta`` above the leak, a slow membrane (tau code 1022, a near-integrator, where the
  crossing time depends most on tau_e) and ``k`` events on one excitatory row: the first spike is where
  ``k J K(t) = theta``; per row the ratios between the ``k`` fix tau_e, the level fixes J.

Rows: ``ROWS`` rows per half carry the synaptic experiments (the same row in both halves); row ``r`` is driven by
input channels ``r * MAX_EVENTS .. r * MAX_EVENTS + k - 1`` (all events at one tick on one synapse: the jump is
exactly ``k`` times one event's), and every entry of a batch uses one row and one ``k``. Averaging the gain over
the rows averages over the synapses' own mismatch, which no neuron code can correct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from firstspike.hal import chip
from firstspike.hal.calibration import REFRACTORY_TICKS_PER_CODE, TAU_TICKS_PER_CODE
from firstspike.hal.config import ChipConfig, Routing, RowMode
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes
from firstspike.hal.neuron_calibration import NeuronCalibration

__all__ = [
    "ADDRESS",
    "EXCITATORY",
    "INHIBITORY",
    "MAX_EVENTS",
    "MEMBRANE",
    "ROWS",
    "SYNAPSES",
    "MembraneSetting",
    "SynapseExperiment",
    "SynapticExperiment",
    "empty_inputs",
    "membrane_config",
    "synapse_config",
    "synapse_inputs",
    "synaptic_config",
    "synaptic_inputs",
]

ROWS = 64  # rows per half used by the synaptic experiments
MAX_EVENTS = chip.N_INPUT_CHANNELS // ROWS  # 16 input channels per row
ADDRESS = 1  # the label of every stimulus synapse and route
TAU_CODE = 188  # the time-constant code of the targets (752 ticks nominal, the compiler's default)
SLOW_TAU_CODE = 900  # a near-integrator membrane for the excitatory experiment (3600 ticks nominal)
FAST_TAU_CODE = 1  # a membrane that follows its current within a few ticks (4 ticks nominal)
INPUT_TICK = 50  # synaptic stimuli arrive here (input jitter is clipped at tick 0; 50 keeps it symmetric)


@dataclass(frozen=True)
class MembraneSetting:
    """One setting of the membrane experiment (nominal codes): leak ``leak``, threshold ``leak - x``, reset
    ``leak - y`` (LSB), membrane time constant code ``tau_mem``."""

    leak: int
    x: int
    y: int
    tau_mem: int

    @property
    def interval_ticks(self) -> float:
        """The nominal interspike interval ``tau_m ln(y/x)`` (ticks)."""
        return self.tau_mem * TAU_TICKS_PER_CODE * math.log(self.y / self.x)

    @property
    def duration_ticks(self) -> int:
        """Run length: the spike at tick 1 and the next one, with 35 % margin for mismatch."""
        return math.ceil(1.35 * self.interval_ticks) + 16


#: The membrane experiment: four settings at the target tau share tau_m; the fifth measures the slow membrane the
#: excitatory experiment uses. x in 30..120 LSB: large enough that the 1-LSB threshold noise costs little,
#: small enough to leave a long interval.
MEMBRANE: tuple[MembraneSetting, ...] = (
    MembraneSetting(600, 30, 500, TAU_CODE),
    MembraneSetting(600, 120, 500, TAU_CODE),
    MembraneSetting(600, 30, 250, TAU_CODE),
    MembraneSetting(600, 60, 350, TAU_CODE),
    MembraneSetting(600, 100, 250, SLOW_TAU_CODE),
)


@dataclass(frozen=True)
class SynapticExperiment:
    """The inhibitory or excitatory experiment (nominal codes; see the module docstring).

    ``level``: ``x`` (inhibitory: threshold ``leak - x``) or ``theta`` (excitatory: threshold ``leak + theta``),
    LSB. ``weight``/``gain``: the stimulus synapses' weight code and the neurons' gain code (one event's jump is
    ``weight * gain / 64`` LSB nominal). ``ks``: events per entry; each of ``ROWS`` rows gets every ``k``,
    ``repeats`` times. ``tau_mem``: the membrane's code; ``refractory``: code.
    """

    inhibitory: bool
    leak: int
    level: int
    reset: int
    tau_mem: int
    weight: int
    gain: int
    ks: tuple[int, ...]
    repeats: int
    refractory: int
    duration_ticks: int

    @property
    def threshold(self) -> int:
        return self.leak - self.level if self.inhibitory else self.leak + self.level

    @property
    def jump_lsb(self) -> float:
        """Nominal current jump of one event (LSB)."""
        return self.weight * self.gain / 64.0

    @property
    def tau_name(self) -> str:
        """The time-constant code this experiment measures."""
        return "tau_syn_inh" if self.inhibitory else "tau_syn_exc"

    @property
    def gain_name(self) -> str:
        return "gain_inh" if self.inhibitory else "gain_exc"

    @property
    def release_ticks(self) -> int:
        """Refractory period (ticks): the inhibitory experiment's spike at tick 1 is released at 1 + this."""
        return self.refractory * REFRACTORY_TICKS_PER_CODE

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, k) of every batch entry: rows x ks x repeats, row-major."""
        rows = np.repeat(np.arange(ROWS), len(self.ks) * self.repeats)
        ks = np.tile(np.repeat(np.asarray(self.ks), self.repeats), ROWS)
        return rows.astype(np.int64), ks.astype(np.int64)


#: k J / x from 1.9 to 5.2 (crossings 0.6 .. 1.6 tau_i after the input). The spike at tick 1 holds the membrane at
#: its reset until tick 241, 190 ticks after the input: by then the largest current has decayed below ~830 LSB (with
#: +20 % mismatch), so the membrane stays above 0 V (the leak is at 980) and is released well before the first
#: crossing.
INHIBITORY = SynapticExperiment(inhibitory=True, leak=980, level=170, reset=580, tau_mem=FAST_TAU_CODE, weight=8,
                                gain=504, ks=(5, 7, 10, 14), repeats=1, refractory=30, duration_ticks=2000)
#: k J / theta = 8.5 .. 12.4 on a near-integrator (tau_m ~ 4.8 tau_e, kernel peak 1/7.24): crossings at about
#: 0.5 .. 1.0 tau_e after the input, late enough that the input jitter (2 ticks per event, common to all neurons of
#: an entry) costs little, and 17 % above the smallest amplitude that crosses at all.
EXCITATORY = SynapticExperiment(inhibitory=False, leak=300, level=400, reset=300, tau_mem=SLOW_TAU_CODE, weight=22,
                                gain=900, ks=(11, 13, 16), repeats=2, refractory=255, duration_ticks=1700)


@dataclass(frozen=True)
class SynapseExperiment:
    """The per-synapse experiment (nominal codes): every row of both halves excitatory with weight ``weight``,
    row ``r`` driven by input channels ``r * events .. r * events + events - 1`` (``events`` = 1024 / 256 = 4), so
    one configuration reaches all 131 072 synapses. Entry ``b`` fires the ``events`` channels of one row at
    ``INPUT_TICK``: every neuron of both halves then sees ``events`` jumps through its own synapse of that row and
    crosses ``threshold = leak + level`` on a near-integrator membrane. ``repeats`` entries per row."""

    leak: int
    level: int
    tau_mem: int
    weight: int
    gain: int
    events: int
    repeats: int
    duration_ticks: int

    @property
    def jump_lsb(self) -> float:
        """Nominal current jump of one event (LSB)."""
        return self.weight * self.gain / 64.0

    def entries(self) -> np.ndarray:
        """The row of every batch entry: rows 0..255, each ``repeats`` times in a row (row-major)."""
        return np.repeat(np.arange(chip.ROWS_PER_HALF, dtype=np.int64), self.repeats)


#: 4 events x 63 x 850 / 64 LSB = 10.5 x the level on the slow membrane (kernel peak 1/7.24): a synapse 25 % below
#: nominal still crosses (the synapses' mismatch is 5 %); the crossing (~0.8 tau_e after the input) is late enough
#: that the input jitter costs ~0.1 % per entry; the 1-LSB threshold noise is 0.3 % of the level per entry. Gain
#: 850 leaves room for the gain calibration up to 1022 (a neuron 17 % weak).
SYNAPSES = SynapseExperiment(leak=300, level=320, tau_mem=SLOW_TAU_CODE, weight=chip.WEIGHT_MAX, gain=850,
                             events=chip.N_INPUT_CHANNELS // chip.ROWS_PER_HALF, repeats=3, duration_ticks=1700)


def _neuron_codes(cfg: ChipConfig, **codes: int) -> None:
    base = {"tau_mem": TAU_CODE, "tau_syn_exc": TAU_CODE, "tau_syn_inh": TAU_CODE, "refractory": 0,
            "gain_exc": 64, "gain_inh": 64, "enabled": 1}
    base.update(codes)
    cfg.neurons.set(slice(None), **base)


def membrane_config(setting: MembraneSetting, calibration: NeuronCalibration) -> ChipConfig:
    """The membrane experiment's configuration (no synapses, no routes), mapped through ``calibration``."""
    cfg = ChipConfig()
    _neuron_codes(cfg, leak=setting.leak, threshold=setting.leak - setting.x, reset=setting.leak - setting.y,
                  tau_mem=setting.tau_mem)
    return calibration.apply_to_config(cfg)


def synaptic_config(exp: SynapticExperiment, calibration: NeuronCalibration, first_row: int = 0) -> ChipConfig:
    """The inhibitory or excitatory experiment's configuration, mapped through ``calibration``. Stimulus row ``r``
    is synapse row ``first_row + r`` of each half (successive rounds use other rows, so the gain estimate
    averages over more synapses)."""
    if not 0 <= first_row <= chip.ROWS_PER_HALF - ROWS:
        raise ValueError(f"first_row {first_row} not in [0, {chip.ROWS_PER_HALF - ROWS}]")
    cfg = ChipConfig()
    _neuron_codes(cfg, leak=exp.leak, threshold=exp.threshold, reset=exp.reset, tau_mem=exp.tau_mem,
                  refractory=exp.refractory, **{exp.gain_name: exp.gain})
    used = slice(first_row, first_row + ROWS)
    cfg.row_modes[:, used] = RowMode.INHIBITORY if exp.inhibitory else RowMode.EXCITATORY
    cfg.synapses.labels[:, used, :] = ADDRESS
    cfg.synapses.weights[:, used, :] = exp.weight
    ch = np.arange(ROWS * MAX_EVENTS)
    half = np.repeat(np.arange(chip.N_HALVES), len(ch))
    cfg.routing = Routing.from_lists(np.zeros(len(half), dtype=np.int64), np.tile(ch, chip.N_HALVES), half,
                                     np.tile(first_row + ch // MAX_EVENTS, chip.N_HALVES),
                                     np.full(len(half), ADDRESS))
    return calibration.apply_to_config(cfg)


def synapse_config(exp: SynapseExperiment, calibration: NeuronCalibration) -> ChipConfig:
    """The per-synapse experiment's configuration (all 256 rows of both halves), mapped through ``calibration``'s
    neuron codes (its synapse factors are not applied: the experiment measures the raw synapses)."""
    cfg = ChipConfig()
    _neuron_codes(cfg, leak=exp.leak, threshold=exp.leak + exp.level, reset=exp.leak, tau_mem=exp.tau_mem,
                  refractory=chip.REFRACTORY_MAX, gain_exc=exp.gain)
    cfg.row_modes[:, :] = RowMode.EXCITATORY
    cfg.synapses.labels[:, :, :] = ADDRESS
    cfg.synapses.weights[:, :, :] = exp.weight
    ch = np.arange(chip.ROWS_PER_HALF * exp.events)
    half = np.repeat(np.arange(chip.N_HALVES), len(ch))
    cfg.routing = Routing.from_lists(np.zeros(len(half), dtype=np.int64), np.tile(ch, chip.N_HALVES), half,
                                     np.tile(ch // exp.events, chip.N_HALVES), np.full(len(half), ADDRESS))
    return calibration.apply_to_config(cfg)


def synapse_inputs(exp: SynapseExperiment, rows: np.ndarray) -> InputSpikes:
    """Entry b: one event on each of the ``exp.events`` channels of row ``rows[b]`` at ``INPUT_TICK``."""
    rows = np.asarray(rows, dtype=np.int64)
    k = exp.events
    ev = np.empty(len(rows) * k, dtype=SPIKE_DTYPE)
    ev["batch"] = np.repeat(np.arange(len(rows)), k)
    ev["time"] = INPUT_TICK
    ev["label"] = (rows[:, None] * k + np.arange(k)[None, :]).reshape(-1)
    return InputSpikes(ev, len(rows))


def synaptic_inputs(rows: np.ndarray, ks: np.ndarray) -> InputSpikes:
    """Entry b: ``ks[b]`` events at ``INPUT_TICK`` on the channels of row ``rows[b]``."""
    rows = np.asarray(rows, dtype=np.int64)
    ks = np.asarray(ks, dtype=np.int64)
    if len(ks) and (ks.min() < 1 or ks.max() > MAX_EVENTS):
        raise ValueError(f"events per entry must lie in [1, {MAX_EVENTS}], got [{ks.min()}, {ks.max()}]")
    ev = np.empty(int(ks.sum()), dtype=SPIKE_DTYPE)
    ev["batch"] = np.repeat(np.arange(len(rows)), ks)
    ev["time"] = INPUT_TICK
    first = np.repeat(rows * MAX_EVENTS, ks)
    within = np.arange(len(ev)) - np.repeat(np.cumsum(ks) - ks, ks)
    ev["label"] = first + within
    return InputSpikes(ev, len(rows))


def empty_inputs(batch: int) -> InputSpikes:
    """A batch of entries without input events."""
    return InputSpikes(np.empty(0, dtype=SPIKE_DTYPE), int(batch))
