"""The per-synapse measurement: every synapse's gain relative to its neuron's, through the hal ``Backend`` only.

One configuration (:data:`~firstspike.runtime.calibration.protocol.SYNAPSES`) makes every row of both halves
excitatory with the same weight and routes four input channels to each row; an entry fires one row, so all 512
neurons cross their threshold through their own synapse of that row. With the neuron codes calibrated (tau_e,
tau_m, the threshold - leak span and the gain are those of the calibration), an entry's crossing time ``t``
gives that synapse's jump ``J = level / (k K(t))`` (:func:`~firstspike.runtime.calibration.kernels.log_kernel`).
Per neuron, the jumps of its 256 synapses relative to their mean over the rows its gain estimate averaged (the
*reference rows*) are the synapse factors: ``neuron gain x synapse factor`` is then each synapse's own transfer,
and every per-neuron error (level, time constants, gain) cancels in the ratio.

Noise: the 1-LSB threshold noise (independent per entry and neuron) averages over ``repeats`` entries per row; a
lost input event (one of ``k``) lowers the jumps of a whole entry by ``1/k`` for every neuron and is recognised by
the median over the 512 neurons; such entries are dropped. The scatter of the repeats about their mean gives each
factor's standard error, which is what remains of the synapses' mismatch after the correction (apart from the
6-bit weight resolution) and what a calibrated device's noise model publishes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from firstspike.hal import chip
from firstspike.hal.backend import Backend, RunOptions
from firstspike.hal.calibration import TAU_TICKS_PER_CODE
from firstspike.hal.neuron_calibration import NeuronCalibration
from firstspike.runtime.calibration import protocol
from firstspike.runtime.calibration.kernels import log_kernel
from firstspike.runtime.calibration.measure import DeviceCounters, _Runner, spike_ranks

__all__ = ["LOST_EVENT_LIMIT", "SynapseMeasurement", "fit_synapses", "measure_synapses"]

N = chip.N_NEURONS
#: an entry whose jumps lie this far (ln) from the neurons' medians, in the median over all neurons, lost an event
#: (one of 4 events lost: ln(3/4) = -0.29; the median of 512 neurons of a sound entry is within ~0.002 of 0)
LOST_EVENT_LIMIT = 0.1

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class SynapseMeasurement:
    """``gain``: (2, 256, 256) float64 factor of every synapse (half, row, column) relative to its neuron's gain
    (NaN: not measured); ``stderr``: (2, 256, 256) its standard error (relative, from the repeats' scatter);
    ``dropped``: entries dropped as a lost event; ``counters``: what was asked of the device."""

    gain: np.ndarray
    stderr: np.ndarray
    dropped: int
    counters: DeviceCounters

    @property
    def residual_rel(self) -> float:
        """RMS of the measured factors' standard errors: the synapse mismatch that remains after correction."""
        e = self.stderr[np.isfinite(self.stderr)]
        return float(np.sqrt(np.mean(e * e))) if e.size else float("nan")


def fit_synapses(t: np.ndarray, rows: np.ndarray, level: np.ndarray, events: int, tau_m: np.ndarray,
                 tau_e: np.ndarray, reference_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Synapse factors from crossing times.

    ``t``: (B, 512) ticks from the input to the first spike (NaN: none); entry ``b`` fired ``events`` events on
    row ``rows[b]``; ``level`` (512,) LSB, ``tau_m``/``tau_e`` (512,) ticks: the neurons' effective threshold
    span and time constants; ``reference_rows``: rows over which each neuron's factors average to 1.
    Returns (gain, stderr, dropped entries); gain and stderr of shape (2, 256, 256).
    """
    t = np.asarray(t, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    valid = np.isfinite(t) & (t > 0)
    lnj = np.log(np.asarray(level, dtype=np.float64))[None, :] - np.log(events) - log_kernel(
        np.where(valid, t, 1.0), np.asarray(tau_m, dtype=np.float64)[None, :],
        np.asarray(tau_e, dtype=np.float64)[None, :])
    lnj = np.where(valid, lnj, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # neurons / entries without data: NaN
        centre = np.nanmedian(lnj, axis=0)  # per neuron
        shift = np.nanmedian(lnj - centre[None, :], axis=1)  # per entry, over the neurons
    lost = ~(np.abs(np.nan_to_num(shift, nan=np.inf)) <= LOST_EVENT_LIMIT)
    lnj[lost] = np.nan
    n_rows = chip.ROWS_PER_HALF
    keep = np.isfinite(lnj)
    count = np.zeros((n_rows, N))
    total = np.zeros((n_rows, N))
    np.add.at(count, rows, keep)
    np.add.at(total, rows, np.where(keep, lnj, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)  # (rows, neurons) mean ln J
        dev = np.where(keep, lnj - mean[rows], 0.0)
        # per neuron the pooled scatter of the repeats about their row's mean (one ln J per entry)
        dof = np.sum(np.maximum(count - 1, 0), axis=0)
        sigma = np.where(dof > 0, np.sqrt(np.sum(dev * dev, axis=0) / np.maximum(dof, 1)), np.nan)
        stderr = sigma[None, :] / np.sqrt(count)
        stderr = np.where(count > 0, stderr, np.nan)
    j = np.exp(mean)
    ref = np.zeros(n_rows, dtype=bool)
    ref[np.asarray(reference_rows, dtype=np.int64)] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        norm = np.nanmean(j[ref], axis=0)  # (neurons,)
    gain = j / norm[None, :]
    # (rows, neurons = half x column) -> (half, row, column)
    gain = gain.reshape(n_rows, chip.N_HALVES, chip.COLUMNS_PER_HALF).transpose(1, 0, 2)
    stderr = stderr.reshape(n_rows, chip.N_HALVES, chip.COLUMNS_PER_HALF).transpose(1, 0, 2)
    return np.ascontiguousarray(gain), np.ascontiguousarray(stderr), int(lost.sum())


def measure_synapses(device: Backend, calibration: NeuronCalibration, *, seed: int = 0,
                     reference_rows: np.ndarray | None = None,
                     experiment: protocol.SynapseExperiment = protocol.SYNAPSES,
                     progress: Progress | None = None) -> SynapseMeasurement:
    """Measure every synapse of ``device`` with ``calibration``'s neuron codes (see the module docstring).

    ``reference_rows``: the rows the calibration's gain estimate averaged over (default: all 256); each neuron's
    factors average to 1 over them, so that neuron gain x synapse factor is the synapse's own transfer."""
    counters = DeviceCounters()
    run = _Runner(device, seed, counters)
    report: Progress = progress or (lambda stage, fraction: None)
    exp = experiment
    cfg = protocol.synapse_config(exp, calibration)
    v = cfg.neurons.values
    level = v["threshold"].astype(np.float64) - v["leak"] + calibration.threshold
    tau_m = calibration.tau_mem * v["tau_mem"] * TAU_TICKS_PER_CODE
    tau_e = calibration.tau_syn_exc * v["tau_syn_exc"] * TAU_TICKS_PER_CODE
    rows = exp.entries()
    run.configure(cfg)
    report("synapses", 0.2)
    res = run.run(protocol.synapse_inputs(exp, rows), RunOptions(duration_ticks=exp.duration_ticks, record="first"))
    first = spike_ranks(res, 1)[:, :, 0].astype(np.float64)
    t = np.where(first > protocol.INPUT_TICK, first - protocol.INPUT_TICK, np.nan)
    ref = np.arange(chip.ROWS_PER_HALF) if reference_rows is None else np.asarray(reference_rows)
    gain, stderr, dropped = fit_synapses(t, rows, level, exp.events, tau_m, tau_e, ref)
    report("synapses", 1.0)
    return SynapseMeasurement(gain, stderr, dropped, counters)
