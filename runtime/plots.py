"""Plots of device runs: training curves, spike rasters and membrane traces (matplotlib, Agg backend).

* :func:`plot_training`: loss and accuracy per epoch (the same figure as the software trainer's).
* :func:`plot_raster`: every recorded spike of a few batch entries, time (model units of tau_s, or us of chip
  time) against neuron, coloured by layer, inputs (and bias spikes) in grey.
* :func:`plot_membranes`: membrane traces of chosen neurons from ``RunOptions(readout=...)`` (devices whose
  ``DeviceInfo.membrane_readout`` > 0), in membrane LSB, with the neuron's threshold code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firstspike.hal import chip

__all__ = ["plot_membranes", "plot_raster", "plot_training"]

_LAYER_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(history: dict[str, list[float]], test_accuracy: float, path: str | Path, title: str,
                  test_epoch: int | None = None) -> None:
    """Loss (log scale) and accuracy per epoch for train and validation; the saved model's test accuracy as a
    dot at its epoch ``test_epoch`` (default: the last epoch)."""
    plt = _pyplot()
    epochs = list(range(1, len(history["train_loss"]) + 1))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history["train_loss"], label="train")
    ax_loss.plot(epochs, history["val_loss"], label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * a for a in history["train_accuracy"]], label="train")
    ax_acc.plot(epochs, [100 * a for a in history["val_accuracy"]], label="validation")
    if epochs:
        at = epochs[-1] if test_epoch is None else test_epoch
        ax_acc.scatter([at], [100 * test_accuracy], color="k", zorder=3, label="test (saved model)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy [%]")
    ax_acc.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_raster(
    result: Any,
    compiled: Any,
    path: str | Path,
    *,
    entries: Sequence[int] = (0,),
    unit: str = "tau",
    labels: Sequence[int] | None = None,
    title: str | None = None,
) -> None:
    """Raster of a :class:`firstspike.runtime.session.SessionResult` of a single-stage artifact ``compiled``.

    One panel per batch entry in ``entries``: input and bias spikes (grey, below the neurons) and every recorded
    spike, y = layer-ordered neuron index, colour = layer. ``unit``: ``tau`` (model time) or ``us`` (chip time).
    ``labels``: optional true class per entry (shown in the panel title with the prediction).
    """
    if unit not in ("tau", "us"):
        raise ValueError(f"unit must be 'tau' or 'us', not {unit!r}")
    plt = _pyplot()
    scale = 1.0 if unit == "tau" else result.tau_s_ticks * chip.TICK_S * 1e6  # model time -> us
    entries = [int(e) for e in entries]
    for e in entries:
        if not 0 <= e < result.batch_size:
            raise ValueError(f"entry {e} not in the run's batch [0, {result.batch_size - 1}]")
    # neuron id -> (layer, row in the plot); inputs take the rows below 0
    n_in = result.input_times.shape[1]
    fig, axes = plt.subplots(len(entries), 1, figsize=(9, 2.2 + 2.4 * len(entries)), squeeze=False)
    for ax, e in zip(axes[:, 0], entries, strict=True):
        tin = result.input_times[e]
        ok = np.isfinite(tin)
        ax.scatter(tin[ok] * scale, -1 - np.flatnonzero(ok), s=8, c="0.5", marker="|", label="inputs")
        bias = [b for b in compiled.bias_inputs if b is not None]
        for j, (_, bt) in enumerate(bias):
            ax.scatter([bt * scale], [-n_in - 1 - j], s=8, c="0.2", marker="|", label="bias" if j == 0 else None)
        base = 0
        for k, L in enumerate(compiled.layers):
            ev = result.stage_events[L.stage].events
            ev = ev[ev["batch"] == e]
            lut = {int(n): i for i, n in enumerate(L.neuron_ids)}
            sel = np.array([int(n) in lut for n in ev["label"]], dtype=bool)
            t = ev["time"][sel].astype(np.float64) / result.tau_s_ticks * scale
            y = base + np.array([lut[int(n)] for n in ev["label"][sel]], dtype=np.int64)
            ax.scatter(t, y, s=10, c=_LAYER_COLOURS[k % len(_LAYER_COLOURS)], marker="|",
                       label=f"layer {k} ({L.n_out})")
            base += L.n_out + 2
        out = result.layer_times[-1][e]
        pred = int(np.argmin(out)) if np.isfinite(out).any() else -1
        head = f"entry {e}: predicted {pred}" + (f", label {int(labels[e])}" if labels is not None else "")
        ax.set_title(head, fontsize=9)
        ax.set_ylabel("neuron (layer order)")
        ax.set_xlim(0, result.duration_ticks / result.tau_s_ticks * scale)
    axes[-1, 0].set_xlabel("time [tau_s]" if unit == "tau" else "chip time [us]")
    axes[0, 0].legend(loc="upper right", fontsize=7, markerscale=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_membranes(
    membrane: np.ndarray,
    neurons: Sequence[int],
    period_ticks: int,
    path: str | Path,
    *,
    entry: int = 0,
    tau_s_ticks: float | None = None,
    thresholds: Sequence[float] | None = None,
    spikes: Any = None,
    title: str | None = None,
) -> None:
    """Membrane traces (membrane LSB) of ``neurons`` for batch entry ``entry``.

    ``membrane``: (batch, len(neurons), n_samples) as in :class:`hal.RunResult`, sampled every ``period_ticks``.
    ``tau_s_ticks``: give it to label time in tau_s (else ticks). ``thresholds``: dashed lines per neuron
    (LSB codes). ``spikes``: optional :class:`hal.SpikeEvents`; the neurons' spike times are marked.
    """
    m = np.asarray(membrane)
    if m.ndim != 3 or m.shape[1] != len(neurons):
        raise ValueError(f"membrane must have shape (batch, {len(neurons)}, samples), got {m.shape}")
    if not 0 <= entry < m.shape[0]:
        raise ValueError(f"entry {entry} not in [0, {m.shape[0] - 1}]")
    plt = _pyplot()
    scale = 1.0 / tau_s_ticks if tau_s_ticks else 1.0
    t = np.arange(m.shape[2]) * period_ticks * scale
    fig, ax = plt.subplots(figsize=(9, 4))
    for k, n in enumerate(neurons):
        colour = _LAYER_COLOURS[k % len(_LAYER_COLOURS)]
        ax.plot(t, m[entry, k], color=colour, lw=1, label=f"neuron {int(n)}")
        if thresholds is not None:
            ax.axhline(float(thresholds[k]), color=colour, ls="--", lw=0.8)
        if spikes is not None:
            ev = spikes.events
            sel = (ev["batch"] == entry) & (ev["label"] == int(n))
            for ts in ev["time"][sel]:
                ax.axvline(float(ts) * scale, color=colour, ls=":", lw=0.8)
    ax.set_xlabel("time [tau_s]" if tau_s_ticks else "time [ticks]")
    ax.set_ylabel("membrane [LSB]")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
