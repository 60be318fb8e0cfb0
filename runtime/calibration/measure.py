"""One measurement round: run the three experiments of :mod:`.protocol` on a device through the hal ``Backend``
interface only (configure, run, recorded spikes, membrane readout) and fit what they show.

A round takes the calibration known so far, configures each experiment with the codes that calibration gives,
and returns per neuron the *effective* quantities (time constants in ticks, offsets in LSB, jumps in LSB) together
with the codes that were actually configured, so that both the transfer (effective / nominal of the configured
code) and the error against the targets follow from it (:mod:`.search`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from firstspike.hal import chip
from firstspike.hal.backend import Backend, RunOptions, RunResult
from firstspike.hal.calibration import TAU_TICKS_PER_CODE
from firstspike.hal.config import ChipConfig
from firstspike.hal.events import InputSpikes
from firstspike.hal.neuron_calibration import NeuronCalibration
from firstspike.runtime.calibration import protocol
from firstspike.runtime.calibration.fit import MembraneFit, SynapticFit, fit_membrane, fit_synaptic, leak_from_trace

__all__ = ["DeviceCounters", "Round", "measure_round", "spike_ranks"]

N = chip.N_NEURONS
#: entries per membrane setting: the 1-LSB threshold noise averages to ~0.09 LSB
MEMBRANE_ENTRIES = 128
#: membrane readout sample period (ticks)
READOUT_PERIOD = 4
#: a relaxation after the inhibitory experiment's release is trusted this many fast tau_m later
RELEASE_GUARD_TAU = 10.0

Progress = Callable[[str, float], None]


@dataclass
class DeviceCounters:
    """What the calibration asked of the device."""

    configures: int = 0
    runs: int = 0
    entries: int = 0
    spikes: int = 0


@dataclass(frozen=True)
class SynapticRound:
    """The inhibitory or excitatory experiment of one round: the fit, the level it crossed (LSB, (N,)), the
    membrane tau during it (ticks) and the configured codes (tau, gain, weight)."""

    fit: SynapticFit
    level: np.ndarray
    tau_m: np.ndarray
    tau_code: np.ndarray
    gain_code: np.ndarray
    weight: int


@dataclass(frozen=True)
class Round:
    """Everything one round measured (arrays over the 512 physical neurons).

    ``membrane``: the fit of the membrane experiment (tau_m per group: 0 = the target code, 1 = the slow code);
    ``x``/``y``: (C, N) configured ``leak - threshold`` and ``leak - reset`` of each setting; ``tau_code``: (C, N)
    configured tau_mem codes; ``leak_code``: (N,) configured leak of setting 0; ``leak``: (N,) effective leak
    (LSB; NaN without membrane readout).
    """

    membrane: MembraneFit
    x: np.ndarray
    y: np.ndarray
    tau_code: np.ndarray
    leak_code: np.ndarray
    leak: np.ndarray
    inhibitory: SynapticRound
    excitatory: SynapticRound
    counters: DeviceCounters = field(default_factory=DeviceCounters)


def spike_ranks(result: RunResult, ranks: int) -> np.ndarray:
    """(batch, 512, ranks) tick of each neuron's 1st, 2nd, ... spike per entry (-1: fewer spikes). A neuron spikes
    at most once per tick, so the k-th spike is the earliest one after the (k-1)-th."""
    counts, times, labels = result.spikes.to_columns()
    size = result.spikes.batch_size * N
    key = np.repeat(np.arange(result.spikes.batch_size, dtype=np.int64) * N, counts) + labels.astype(np.int64)
    t = times.astype(np.int64)
    never = np.iinfo(np.int64).max
    out = np.full((size, ranks), -1, dtype=np.int64)
    prev = np.full(size, -1, dtype=np.int64)
    for k in range(ranks):
        if not len(t):
            break
        cur = np.full(size, never, dtype=np.int64)
        np.minimum.at(cur, key, t)
        found = cur != never
        out[found, k] = cur[found]
        prev = np.where(found, cur, never)
        later = t > prev[key]
        key, t = key[later], t[later]
    return out.reshape(result.spikes.batch_size, N, ranks)


class _Runner:
    """Configures and runs, splitting batches that exceed the device's limits or output buffer."""

    def __init__(self, device: Backend, seed: int, counters: DeviceCounters) -> None:
        self.device = device
        self.info = device.info()
        self.seed = int(seed)
        self.counters = counters

    def configure(self, config: ChipConfig) -> None:
        self.device.configure(config)
        self.counters.configures += 1

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        options = replace(options, seed=self.seed)
        return self._run(inputs, options, 0)

    def _run(self, inputs: InputSpikes, options: RunOptions, offset: int) -> RunResult:
        size = inputs.batch_size
        if size > self.info.max_batch:
            return self._split(inputs, options, offset, self.info.max_batch)
        res = self.device.run(inputs, replace(options, entry_offset=offset))
        self.counters.runs += 1
        self.counters.entries += size
        self.counters.spikes += len(res.spikes)
        if res.dropped and size > 1:  # the output buffer overflowed: halve and repeat (same noise: same offsets)
            return self._split(inputs, options, offset, (size + 1) // 2)
        if res.dropped:
            raise RuntimeError(f"the device dropped {res.dropped} events of a single calibration entry; "
                               f"its output buffer ({self.info.max_events} events) is too small for calibration")
        return res

    def _split(self, inputs: InputSpikes, options: RunOptions, offset: int, part: int) -> RunResult:
        sizes = [min(part, inputs.batch_size - s) for s in range(0, inputs.batch_size, part)]
        parts, start = [], 0
        for sub in inputs.split(sizes):
            parts.append(self._run(sub, options, offset + start))
            start += sub.batch_size
        return RunResult.concatenate(parts)


def _interval(ranks: np.ndarray) -> np.ndarray:
    """(N,) mean interval from the first to the second spike over the entries (NaN without data)."""
    t1, t2 = ranks[:, :, 0].astype(np.float64), ranks[:, :, 1].astype(np.float64)
    ok = (t1 >= 0) & (t2 > t1) & (t1 <= 2)  # the leak-over-threshold neuron spikes at tick 1
    d = np.where(ok, t2 - t1, np.nan)
    counts = ok.sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.nansum(d, axis=0) / np.maximum(counts, 1)
    return np.where(counts >= max(4, ranks.shape[0] // 4), mean, np.nan)


def _membrane(run: _Runner, cal: NeuronCalibration, progress: Progress) -> tuple[MembraneFit, dict[str, np.ndarray]]:
    settings = protocol.MEMBRANE
    c = len(settings)
    interval = np.empty((c, N))
    x = np.empty((c, N))
    y = np.empty((c, N))
    tau_code = np.empty((c, N))
    leak_code = np.empty(N)
    for i, s in enumerate(settings):
        cfg = protocol.membrane_config(s, cal)
        v = cfg.neurons.values
        x[i] = v["leak"].astype(np.float64) - v["threshold"]
        y[i] = v["leak"].astype(np.float64) - v["reset"]
        tau_code[i] = v["tau_mem"]
        if i == 0:
            leak_code = v["leak"].astype(np.float64)
        run.configure(cfg)
        res = run.run(protocol.empty_inputs(MEMBRANE_ENTRIES),
                      RunOptions(duration_ticks=s.duration_ticks, record="all"))
        interval[i] = _interval(spike_ranks(res, 2))
        progress("membrane", (i + 1) / c)
    group = np.array([0 if s.tau_mem == protocol.TAU_CODE else 1 for s in settings])
    fit = fit_membrane(interval, x, y, group)
    return fit, {"x": x, "y": y, "tau_code": tau_code, "leak_code": leak_code}


def _leak(run: _Runner, cal: NeuronCalibration, fit: MembraneFit, y0: np.ndarray,
          progress: Progress) -> np.ndarray:
    """Absolute effective leak from membrane readout of setting 0's relaxation (NaN without readout)."""
    width = int(run.info.membrane_readout)
    out = np.full(N, np.nan)
    if width <= 0:
        return out
    s = protocol.MEMBRANE[0]
    run.configure(protocol.membrane_config(s, cal))
    depth = y0 - fit.reset  # leak - reset, effective
    groups = [np.arange(i, min(i + width, N)) for i in range(0, N, width)]
    for k, ids in enumerate(groups):
        res = run.run(protocol.empty_inputs(1), RunOptions(duration_ticks=s.duration_ticks, record="all",
                                                     readout=tuple(int(i) for i in ids), readout_period=READOUT_PERIOD))
        if res.membrane is None:
            return np.full(N, np.nan)
        ranks = spike_ranks(res, 2)[0]
        ticks = np.arange(res.membrane.shape[-1]) * READOUT_PERIOD
        for j, n in enumerate(ids):
            t1, t2 = int(ranks[n, 0]), int(ranks[n, 1])
            if t1 < 0:
                continue
            end = t2 if t2 > t1 else s.duration_ticks
            sel = (ticks >= t1) & (ticks < end)
            out[n] = leak_from_trace(res.membrane[0, j, sel], ticks[sel], t1, float(depth[n]), float(fit.tau_m[0, n]))
        progress("leak", (k + 1) / len(groups))
    return out


def _synaptic(run: _Runner, cal: NeuronCalibration, exp: protocol.SynapticExperiment, fit: MembraneFit,
              target_tau_code: np.ndarray, first_row: int, progress: Progress) -> SynapticRound:
    cfg = protocol.synaptic_config(exp, cal, first_row)
    v = cfg.neurons.values
    code_level = (v["leak"].astype(np.float64) - v["threshold"]) if exp.inhibitory else (
        v["threshold"].astype(np.float64) - v["leak"])
    # effective level: threshold offset relative to the leak measured by the membrane experiment
    level = code_level - fit.threshold if exp.inhibitory else code_level + fit.threshold
    tau_mem_code = v["tau_mem"].astype(np.float64)
    # the slow membrane was measured by the membrane experiment's slow setting (same codes); the fast one gets the
    # target code's factor carried to its code (its exact value barely matters)
    tau_m = fit.tau_m[1] if exp.tau_mem == protocol.SLOW_TAU_CODE else fit.tau_m[0] / target_tau_code * tau_mem_code
    rows, ks = exp.entries()
    run.configure(cfg)
    progress("inhibitory" if exp.inhibitory else "excitatory", 0.5)
    res = run.run(protocol.synaptic_inputs(rows, ks),
                  RunOptions(duration_ticks=exp.duration_ticks, record="all" if exp.inhibitory else "first"))
    ranks = spike_ranks(res, 2)
    t1 = ranks[:, :, 0].astype(np.float64)
    if exp.inhibitory:
        t2 = ranks[:, :, 1].astype(np.float64)
        release = t1 + exp.release_ticks
        guard = RELEASE_GUARD_TAU * np.nanmax(np.where(np.isfinite(tau_m), tau_m, 0.0), initial=4.0)
        ok = (t1 >= 0) & (t1 <= 2) & (t2 >= release + guard)
        t = np.where(ok, t2 - protocol.INPUT_TICK, np.nan)
    else:
        ok = t1 > protocol.INPUT_TICK
        t = np.where(ok, t1 - protocol.INPUT_TICK, np.nan)
    tau_code = v[exp.tau_name].astype(np.float64)
    sfit = fit_synaptic(t, rows, ks, level, tau_m, tau_code * TAU_TICKS_PER_CODE)
    progress("inhibitory" if exp.inhibitory else "excitatory", 1.0)
    return SynapticRound(sfit, level, tau_m, tau_code, v[exp.gain_name].astype(np.float64), exp.weight)


def measure_round(device: Backend, calibration: NeuronCalibration, *, seed: int = 0, first_row: int = 0,
                  progress: Progress | None = None) -> Round:
    """Run the membrane (+ readout), inhibitory and excitatory experiments with ``calibration``'s codes.

    ``seed``: the device's noise seed for this round; ``first_row``: the first synapse row of the synaptic
    experiments (``protocol.ROWS`` rows from there)."""
    counters = DeviceCounters()
    run = _Runner(device, seed, counters)
    report: Progress = progress or (lambda stage, fraction: None)
    fit, codes = _membrane(run, calibration, report)
    leak = _leak(run, calibration, fit, codes["y"][0], report)
    inh = _synaptic(run, calibration, protocol.INHIBITORY, fit, codes["tau_code"][0], first_row, report)
    exc = _synaptic(run, calibration, protocol.EXCITATORY, fit, codes["tau_code"][0], first_row, report)
    return Round(fit, codes["x"], codes["y"], codes["tau_code"], codes["leak_code"], leak, inh, exc, counters)
