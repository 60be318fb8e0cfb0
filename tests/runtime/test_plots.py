"""What the raster and membrane figures show, checked on the figure's content (legend, axis limits, labels), not
pixels: a yin-yang network run on the ideal simulated chip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from firstspike.runtime.devices import open as open_device
from firstspike.runtime.plots import (
    class_names_for,
    default_trace_neurons,
    membrane_figure,
    neuron_names,
    raster_figure,
)
from firstspike.runtime.session import Session
from firstspike.runtime.training.datasets import load_dataset
from firstspike.runtime.training.forward import compile_for_device
from firstspike.runtime.training.presets import build_network, get_task


@pytest.fixture(scope="module")
def run() -> dict[str, object]:
    net = build_network(get_task("yinyang"), torch.Generator().manual_seed(0))
    compiled = compile_for_device(net)
    data = load_dataset("yinyang", "test", size=4)
    with open_device("sim://?ideal=1") as dev:
        session = Session(dev, compiled)
        result = session.run(data.times.numpy(), seed=0, record="all")
        neurons = default_trace_neurons(compiled, dev.info().membrane_readout)
        traced = session.run(data.times[:1].numpy(), seed=0, record="all", readout=neurons, readout_period=8)
    return {"compiled": compiled, "result": result, "labels": data.labels.tolist(), "neurons": neurons,
            "traced": traced}


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_raster_marks_inputs_bias_layers_and_the_decision(run) -> None:
    import matplotlib.pyplot as plt

    compiled, result = run["compiled"], run["result"]
    fig = raster_figure(result, compiled, entries=[0, 2], labels=run["labels"],
                        class_names=class_names_for("yinyang", 3))
    try:
        ax0, ax1 = fig.axes[:2]
        assert _legend(ax0) == ["input spikes", "bias spikes", "hidden layer 1 (120)", "output layer (3)",
                                "decision (first output spike)"]
        for ax, e in ((ax0, 0), (ax1, 2)):
            ticks = [t.get_text() for t in ax.get_yticklabels()]
            assert ticks[-3:] == ["yin", "yang", "dot"]  # output rows named by class
            assert "bias -> hidden 1" in ticks and "bias -> output" in ticks and ticks[0] == "inputs (4)"
            # the time axis spans the activity of this entry, not the run window
            ev = result.events.events
            t_neurons = ev["time"][ev["batch"] == e] / result.tau_s_ticks
            t_inputs = result.input_times[e][np.isfinite(result.input_times[e])]
            last = max(t_neurons.max(), t_inputs.max(), 0.9)
            lo, hi = ax.get_xlim()
            assert lo <= min(t_inputs.min(), t_neurons.min()) and last <= hi <= last * 1.1
            assert hi < result.duration_ticks / result.tau_s_ticks * 0.7
            # the star sits at the first output spike, in the predicted class's row
            out = result.output_times[e]
            star = [c for c in ax.collections if c.get_offsets().shape[0] == 1 and c.get_sizes()[0] > 100]
            assert len(star) == 1
            x, y = star[0].get_offsets()[0]
            assert x == pytest.approx(out.min())
            pred = int(np.argmin(out))
            row = next(t for t in ax.get_yticklabels() if t.get_text() == ("yin", "yang", "dot")[pred])
            assert y == pytest.approx(row.get_position()[1])
            assert f"predicted {('yin', 'yang', 'dot')[pred]}" in ax.get_title()
    finally:
        plt.close(fig)


def test_raster_in_chip_time_scales_the_axis(run) -> None:
    import matplotlib.pyplot as plt

    result = run["result"]
    tau = raster_figure(result, run["compiled"], entries=[1])
    us = raster_figure(result, run["compiled"], entries=[1], unit="us")
    try:
        us_per_tau = result.tau_s_ticks * 8e-3
        assert us.axes[0].get_xlim()[1] == pytest.approx(tau.axes[0].get_xlim()[1] * us_per_tau)
        assert us.axes[0].get_xlabel() == "chip time [us]"
        assert [t.get_text() for t in tau.axes[0].get_yticklabels()][-3:] == ["class 0", "class 1", "class 2"]
    finally:
        plt.close(tau)
        plt.close(us)


def test_membrane_legend_names_outputs_by_class_and_shows_threshold_and_spikes(run) -> None:
    import matplotlib.pyplot as plt

    compiled, traced, neurons = run["compiled"], run["traced"], run["neurons"]
    names = neuron_names(compiled, neurons, class_names_for("yinyang", 3))
    out_ids = [int(n) for n in compiled.layers[-1].neuron_ids]
    assert names[0] == f"hidden 1 #0 (neuron {int(compiled.layers[0].neuron_ids[0])})"
    assert names[1:] == [f"output {c} (neuron {n})" for c, n in zip(("yin", "yang", "dot"), out_ids, strict=True)]
    thresholds = [float(compiled.layers[0].codes.threshold)] + [float(compiled.layers[-1].codes.threshold)] * 3
    fig = membrane_figure(traced.membrane, neurons, 8, tau_s_ticks=compiled.tau_s_ticks, thresholds=thresholds,
                          spikes=traced.events, names=names)
    try:
        ax = fig.axes[0]
        labels = _legend(ax)
        assert labels[:4] == names
        assert "threshold (dashed, per neuron)" in labels and "spike time (dotted, per neuron)" in labels
        ev = traced.events.events
        spiking = {int(n) for n in ev["label"]} & set(neurons)
        vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":" and len(ln.get_xdata()) == 2]
        assert len(vlines) == sum(int((ev["label"] == n).sum()) for n in spiking) > 0
    finally:
        plt.close(fig)


def test_class_names_fall_back_to_numbers() -> None:
    assert class_names_for("mnist16", 10) == [str(d) for d in range(10)]
    assert class_names_for("yinyang", 4) == ["class 0", "class 1", "class 2", "class 3"]
    assert class_names_for(None, 2) == ["class 0", "class 1"]
