"""The calibration figure: each neuron's parameters before (nominal codes) and after (calibrated codes) against
their targets, one panel per parameter (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from firstspike.runtime.calibration.result import CalibrationResult
from firstspike.runtime.calibration.search import METRICS

__all__ = ["plot_calibration"]

_TITLES = {
    "tau_mem": "membrane time constant",
    "tau_syn_exc": "excitatory synaptic time constant",
    "tau_syn_inh": "inhibitory synaptic time constant",
    "span_error": "threshold - leak, error",
    "reset_error": "reset - leak, error",
    "leak_error": "leak, error",
    "gain_exc": "excitatory weight per step",
    "gain_inh": "inhibitory weight per step",
}


def plot_calibration(result: CalibrationResult, path: str | Path, title: str | None = None) -> None:
    """Write the before/after figure of ``result`` to ``path`` (PNG, or any format matplotlib infers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(METRICS)
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5), sharex=True)
    neurons = np.arange(len(result.failed))
    for ax, name in zip(axes.flat, names, strict=True):
        unit, target = METRICS[name]
        before = result.before.get(name)
        after = result.after.get(name)
        if before is not None and np.isfinite(before).any():
            ax.plot(neurons, before, ".", ms=2.5, color="0.6", label=f"before (std {np.nanstd(before):.3g})")
        if after is not None and np.isfinite(after).any():
            ax.plot(neurons, after, ".", ms=2.5, color="tab:blue", label=f"after (std {np.nanstd(after):.3g})")
        ax.axhline(target, color="tab:red", lw=1, label=f"target {target:g}")
        if not ((before is not None and np.isfinite(before).any()) or (after is not None and np.isfinite(after).any())):
            ax.text(0.5, 0.5, "not measured\n(no membrane readout)", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
        ax.set_title(_TITLES.get(name, name), fontsize=10)
        ax.set_ylabel(unit)
        ax.legend(fontsize=7, loc="upper right", markerscale=3)
    for ax in axes[-1]:
        ax.set_xlabel("neuron")
    failed = int(result.failed.sum())
    fig.suptitle(title or f"calibration of {result.device_model} serial {result.serial} (spec {result.spec_version})"
                 f": grey = nominal codes, blue = calibrated codes"
                 + (f"; {failed} neurons not fully measured" if failed else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
