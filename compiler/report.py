"""Resource report (text and dict) and the synapse-array occupancy plot of a compiled network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from firstspike.compiler.artifact import CompiledNetwork
from firstspike.compiler.placement import RESERVED_LABEL
from firstspike.hal import chip
from firstspike.hal.config import RowMode

__all__ = ["plot_occupancy", "resource_report", "resources"]


def resources(compiled: CompiledNetwork) -> dict[str, Any]:
    """Per stage and half: neurons, rows, synapses (allocated and nonzero), routes, labels; per layer the
    placement and quantisation summary. Plain dict (JSON-able)."""
    stages = []
    for st in compiled.stages:
        cfg = st.config
        enabled = cfg.neurons.values["enabled"].reshape(chip.N_HALVES, chip.COLUMNS_PER_HALF)
        r = cfg.routing.routes
        halves = []
        for h in range(chip.N_HALVES):
            lab = cfg.synapses.labels[h]
            halves.append({
                "half": h,
                "neurons": int(enabled[h].sum()),
                "rows": int(np.count_nonzero(cfg.row_modes[h] != RowMode.OFF)),
                "rows_excitatory": int(np.count_nonzero(cfg.row_modes[h] == RowMode.EXCITATORY)),
                "rows_inhibitory": int(np.count_nonzero(cfg.row_modes[h] == RowMode.INHIBITORY)),
                "synapses_allocated": int(np.count_nonzero(lab != RESERVED_LABEL)),
                "synapses_nonzero": int(np.count_nonzero(cfg.synapses.weights[h])),
                "routes": int(np.count_nonzero(r["half"] == h)),
                "labels": sorted({int(a) for a in r["address"][r["half"] == h]}),
            })
        stages.append({
            "stage": st.index,
            "layers": list(st.layers),
            "input_source": "network inputs" if st.input_source < 0 else f"layer {st.input_source} spikes",
            "merged_columns": int(cfg.neurons.merged_columns.sum()),
            "halves": halves,
        })
    layers = []
    for L, q in zip(compiled.layers, compiled.quantization, strict=True):
        layers.append({
            "layer": L.index,
            "name": L.name,
            "shape": list(L.weight_shape),
            "stage": L.stage,
            "merged": L.merged,
            "neuron_circuits": L.n_out * (2 if L.merged else 1),
            "bias": None if L.bias_time is None else {"channel": L.bias_channel, "time": L.bias_time},
            **{k: v for k, v in q.to_dict().items() if k not in ("layer", "name")},
        })
    return {
        "compiler_version": compiled.compiler_version,
        "source_sha256": compiled.source_sha256,
        "tau_s_ticks": compiled.tau_s_ticks,
        "stages": stages,
        "layers": layers,
        "delays": [r.to_dict() for r in compiled.delay_quantization],
        "warnings": list(compiled.warnings),
    }


def resource_report(compiled: CompiledNetwork) -> str:
    """Human-readable resource and quantisation report."""
    res = resources(compiled)
    n_st = len(res["stages"])
    lines = [
        f"firstspike compiler {res['compiler_version']}  source sha256 {res['source_sha256'][:16]}...",
        f"tau_s = {res['tau_s_ticks']:g} ticks ({res['tau_s_ticks'] * chip.TICK_NS / 1000:g} us)"
        f"  stages: {n_st}" + ("  (the network is SPLIT: stages run one after another, each stage's last"
                               " layer's spikes feed the next)" if n_st > 1 else ""),
        "",
    ]
    for st in res["stages"]:
        lines.append(f"stage {st['stage']}: layers {st['layers']}, inputs = {st['input_source']},"
                     f" merged columns {st['merged_columns']}")
        lines.append(f"  {'half':>4} {'neurons':>11} {'rows (exc/inh)':>18} {'synapses alloc':>16}"
                     f" {'nonzero':>9} {'routes':>7}  labels")
        for h in st["halves"]:
            lines.append(
                f"  {h['half']:>4} {h['neurons']:>5} / {chip.COLUMNS_PER_HALF:<3}"
                f" {h['rows']:>5} / {chip.ROWS_PER_HALF:<3} ({h['rows_excitatory']}/{h['rows_inhibitory']})"
                f" {h['synapses_allocated']:>9} / {chip.ROWS_PER_HALF * chip.COLUMNS_PER_HALF:<5}"
                f" {h['synapses_nonzero']:>9} {h['routes']:>7}  {h['labels']}"
            )
        lines.append("")
    lines.append(f"  {'layer':<14} {'shape':>10} {'st':>2} {'merged':>6} {'q (model/step)':>15} {'gain':>5}"
                 f" {'span':>5} {'max|w|':>8} {'steps':>5} {'clipped':>7} {'max err':>9} {'mean err':>9}")
    for L in res["layers"]:
        name = f"{L['layer']}" + (f" {L['name']}" if L["name"] else "")
        shape = "x".join(str(s) for s in L["shape"])
        lines.append(
            f"  {name[:14]:<14} {shape:>10} {L['stage']:>2} {'yes' if L['merged'] else 'no':>6}"
            f" {L['q']:>15.6g} {L['gain']:>5} {L['threshold'] - L['leak']:>5} {L['max_abs_weight']:>8.4g}"
            f" {L['max_steps']:>5} {L['clipped']:>7} {L['max_abs_error']:>9.3g} {L['mean_abs_error']:>9.3g}"
        )
    if res["delays"]:
        lines += ["", f"  axonal delays on the route delay lines (step {chip.DELAY_STEP_TICKS} ticks ="
                      f" {chip.DELAY_STEP_TICKS / res['tau_s_ticks']:.4g} tau_s, up to code {chip.DELAY_CODE_MAX}):",
                  f"  {'layer':<14} {'delays':>6} {'max (tau_s)':>11} {'max code':>8} {'clipped':>7}"
                  f" {'max err (ticks)':>15} {'mean err (ticks)':>16} {'max err (tau_s)':>15}"
                  f" {'mean err (tau_s)':>16}"]
        for D in res["delays"]:
            name = f"{D['layer']}" + (f" {D['name']}" if D["name"] else "")
            lines.append(f"  {name[:14]:<14} {D['n_delays']:>6} {D['max_delay']:>11.4g} {D['max_code']:>8}"
                         f" {D['clipped']:>7} {D['max_abs_error_ticks']:>15.3g} {D['mean_abs_error_ticks']:>16.3g}"
                         f" {D['max_abs_error']:>15.3g} {D['mean_abs_error']:>16.3g}")
    if res["warnings"]:
        lines += ["", "warnings:"] + [f"  - {w}" for w in res["warnings"]]
    return "\n".join(lines)


def plot_occupancy(compiled: CompiledNetwork, path: str | Path) -> None:
    """Draw both halves' synapse arrays of every stage (rows x columns): colour = layer, saturation =
    |weight| / 63 (allocated zero-weight synapses stay pale), white = unused. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cmap = plt.get_cmap("tab10")
    n_st = compiled.n_stages
    fig, axes = plt.subplots(n_st, chip.N_HALVES, figsize=(10, 5 * n_st), squeeze=False)
    for s, st in enumerate(compiled.stages):
        cfg = st.config
        for h in range(chip.N_HALVES):
            lab = cfg.synapses.labels[h].astype(np.int64)
            w = cfg.synapses.weights[h].astype(np.float64) / chip.WEIGHT_MAX
            img = np.ones((chip.ROWS_PER_HALF, chip.COLUMNS_PER_HALF, 3))
            for addr, k in enumerate(st.layers):
                m = lab == addr
                color = np.asarray(cmap(k % 10)[:3])
                strength = 0.2 + 0.8 * w[m]
                img[m] = 1.0 - strength[:, None] * (1.0 - color[None, :])
            ax = axes[s, h]
            ax.imshow(img, interpolation="nearest", aspect="equal")
            ax.set_title(f"stage {s}, half {h}")
            ax.set_xlabel("column (neuron)")
            ax.set_ylabel("row (even exc, odd inh)")
        handles = [Patch(color=cmap(k % 10), label=f"layer {k}" + (f" {compiled.layers[k].name}"
                                                                    if compiled.layers[k].name else ""))
                   for k in st.layers]
        axes[s, -1].legend(handles=handles, loc="upper right", fontsize=8)
    fig.suptitle("synapse array occupancy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
