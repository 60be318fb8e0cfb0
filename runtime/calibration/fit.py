"""Fits of the analytic responses (:mod:`.kernels`) to measured spike times, vectorised over the 512 neurons.

* :func:`fit_membrane`: interspike intervals of the membrane experiment -> tau_m per setting group and the
  threshold's and reset's offsets relative to the leak (Gauss-Newton, 3-4 parameters per neuron).
* :func:`fit_synaptic`: crossing times of single-row, k-event stimuli -> the synaptic time constant and the
  current jump of one event per row. Each entry gives ``ln J = ln(level) - ln k - ln K(t; tau_m, tau)``; the
  right tau makes the entries of one row (one synapse) agree. One parameter per neuron (Gauss-Newton in ln tau),
  the per-row jumps are nuisance parameters, outliers (a lost input event, a grazing crossing) are dropped.
* :func:`leak_from_trace`: the absolute leak from a membrane readout of the relaxation after a reset.

All times in ticks, voltages in membrane LSB, float64. A neuron whose data cannot be fitted gets NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from firstspike.runtime.calibration.kernels import log_kernel

__all__ = ["MembraneFit", "SynapticFit", "fit_membrane", "fit_synaptic", "leak_from_trace"]


@dataclass(frozen=True)
class MembraneFit:
    """``tau_m[g]``: membrane time constant (ticks) of setting group ``g``; ``threshold``/``reset``: offsets
    relative to the leak (LSB: effective threshold - leak = code difference + offset); ``rms``: interval residual
    (ticks). Shapes (G, N) and (N,)."""

    tau_m: np.ndarray
    threshold: np.ndarray
    reset: np.ndarray
    rms: np.ndarray


def fit_membrane(interval: np.ndarray, x: np.ndarray, y: np.ndarray, group: np.ndarray,
                 iterations: int = 20) -> MembraneFit:
    """Fit ``interval[c] = tau_m[group[c]] ln((y[c] - d_reset) / (x[c] - d_threshold))``.

    ``interval``: (C, N) mean interspike interval per setting (NaN: no data); ``x``/``y``: (C, N) code differences
    ``leak - threshold`` and ``leak - reset`` as configured; ``group``: (C,) setting group index (one tau_m per
    group). Needs at least two settings per extra parameter beyond tau (here: 2 offsets) in some group.
    """
    interval = np.asarray(interval, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    group = np.asarray(group, dtype=np.int64)
    n_groups = int(group.max()) + 1
    n_settings, n = interval.shape
    onehot = np.zeros((n_settings, n_groups))
    onehot[np.arange(n_settings), group] = 1.0
    ok = np.isfinite(interval).all(axis=0)
    isi = np.where(np.isfinite(interval), interval, 1.0)
    ln0 = np.log(y / x)
    tau = np.stack([np.mean(isi[group == g] / ln0[group == g], axis=0) for g in range(n_groups)])  # (G, N)
    d_t = np.zeros(n)
    d_r = np.zeros(n)
    for _ in range(iterations):
        xe, ye = x - d_t, y - d_r
        lr = np.log(ye / xe)
        tc = onehot @ tau  # (C, N) tau of each setting
        res = tc * lr - isi
        jac = np.concatenate([onehot[:, :, None] * lr[:, None, :], (tc / xe)[:, None, :], (-tc / ye)[:, None, :]],
                             axis=1)  # (C, P, N)
        jtj = np.einsum("cpn,cqn->npq", jac, jac)
        jtr = np.einsum("cpn,cn->np", jac, res)
        step = np.linalg.solve(jtj + 1e-9 * np.eye(n_groups + 2), jtr[..., None])[..., 0]  # (N, P)
        # keep the levels physical: x_e > 1, y_e > x_e (a step that breaks this is halved until it does not)
        for _ in range(30):
            nt, nd_t, nd_r = tau - step[:, :n_groups].T, d_t - step[:, n_groups], d_r - step[:, n_groups + 1]
            bad = ((x - nd_t) <= 1).any(axis=0) | ((y - nd_r) <= (x - nd_t)).any(axis=0) | (nt <= 0).any(axis=0)
            if not bad.any():
                break
            step[bad] *= 0.5
        tau, d_t, d_r = nt, nd_t, nd_r
    tc = onehot @ tau
    rms = np.sqrt(np.mean((tc * np.log((y - d_r) / (x - d_t)) - isi) ** 2, axis=0))
    nan = ~ok | ~np.isfinite(rms)
    tau[:, nan] = np.nan
    d_t[nan] = np.nan
    d_r[nan] = np.nan
    rms[nan] = np.nan
    return MembraneFit(tau, d_t, d_r, rms)


@dataclass(frozen=True)
class SynapticFit:
    """``tau``: synaptic time constant (ticks, (N,)); ``jump``: (R, N) current jump of one event through each
    row's synapse (LSB; NaN where the row had no valid entry); ``rms``: residual of ln J (relative); ``used``:
    entries kept per neuron."""

    tau: np.ndarray
    jump: np.ndarray
    rms: np.ndarray
    used: np.ndarray

    @property
    def mean_jump(self) -> np.ndarray:
        """(N,) the mean jump over the rows: the neuron's gain averaged over its synapses (LSB per event)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a neuron without any row: NaN
            return np.nanmean(self.jump, axis=0)


def fit_synaptic(t: np.ndarray, rows: np.ndarray, ks: np.ndarray, level: np.ndarray, tau_m: np.ndarray,
                 tau0: np.ndarray, *, iterations: int = 8, outlier_sigmas: float = 5.0) -> SynapticFit:
    """Fit tau and the per-row jumps to crossing times.

    ``t``: (B, N) ticks from the input to the spike (NaN: none or invalid); entry ``b`` had ``ks[b]`` events on
    row ``rows[b]``; the membrane crossed ``level`` (N,) LSB (from below for excitation, from above for the
    relaxation after inhibition: the kernel's rising or falling side, the same equation). ``tau_m``: (N,) the
    membrane's time constant during the experiment; ``tau0``: (N,) the starting guess.
    """
    order = np.argsort(np.asarray(rows, dtype=np.int64), kind="stable")  # entries grouped by row
    rows = np.asarray(rows, dtype=np.int64)[order]
    ks = np.asarray(ks, dtype=np.float64)[order]
    t = np.asarray(t, dtype=np.float64)[order]
    row_ids, starts, sizes = np.unique(rows, return_index=True, return_counts=True)
    valid = np.isfinite(t) & (t > 0)
    tt = np.where(valid, t, 1.0)
    base = np.log(np.asarray(level, dtype=np.float64))[None, :] - np.log(ks)[:, None]
    tau_m = np.asarray(tau_m, dtype=np.float64)[None, :]

    def log_jump(tau: np.ndarray) -> np.ndarray:
        return base - log_kernel(tt, tau_m, tau[None, :])

    def row_mean(values: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = np.add.reduceat(keep, starts, axis=0).astype(np.float64)
        total = np.add.reduceat(np.where(keep, values, 0.0), starts, axis=0)
        return total / np.maximum(count, 1.0), count

    def residuals(lj: np.ndarray, keep: np.ndarray) -> np.ndarray:
        mean, _ = row_mean(lj, keep)
        return np.where(keep, lj - np.repeat(mean, sizes, axis=0), 0.0)

    def solve(tau: np.ndarray, keep: np.ndarray) -> np.ndarray:
        h = 1e-4
        for _ in range(iterations):
            lo, mid, hi = log_jump(tau * (1 - h)), log_jump(tau), log_jump(tau * (1 + h))
            r = residuals(mid, keep)
            dr = residuals((hi - lo) / (2 * h), keep)
            den = np.sum(dr * dr, axis=0)
            step = np.where(den > 0, -np.sum(r * dr, axis=0) / np.where(den > 0, den, 1.0), 0.0)
            tau = tau * np.exp(np.clip(step, -0.05, 0.05))
            if np.nanmax(np.abs(step), initial=0.0) < 1e-7:
                break
        return tau

    def robust_residuals(lj: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Residuals from each row's median (one bad entry cannot drag its row's good ones along)."""
        vals = np.where(keep, lj, np.nan)
        centre = np.empty((len(starts), lj.shape[1]))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows without valid entries: NaN, masked below
            for i, (a, m) in enumerate(zip(starts, sizes, strict=True)):
                centre[i] = np.nanmedian(vals[a:a + m], axis=0)
        return np.where(keep, lj - np.repeat(centre, sizes, axis=0), 0.0)

    tau = solve(np.asarray(tau0, dtype=np.float64).copy(), valid)
    for _ in range(2):  # drop outliers (a lost event: k-1 of k; a grazing crossing), refit
        lj = log_jump(tau)
        # the spread from the residuals about the row means (about the medians a third of them would be 0), the
        # suspects by their distance from the row medians
        a = np.where(valid, np.abs(residuals(lj, valid)), np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sigma = 1.4826 * np.nanmedian(a, axis=0)
        limit = np.maximum(outlier_sigmas * np.nan_to_num(sigma, nan=np.inf), 1e-4)[None, :]
        keep = valid & (np.abs(robust_residuals(lj, valid)) <= limit)
        if (keep == valid).all():
            break
        valid = keep
        tau = solve(tau, valid)
    r = residuals(log_jump(tau), valid)
    mean, count = row_mean(log_jump(tau), valid)
    jump = np.full((int(row_ids.max()) + 1, t.shape[1]), np.nan)
    jump[row_ids] = np.where(count > 0, np.exp(mean), np.nan)
    used = valid.sum(axis=0)
    dof = np.maximum(used - (count > 0).sum(axis=0) - 1, 1)
    rms = np.sqrt(np.sum(r * r, axis=0) / dof)
    # tau is determined only if some row kept two entries with different k
    kv = np.where(valid, ks[:, None], np.nan)
    with np.errstate(all="ignore"):
        spread = np.fmax.reduceat(np.nan_to_num(kv, nan=-np.inf), starts, axis=0) - \
            np.fmin.reduceat(np.nan_to_num(kv, nan=np.inf), starts, axis=0)
    determined = (np.nan_to_num(spread, nan=0.0, posinf=0.0, neginf=0.0) > 0).any(axis=0)
    bad = ~determined | ~np.isfinite(tau)
    tau = np.where(bad, np.nan, tau)
    jump[:, bad] = np.nan
    rms = np.where(bad, np.nan, rms)
    return SynapticFit(tau, jump, rms, used)


def leak_from_trace(samples: np.ndarray, ticks: np.ndarray, reset_tick: int, depth: float, tau_m: float) -> float:
    """The effective leak (LSB) from readout ``samples`` (membrane floored to whole LSB) taken at ``ticks`` while
    the membrane relaxes from ``leak - depth`` (reset at ``reset_tick``) with ``tau_m``: each sample plus half an
    LSB plus the known remaining distance estimates the leak; the floor's fractions average out over the many
    levels the relaxation crosses. Samples on the rails (0 or 1023) are ignored. NaN without usable samples."""
    s = np.asarray(samples, dtype=np.float64)
    tk = np.asarray(ticks, dtype=np.float64)
    use = (tk >= reset_tick) & (s > 0) & (s < 1023)
    if not use.any() or not np.isfinite(depth) or not np.isfinite(tau_m):
        return float("nan")
    return float(np.mean(s[use] + 0.5 + depth * np.exp(-(tk[use] - reset_tick) / tau_m)))
