"""``compile()``: design rules -> placement -> quantisation -> chip configurations -> artifact.

Axonal delays (one per input row of a layer, model units) become the delay code of every route of that row's
source (its excitatory and inhibitory row in each half it reaches), quantised to the delay lines' 8-tick step at
the compile's realised tau_s (:func:`firstspike.compiler.quantize.delay_codes`); a source feeds one layer, so the
mapping is exact up to that step. The artifact reports the error per layer (``delay_quantization``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from firstspike.compiler import rules
from firstspike.compiler.artifact import COMPILER_VERSION, CompiledNetwork, LayerMap, Stage
from firstspike.compiler.ir import Network
from firstspike.compiler.options import CompileOptions
from firstspike.compiler.placement import RESERVED_LABEL, LayerPlacement, place
from firstspike.compiler.quantize import (
    choose_scale,
    delay_codes,
    delay_report,
    digitize,
    neuron_codes,
    quantization_report,
    tau_codes,
)
from firstspike.hal import calibration, chip
from firstspike.hal.config import ChipConfig, Routing, RowMode

__all__ = ["compile", "update_weights"]


def compile(
    network: Network,
    options: CompileOptions | None = None,
    *,
    weight_scale: float | tuple[float | None, ...] | None = None,
    tau_s_ticks: float = float(chip.NOMINAL_TAU_S_TICKS),
    allow_split: bool = True,
    keep_source: bool = True,
) -> CompiledNetwork:
    """Compile a network for the chip.

    Either pass ``options`` or the keyword options (see :class:`CompileOptions`). Raises
    :class:`~firstspike.compiler.errors.DesignRuleErrors` listing every violated design rule. Deterministic: the same
    network and options give the same artifact bytes. ``keep_source`` stores the IR in the artifact.
    """
    if not isinstance(network, Network):
        raise TypeError(f"compile() takes a firstspike.compiler.ir.Network, not {type(network).__name__}")
    kw = CompileOptions(weight_scale=weight_scale, tau_s_ticks=tau_s_ticks, allow_split=allow_split)
    if options is not None and kw != CompileOptions():
        raise TypeError("compile(): pass either options=CompileOptions(...) or the keyword options, not both")
    opt = options or kw
    warnings = rules.check(network, opt)
    placement = place(network, allow_split=opt.allow_split)
    tau_code, _ = tau_codes(opt.tau_s_ticks, 1.0)
    tau_s_ticks = calibration.tau_code_to_ticks(tau_code)

    layer_maps: list[LayerMap] = []
    reports = []
    delay_code_lists: list[np.ndarray | None] = []
    delay_reports = []
    for lp in placement.layers:
        L = network.layers[lp.layer]
        finite = L.weights[np.isfinite(L.weights)]
        scale = choose_scale(float(np.max(np.abs(finite))) if finite.size else 0.0, opt.layer_weight_scale(lp.layer))
        tau_ratio = float(np.asarray(L.tau_ratio).reshape(-1)[0])
        v_reset = float(np.asarray(L.v_reset).reshape(-1)[0])
        codes = neuron_codes(scale, tau_ratio, v_reset, opt.tau_s_ticks)
        layer_maps.append(LayerMap(
            index=lp.layer, name=L.name, stage=lp.stage, n_in=L.n_in, n_out=L.n_out, bias_time=L.bias_time,
            bias_channel=lp.bias_channel, address=lp.address, merged=lp.merged, neuron_ids=lp.neuron_ids,
            source_kind=lp.source_kind, source_id=lp.source_id, source_rows=lp.source_rows, q=scale.q,
            codes=codes, tau_ratio=tau_ratio, fixed_scale=scale.fixed,
        ))
        reports.append(quantization_report(lp.layer, L.name, L.weights, scale))
        # other kinds pass the rules only as all zeros: nothing to hold
        axonal = L.delays if L.delays is not None and L.delay_kind == "axonal" else None
        delay_code_lists.append(None if axonal is None else delay_codes(axonal, tau_s_ticks))
        if axonal is not None:
            delay_reports.append(delay_report(lp.layer, L.name, axonal, tau_s_ticks))

    stages = []
    for sp in placement.stages:
        cfg = _stage_config([placement.layers[k] for k in sp.layers], [layer_maps[k] for k in sp.layers],
                            [network.layers[k].weights for k in sp.layers],
                            [delay_code_lists[k] for k in sp.layers])
        stages.append(Stage(sp.index, cfg, sp.layers, sp.input_source, sp.input_channels))

    return CompiledNetwork(
        n_inputs=network.n_inputs,
        layers=tuple(layer_maps),
        stages=tuple(stages),
        tau_s_ticks=tau_s_ticks,
        quantization=tuple(reports),
        source_sha256=network.sha256(),
        compiler_version=COMPILER_VERSION,
        options=opt,
        warnings=tuple(str(w) for w in warnings),
        source=network if keep_source else None,
        delay_quantization=tuple(delay_reports),
    )


def _stage_config(placements: list[LayerPlacement], maps: list[LayerMap], weights: list[np.ndarray],
                  codes: list[np.ndarray | None]) -> ChipConfig:
    """Build one chip configuration: neuron codes, merged columns, row modes, routes (with each source's delay code
    on all its routes), labels, weights."""
    cfg = ChipConfig()
    cfg.synapses.labels[:] = RESERVED_LABEL
    route_cols: list[list[np.ndarray]] = [[], [], [], [], [], []]  # kind, source, half, row, address, delay
    for lp, lm, w, dc in zip(placements, maps, weights, codes, strict=True):
        ids = lp.neuron_ids
        if lp.merged:
            cfg.neurons.merged_columns[ids] = True
            ids = np.concatenate([ids, ids + chip.COLUMNS_PER_HALF])  # both halves: same codes, both enabled
        c = lm.codes
        cfg.neurons.set(ids, leak=c.leak, threshold=c.threshold, reset=c.reset, tau_mem=c.tau_mem,
                        tau_syn_exc=c.tau_syn, tau_syn_inh=c.tau_syn, refractory=c.refractory,
                        gain_exc=c.gain, gain_inh=c.gain, enabled=1)
        rows = lp.source_rows
        src_i, half = np.nonzero(rows[:, :, 0] >= 0)
        for sign, mode in ((0, RowMode.EXCITATORY), (1, RowMode.INHIBITORY)):
            r = rows[src_i, half, sign]
            cfg.row_modes[half, r] = mode
            route_cols[0].append(lp.source_kind[src_i])
            route_cols[1].append(lp.source_id[src_i])
            route_cols[2].append(half)
            route_cols[3].append(r)
            route_cols[4].append(np.full(len(r), lp.address))
            route_cols[5].append(np.zeros(len(r), dtype=np.int64) if dc is None else dc[src_i].astype(np.int64))
        exc, inh = lm.synapse_indices
        labels = cfg.synapses.labels.reshape(-1)
        labels[exc] = lp.address
        labels[inh] = lp.address
        d, neg = digitize(w, lm.q)
        flat = cfg.synapses.weights.reshape(-1)
        flat[exc] = np.where(neg, 0, d)
        flat[inh] = np.where(neg, d, 0)
    cfg.routing = Routing.from_lists(*(np.concatenate(col) for col in route_cols))
    return cfg.validate()


def update_weights(compiled: CompiledNetwork, weights: list[Any]) -> ChipConfig:
    """Re-quantise float weights (one matrix per layer, model units) with the artifact's FIXED per-layer
    steps and return the new single-stage ChipConfig; it differs from ``compiled.config`` only in synapse
    weights, so ``compiled.config.diff(new)`` is small. See :meth:`CompiledNetwork.update_stage_weights`
    for split networks."""
    return compiled.update_weights(weights)
