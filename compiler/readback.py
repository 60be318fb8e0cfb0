"""Read the effective signed weights (and axonal delays) back from chip configurations.

Only the configuration's routing, labels, row modes, synapse weights and merged columns are used; the
artifact contributes what a reader must know anyway: each layer's event sources (input channel or neuron
id), its neuron ids, its stage and the model weight of one step q. This is the independent check that
placement, labels and quantisation compose to the intended network.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from firstspike.compiler.artifact import CompiledNetwork, LayerMap
from firstspike.compiler.errors import CompileError
from firstspike.hal import chip
from firstspike.hal.config import ChipConfig, RowMode

__all__ = ["effective_delays", "effective_steps", "effective_weights"]

_SIGN = np.zeros(3, dtype=np.int64)
_SIGN[RowMode.EXCITATORY] = 1
_SIGN[RowMode.INHIBITORY] = -1


def effective_steps(config: ChipConfig, layer: LayerMap) -> np.ndarray:
    """Signed digital weight (int64, shape (n_sources, n_out)) of every (source, neuron) pair of a layer:
    the sum over every route of the source into a row of a half the neuron has a column in, of
    ``sign(row mode) * weight`` where the synapse's label equals the route's address."""
    n_src = layer.n_sources
    lut = np.full(2 * chip.N_INPUT_CHANNELS, -1, dtype=np.int64)  # (kind, source) -> weight row
    lut[layer.source_kind.astype(np.int64) * chip.N_INPUT_CHANNELS + layer.source_id] = np.arange(n_src)
    r = config.routing.routes
    src_row = lut[r["kind"].astype(np.int64) * chip.N_INPUT_CHANNELS + r["source"].astype(np.int64)]
    keep = src_row >= 0
    r, src_row = r[keep], src_row[keep]

    ids = layer.neuron_ids
    col = ids % chip.COLUMNS_PER_HALF
    half = ids // chip.COLUMNS_PER_HALF
    merged = (half == 0) & config.neurons.merged_columns[col]
    # Columns of each logical neuron: its own, plus the half-1 column of a merged one.
    col_half = np.concatenate([half, np.ones(int(merged.sum()), dtype=np.int64)])
    col_col = np.concatenate([col, col[merged]])
    col_nrn = np.concatenate([np.arange(len(ids)), np.flatnonzero(merged)])

    out = np.zeros((n_src, len(ids)), dtype=np.int64)
    for h in range(chip.N_HALVES):
        rh = r["half"] == h
        ch = col_half == h
        if not rh.any() or not ch.any():
            continue
        rows = r["row"][rh].astype(np.int64)
        addr = r["address"][rh].astype(np.int64)
        cols = col_col[ch]
        match = config.synapses.labels[h][np.ix_(rows, cols)] == addr[:, None]
        w = config.synapses.weights[h][np.ix_(rows, cols)].astype(np.int64)
        contrib = w * match * _SIGN[config.row_modes[h, rows]][:, None]
        np.add.at(out, (src_row[rh][:, None], col_nrn[ch][None, :]), contrib)
    return out


def effective_weights(config: ChipConfig | Sequence[ChipConfig], compiled: CompiledNetwork) -> list[np.ndarray]:
    """Each layer's signed model weights (n_sources, n_out) as the configuration(s) realise them:
    ``effective_steps * q``. ``config`` is one ChipConfig for a single-stage network, else one per stage."""
    configs = [config] if isinstance(config, ChipConfig) else list(config)
    if len(configs) != compiled.n_stages:
        raise ValueError(f"{len(configs)} config(s) given for a network of {compiled.n_stages} stage(s)")
    return [effective_steps(configs[L.stage], L) * L.q for L in compiled.layers]


def effective_delay_ticks(config: ChipConfig, layer: LayerMap) -> np.ndarray:
    """The delay in ticks (int64, shape (n_sources,)) of each source of a layer: the delay code of its routes that
    carry the layer's address, times 8 ticks (0 for a source without routes). Raises CompileError if the routes of
    one source disagree: that is not an axonal delay."""
    r = config.routing.routes
    out = np.full(layer.n_sources, -1, dtype=np.int64)
    for i in range(layer.n_sources):
        mine = (r["kind"] == layer.source_kind[i]) & (r["source"] == layer.source_id[i])
        mine &= r["address"] == layer.address
        codes = np.unique(r["delay"][mine])
        if len(codes) > 1:
            raise CompileError(f"layer {layer.index} input {i}: routes with delay codes {codes.tolist()}; an axonal"
                               " delay is one code on every route of its source")
        out[i] = int(codes[0]) * chip.DELAY_STEP_TICKS if len(codes) else 0
    return out


def effective_delays(config: ChipConfig | Sequence[ChipConfig], compiled: CompiledNetwork) -> list[np.ndarray]:
    """Each layer's axonal delays (n_sources,), model units (tau_s), as the configuration(s) realise them:
    ``effective_delay_ticks / tau_s_ticks``."""
    configs = [config] if isinstance(config, ChipConfig) else list(config)
    if len(configs) != compiled.n_stages:
        raise ValueError(f"{len(configs)} config(s) given for a network of {compiled.n_stages} stage(s)")
    return [effective_delay_ticks(configs[L.stage], L) / compiled.tau_s_ticks for L in compiled.layers]
