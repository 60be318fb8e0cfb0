"""Plots of device runs: training curves, spike rasters and membrane traces (matplotlib, Agg backend).

* :func:`plot_training`: loss and accuracy per epoch (the same figure as the software trainer's).
* :func:`raster_figure` / :func:`plot_raster`: every recorded spike of a few batch entries, time (model units of
  tau_s, or us of chip time) against neuron; input spikes and bias spikes marked apart, one colour per layer, the
  output rows named by class and the deciding (first) output spike marked. The time axis spans the activity.
* :func:`membrane_figure` / :func:`plot_membranes`: membrane traces of chosen neurons from ``RunOptions(readout=...)``
  (devices whose ``DeviceInfo.membrane_readout`` > 0), in membrane LSB, with each neuron's threshold and spike times.
* :func:`draw_raster` / :func:`draw_traces`: run a :class:`~firstspike.runtime.session.Session` for the samples and
  draw them (what ``firstspike deploy --raster/--traces`` and ``firstspike plot`` do).

The ``*_figure`` functions return the matplotlib figure (for notebooks and tests); ``plot_*`` save and close it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firstspike.hal import chip

__all__ = [
    "CLASS_NAMES",
    "class_names_for",
    "default_trace_neurons",
    "draw_raster",
    "draw_traces",
    "membrane_figure",
    "neuron_names",
    "plot_membranes",
    "plot_raster",
    "plot_training",
    "raster_figure",
]

_LAYER_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")
_INPUT_COLOUR = "0.35"
_BIAS_COLOUR = "black"
_DECISION_COLOUR = "crimson"

#: the built-in data sets' class names, in label order
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "yinyang": ("yin", "yang", "dot"),
    "mnist16": tuple(str(d) for d in range(10)),
}


def class_names_for(dataset: str | None, n_classes: int) -> list[str]:
    """Names of the output neurons: the data set's class names when it is a built-in one with ``n_classes``
    classes, else ``class 0``, ``class 1``, ..."""
    names = CLASS_NAMES.get(dataset or "")
    if names is not None and len(names) == n_classes:
        return list(names)
    return [f"class {k}" for k in range(n_classes)]


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


def _layer_name(k: int, n_layers: int, n: int) -> str:
    return f"output layer ({n})" if k == n_layers - 1 else f"hidden layer {k + 1} ({n})"


def raster_figure(
    result: Any,
    compiled: Any,
    *,
    entries: Sequence[int] = (0,),
    unit: str = "tau",
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Any:
    """Raster of a :class:`firstspike.runtime.session.SessionResult` of a single-stage artifact ``compiled``.

    One panel per batch entry in ``entries``. Rows from the bottom: input spikes (grey ticks), bias spikes (black
    diamonds, one row per layer with a bias), then each layer's neurons in layer order (one colour per layer); the
    output rows are named by ``class_names`` (default ``class k``). The first output spike, which decides the
    class, is marked with a star. ``unit``: ``tau`` (model time, tau_s) or ``us`` (chip time). ``labels``: the true
    class per entry (shown with the prediction in the panel title). The time axis spans the plotted spikes.
    Returns the matplotlib figure.
    """
    if unit not in ("tau", "us"):
        raise ValueError(f"unit must be 'tau' or 'us', not {unit!r}")
    plt = _pyplot()
    from matplotlib.lines import Line2D

    scale = 1.0 if unit == "tau" else result.tau_s_ticks * chip.TICK_S * 1e6  # model time -> us
    entries = [int(e) for e in entries]
    for e in entries:
        if not 0 <= e < result.batch_size:
            raise ValueError(f"entry {e} not in the run's batch [0, {result.batch_size - 1}]")
    layers = list(compiled.layers)
    n_out = layers[-1].n_out
    names = list(class_names) if class_names is not None else [f"class {k}" for k in range(n_out)]
    if len(names) != n_out:
        raise ValueError(f"{len(names)} class names for {n_out} output neurons")
    n_in = result.input_times.shape[1]
    biases = [(k, b[1]) for k, b in enumerate(compiled.bias_inputs) if b is not None]
    # rows from the bottom: inputs, bias spikes, then each layer; small blocks get a minimum height so that a few
    # output neurons next to a hundred hidden ones stay readable
    sizes = [n_in, len(biases), *(L.n_out for L in layers)]
    biggest = max(sizes)
    heights = [max(n, frac * biggest) if n else 0.0
               for n, frac in zip(sizes, [0.16, 0.09] + [0.2] * len(layers), strict=True)]
    heights[-1] = max(heights[-1], 0.045 * biggest * n_out)  # room for one class name per output row
    gap = 0.04 * sum(heights)
    starts = np.concatenate([[0.0], np.cumsum([h + gap if h else 0.0 for h in heights])])[:-1]

    def rows(block: int, index: Any) -> np.ndarray:
        """y of row ``index`` of block ``block`` (0 inputs, 1 bias, 2+k layer k)."""
        return starts[block] + (np.asarray(index, dtype=np.float64) + 0.5) * heights[block] / max(sizes[block], 1)

    top = float(starts[-1] + heights[-1])
    panel = max(3.6, 0.12 * n_out * (top + gap) / heights[-1] + 0.7)  # inches: ~0.12 in per class name
    fig, axes = plt.subplots(len(entries), 1, figsize=(10, panel * len(entries) + 0.4), squeeze=False)
    handles: dict[str, Any] = {}  # legend entry -> proxy artist (the same for every panel)

    def legend(name: str, marker: str, colour: str, size: float = 7) -> None:
        handles.setdefault(name, Line2D([], [], ls="", marker=marker, markersize=size, color=colour,
                                        markeredgecolor="black" if marker == "*" else colour, label=name))

    for ax, e in zip(axes[:, 0], entries, strict=True):
        times: list[np.ndarray] = []
        tin = np.asarray(result.input_times[e], dtype=np.float64)
        ok = np.isfinite(tin)
        ax.scatter(tin[ok] * scale, rows(0, np.flatnonzero(ok)), s=14, c=_INPUT_COLOUR, marker="|", linewidths=1.2)
        legend("input spikes", "|", _INPUT_COLOUR, 9)
        times.append(tin[ok])
        for j, (_, bt) in enumerate(biases):
            ax.scatter([bt * scale], rows(1, [j]), s=22, c=_BIAS_COLOUR, marker="D")
            legend("bias spikes", "D", _BIAS_COLOUR, 5)
            times.append(np.array([bt]))
        for k, L in enumerate(layers):
            ev = result.stage_events[L.stage].events
            ev = ev[ev["batch"] == e]
            lut = {int(n): i for i, n in enumerate(L.neuron_ids)}
            sel = np.array([int(n) in lut for n in ev["label"]], dtype=bool)
            t = ev["time"][sel].astype(np.float64) / result.tau_s_ticks
            y = rows(2 + k, [lut[int(n)] for n in ev["label"][sel]])
            colour = _LAYER_COLOURS[k % len(_LAYER_COLOURS)]
            ax.scatter(t * scale, y, s=16, c=colour, marker="|", linewidths=1.2)
            legend(_layer_name(k, len(layers), L.n_out), "|", colour, 9)
            times.append(t)
        out = np.asarray(result.layer_times[-1][e], dtype=np.float64)
        pred = int(np.argmin(out)) if np.isfinite(out).any() else -1
        if pred >= 0:
            ax.scatter([out[pred] * scale], rows(len(sizes) - 1, [pred]), s=110, marker="*", c=_DECISION_COLOUR,
                       edgecolors="black", linewidths=0.5, zorder=4)
            legend("decision (first output spike)", "*", _DECISION_COLOUR, 11)
        # y axis: the blocks by name, the output rows by class
        ticks = [float(starts[0] + heights[0] / 2), *rows(1, range(len(biases)))]
        tick_labels = [f"inputs ({n_in})"] + [f"bias -> {'output' if k == len(layers) - 1 else f'hidden {k + 1}'}"
                                              for k, _ in biases]
        for k, L in enumerate(layers[:-1]):
            ticks.append(float(starts[2 + k] + heights[2 + k] / 2))
            tick_labels.append(f"hidden {k + 1} ({L.n_out})")
        ticks += list(rows(len(sizes) - 1, range(n_out)))
        tick_labels += names
        ax.set_yticks(ticks, tick_labels, fontsize=7 if n_out > 5 else 8)
        for b in range(1, len(sizes)):
            if heights[b]:
                ax.axhline(starts[b] - gap / 2, color="0.85", lw=0.6, zorder=0)
        ax.set_ylim(-gap / 2, top + gap / 2)
        # time axis: the activity, not the run window
        flat = np.concatenate(times) if times else np.empty(0)
        flat = flat[np.isfinite(flat)]
        t_end = float(flat.max()) if flat.size else result.duration_ticks / result.tau_s_ticks
        t_start = min(0.0, float(flat.min())) if flat.size else 0.0
        pad = 0.04 * max(t_end - t_start, 1e-9)
        ax.set_xlim((t_start - pad) * scale, (t_end + pad) * scale)
        verdict = ""
        if labels is not None:
            truth = int(labels[e])
            verdict = f", label {names[truth] if 0 <= truth < n_out else truth}" + (
                " (correct)" if truth == pred else " (wrong)")
        decided = f"predicted {names[pred]} at {out[pred] * scale:.3g} {'tau_s' if unit == 'tau' else 'us'}" \
            if pred >= 0 else "no output spike (no decision)"
        ax.set_title(f"sample {e}: {decided}{verdict}", fontsize=9)
    axes[-1, 0].set_xlabel("time [tau_s]" if unit == "tau" else "chip time [us]")
    axes[0, 0].legend(handles=list(handles.values()), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                      frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_raster(result: Any, compiled: Any, path: str | Path, **kwargs: Any) -> None:
    """:func:`raster_figure`, saved to ``path`` (the suffix picks the format: .png, .pdf, .svg, ...)."""
    plt = _pyplot()
    fig = raster_figure(result, compiled, **kwargs)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def membrane_figure(
    membrane: np.ndarray,
    neurons: Sequence[int],
    period_ticks: int,
    *,
    entry: int = 0,
    tau_s_ticks: float | None = None,
    thresholds: Sequence[float] | None = None,
    spikes: Any = None,
    names: Sequence[str] | None = None,
    title: str | None = None,
) -> Any:
    """Membrane traces (membrane LSB) of ``neurons`` for batch entry ``entry``; returns the matplotlib figure.

    ``membrane``: (batch, len(neurons), n_samples) as in :class:`hal.RunResult`, sampled every ``period_ticks``.
    ``tau_s_ticks``: give it to label time in tau_s (else ticks). ``thresholds``: each neuron's threshold (LSB),
    drawn dashed in its colour. ``spikes``: optional :class:`hal.SpikeEvents`; each neuron's spike times are
    drawn dotted. ``names``: a legend name per neuron (default ``neuron ID``; :func:`neuron_names` names output
    neurons by class).
    """
    m = np.asarray(membrane)
    if m.ndim != 3 or m.shape[1] != len(neurons):
        raise ValueError(f"membrane must have shape (batch, {len(neurons)}, samples), got {m.shape}")
    if not 0 <= entry < m.shape[0]:
        raise ValueError(f"entry {entry} not in [0, {m.shape[0] - 1}]")
    labels = list(names) if names is not None else [f"neuron {int(n)}" for n in neurons]
    if len(labels) != len(neurons):
        raise ValueError(f"{len(labels)} names for {len(neurons)} neurons")
    plt = _pyplot()
    from matplotlib.lines import Line2D

    scale = 1.0 / tau_s_ticks if tau_s_ticks else 1.0
    t = np.arange(m.shape[2]) * period_ticks * scale
    fig, ax = plt.subplots(figsize=(10, 4.2))
    handles = []
    any_threshold = any_spike = False
    for k, n in enumerate(neurons):
        colour = _LAYER_COLOURS[k % len(_LAYER_COLOURS)]
        (line,) = ax.plot(t, m[entry, k], color=colour, lw=1.1, label=labels[k])
        handles.append(line)
        if thresholds is not None and np.isfinite(thresholds[k]):
            ax.axhline(float(thresholds[k]), color=colour, ls="--", lw=0.9)
            any_threshold = True
        if spikes is not None:
            ev = spikes.events
            sel = (ev["batch"] == entry) & (ev["label"] == int(n))
            for ts in ev["time"][sel]:
                ax.axvline(float(ts) * scale, color=colour, ls=":", lw=1.0)
                any_spike = True
    if any_threshold:
        handles.append(Line2D([], [], color="0.3", ls="--", lw=0.9, label="threshold (dashed, per neuron)"))
    if any_spike:
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1.0, label="spike time (dotted, per neuron)"))
    ax.set_xlabel("time [tau_s]" if tau_s_ticks else "time [ticks]")
    ax.set_ylabel("membrane [LSB]")
    ax.set_xlim(float(t[0]) if t.size else 0.0, float(t[-1]) if t.size > 1 else 1.0)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_membranes(membrane: np.ndarray, neurons: Sequence[int], period_ticks: int, path: str | Path,
                   **kwargs: Any) -> None:
    """:func:`membrane_figure`, saved to ``path``."""
    plt = _pyplot()
    fig = membrane_figure(membrane, neurons, period_ticks, **kwargs)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def neuron_names(compiled: Any, neurons: Sequence[int], class_names: Sequence[str] | None = None) -> list[str]:
    """Legend names of chip neurons: output neurons by class (``output yin (neuron 121)``), hidden ones by layer and
    index (``hidden 1 #0 (neuron 0)``), others by id."""
    layers = list(compiled.layers)
    n_out = layers[-1].n_out
    classes = list(class_names) if class_names is not None else [f"class {k}" for k in range(n_out)]
    where: dict[int, tuple[int, int]] = {}
    for k, L in enumerate(layers):
        for i, nid in enumerate(L.neuron_ids.tolist()):
            where.setdefault(int(nid), (k, i))
    out = []
    for nid in neurons:
        k, i = where.get(int(nid), (-1, -1))
        if k == len(layers) - 1:
            out.append(f"output {classes[i]} (neuron {int(nid)})")
        elif k >= 0:
            out.append(f"hidden {k + 1} #{i} (neuron {int(nid)})")
        else:
            out.append(f"neuron {int(nid)} (unused)")
    return out


def default_trace_neurons(compiled: Any, readout: int) -> list[int]:
    """The first hidden neuron and every output neuron, as many as the device reads out at once."""
    neurons = [int(compiled.layers[0].neuron_ids[0])] + [int(n) for n in compiled.layers[-1].neuron_ids]
    return list(dict.fromkeys(neurons))[: max(int(readout), 0)]


def _thresholds(compiled: Any, neurons: Sequence[int]) -> list[float]:
    out = []
    for nid in neurons:
        layer = next((L for L in compiled.layers if int(nid) in set(L.neuron_ids.tolist())), None)
        out.append(float(layer.codes.threshold) if layer is not None else float("nan"))
    return out


def draw_raster(session: Any, compiled: Any, times: np.ndarray, path: str | Path, *, entries: Sequence[int],
                seed: int, labels: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                unit: str = "tau", title: str | None = None) -> int:
    """Run samples ``0..max(entries)`` of ``times`` (tau_s) on ``session`` recording every spike, draw the entries'
    raster to ``path``; returns the number of spikes recorded."""
    n = max(entries) + 1
    res = session.run(np.asarray(times[:n]), seed=seed, record="all")
    plot_raster(res, compiled, path, entries=entries, unit=unit,
                labels=None if labels is None else list(labels[:n]), class_names=class_names, title=title)
    return len(res.events)


def draw_traces(session: Any, compiled: Any, times: np.ndarray, path: str | Path, *, entry: int, neurons: Sequence[int],
                seed: int, period_ticks: int = 8, class_names: Sequence[str] | None = None,
                title: str | None = None) -> None:
    """Run sample ``entry`` of ``times`` on ``session`` reading out the membranes of ``neurons`` (chip ids) every
    ``period_ticks``, and draw the traces with thresholds and spike times to ``path``."""
    res = session.run(np.asarray(times[entry: entry + 1]), seed=seed, entry_offset=entry, record="all",
                      readout=list(neurons), readout_period=period_ticks)
    if res.membrane is None:
        raise ValueError(f"the device returned no membrane samples for neurons {list(neurons)}")
    plot_membranes(res.membrane, list(neurons), period_ticks, path, entry=0, tau_s_ticks=compiled.tau_s_ticks,
                   thresholds=_thresholds(compiled, neurons), spikes=res.events,
                   names=neuron_names(compiled, neurons, class_names), title=title)
