"""Placement and routing: layers onto neuron columns, sources onto synapse rows, labels and routes.

Placement depends only on the architecture (input count, layer sizes, which layers have a bias), never
on weight values or neuron parameters, so re-quantised weights during training change synapse weights
only. The scheme, per stage (one chip configuration):

* A layer whose signed inputs (n_in + bias) exceed one half's 128 row pairs is *merged*: each logical
  neuron joins column c of both halves; its sources are split, the first ceil(n/2) on half 0's rows, the
  rest on half 1's. Merged layers take columns 0.. in layer order (same column in both halves).
* Other layers fill the remaining columns, half 0 first, then half 1, in layer and neuron order; each of
  their sources reaches every half the layer has neurons in.
* Source k of a layer, in a half it reaches, drives row pair (2k, 2k+1): row 2k excitatory, 2k+1
  inhibitory, so every signed input has both rows whatever the sign of its weights. Rows are shared
  between layers: each layer's events carry that layer's address (its index in the stage, 0..62) and its
  synapses carry the same label. Label 63 is reserved for unused synapses and no route carries it.
* Input channels of a stage: its inputs first (the network inputs, or the spikes of the layer before the
  stage), then one channel per bias, in layer order. A hidden neuron's spikes re-enter the routing as
  source kind NEURON with its neuron id (a merged neuron spikes as its half-0 neuron).

Networks larger than one chip are cut into stages of consecutive layers (greedy, deterministic); stage
s > 0 takes the recorded spikes of the last layer of stage s-1 as its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firstspike.compiler.errors import PlacementError
from firstspike.compiler.ir import Network
from firstspike.hal import chip
from firstspike.hal.config import SourceKind

RESERVED_LABEL = chip.N_LABELS - 1  # 63: carried by unused synapses, never by an event
MAX_LAYERS_PER_STAGE = chip.N_LABELS - 1  # one address per layer, 63 reserved
MAX_FAN_IN = chip.N_HALVES * chip.MAX_SIGNED_INPUTS_PER_HALF  # 256 signed inputs with merged columns

__all__ = [
    "MAX_FAN_IN",
    "MAX_LAYERS_PER_STAGE",
    "RESERVED_LABEL",
    "Architecture",
    "LayerPlacement",
    "Placement",
    "StagePlacement",
    "StageUsage",
    "is_merged",
    "partition",
    "place",
    "synapse_indices",
]


@dataclass(frozen=True)
class Architecture:
    """What placement depends on: input count and per layer (n_in, n_out, has_bias)."""

    n_inputs: int
    layers: tuple[tuple[int, int, bool], ...]

    @classmethod
    def of(cls, network: Network) -> Architecture:
        return cls(network.n_inputs, tuple((L.n_in, L.n_out, L.has_bias) for L in network.layers))

    def n_sources(self, k: int) -> int:
        n_in, _, bias = self.layers[k]
        return n_in + int(bias)


def is_merged(n_sources: int) -> bool:
    """A layer needs merged columns when its signed inputs exceed one half's row pairs (128)."""
    return n_sources > chip.MAX_SIGNED_INPUTS_PER_HALF


@dataclass(frozen=True)
class StageUsage:
    """Resources a set of consecutive layers needs on one chip."""

    columns: int  # neuron circuits, merged columns counted twice
    merged_columns: int  # column indices taken in both halves
    layers: int
    channels: int  # input channels: stage inputs + one per bias

    def fits(self) -> bool:
        return (
            self.columns <= chip.N_NEURONS
            and self.merged_columns <= chip.COLUMNS_PER_HALF
            and self.layers <= MAX_LAYERS_PER_STAGE
            and self.channels <= chip.N_INPUT_CHANNELS
        )


def stage_usage(arch: Architecture, layers: list[int]) -> StageUsage:
    """Resources of one stage holding ``layers`` (consecutive layer indices)."""
    cols = merged = bias = 0
    for k in layers:
        _, n_out, has_bias = arch.layers[k]
        m = is_merged(arch.n_sources(k))
        cols += 2 * n_out if m else n_out
        merged += n_out if m else 0
        bias += int(has_bias)
    n_inputs = arch.layers[layers[0]][0] if layers else 0
    return StageUsage(cols, merged, len(layers), n_inputs + bias)


def partition(arch: Architecture, allow_split: bool = True) -> list[list[int]]:
    """Cut the layers into stages (greedy, in order). Without splitting: one stage of all layers.

    A layer that does not fit a chip on its own still gets a stage of its own; the design rules report it.
    """
    n = len(arch.layers)
    if not allow_split:
        return [list(range(n))]
    stages: list[list[int]] = []
    cur: list[int] = []
    for k in range(n):
        if cur and not stage_usage(arch, [*cur, k]).fits():
            stages.append(cur)
            cur = []
        cur.append(k)
    stages.append(cur)
    return stages


@dataclass(frozen=True, eq=False)
class LayerPlacement:
    """Where one layer lives.

    ``neuron_ids``: chip neuron id of each logical neuron (n_out,), the half-0 id for merged ones.
    ``source_kind``/``source_id``: each signed input's event source (n_sources,) in weight-row order:
    INPUT channel or NEURON id. ``source_rows[i, half, 0/1]``: the excitatory/inhibitory row source i
    drives in that half, -1 where it does not reach the half. ``address``: label of the layer's synapses.
    """

    layer: int
    stage: int
    address: int
    merged: bool
    neuron_ids: np.ndarray
    source_kind: np.ndarray
    source_id: np.ndarray
    source_rows: np.ndarray
    bias_channel: int | None


@dataclass(frozen=True, eq=False)
class StagePlacement:
    """One chip configuration's worth of layers.

    ``input_source``: -1 when the stage reads the network inputs, else the index of the layer whose
    spikes (recorded on the previous stage) are replayed as this stage's inputs. ``input_channels[k]``:
    the channel of stage input k.
    """

    index: int
    layers: tuple[int, ...]
    input_source: int
    input_channels: np.ndarray
    usage: StageUsage


@dataclass(frozen=True, eq=False)
class Placement:
    """The whole network's placement: stages and per-layer placements (in layer order)."""

    stages: tuple[StagePlacement, ...]
    layers: tuple[LayerPlacement, ...]


def _place_stage(arch: Architecture, s: int, layers: list[int]) -> tuple[StagePlacement, list[LayerPlacement]]:
    usage = stage_usage(arch, layers)
    if not usage.fits():
        raise PlacementError(
            f"stage {s} (layers {layers}) does not fit one chip: {usage}; run firstspike.compiler.rules.check first"
        )
    first = layers[0]
    n_stage_in = arch.layers[first][0]
    input_channels = np.arange(n_stage_in, dtype=np.int64)
    next_channel = n_stage_in

    merged_flags = [is_merged(arch.n_sources(k)) for k in layers]
    # Column allocation: merged layers first (same column in both halves), then the free columns.
    n_merged_cols = sum(arch.layers[k][1] for k, m in zip(layers, merged_flags, strict=True) if m)
    free = np.concatenate(
        [h * chip.COLUMNS_PER_HALF + np.arange(n_merged_cols, chip.COLUMNS_PER_HALF) for h in range(chip.N_HALVES)]
    )
    merged_cursor = free_cursor = 0

    out: list[LayerPlacement] = []
    prev_ids: np.ndarray | None = None
    for address, (k, merged) in enumerate(zip(layers, merged_flags, strict=True)):
        n_in, n_out, has_bias = arch.layers[k]
        if merged:
            ids = np.arange(merged_cursor, merged_cursor + n_out, dtype=np.int64)
            merged_cursor += n_out
        else:
            ids = free[free_cursor : free_cursor + n_out].astype(np.int64)
            free_cursor += n_out

        n_src = n_in + int(has_bias)
        kind = np.empty(n_src, dtype=np.uint8)
        src = np.empty(n_src, dtype=np.int64)
        if prev_ids is None:  # first layer of the stage: host channels
            kind[:n_in] = SourceKind.INPUT
            src[:n_in] = input_channels
        else:
            kind[:n_in] = SourceKind.NEURON
            src[:n_in] = prev_ids
        bias_channel = None
        if has_bias:
            bias_channel = next_channel
            next_channel += 1
            kind[n_in] = SourceKind.INPUT
            src[n_in] = bias_channel

        rows = np.full((n_src, chip.N_HALVES, 2), -1, dtype=np.int64)
        if merged:
            split = (n_src + 1) // 2
            slot = np.arange(n_src)
            slot[split:] -= split
            half = (np.arange(n_src) >= split).astype(np.int64)
            rows[np.arange(n_src), half, 0] = 2 * slot
            rows[np.arange(n_src), half, 1] = 2 * slot + 1
        else:
            for h in np.unique(ids // chip.COLUMNS_PER_HALF):
                rows[:, h, 0] = 2 * np.arange(n_src)
                rows[:, h, 1] = 2 * np.arange(n_src) + 1
        for a in (ids, kind, src, rows):
            a.setflags(write=False)
        out.append(LayerPlacement(k, s, address, merged, ids, kind, src, rows, bias_channel))
        prev_ids = ids
    input_source = -1 if first == 0 else first - 1
    input_channels.setflags(write=False)
    return StagePlacement(s, tuple(layers), input_source, input_channels, usage), out


def place(network: Network | Architecture, *, allow_split: bool = True) -> Placement:
    """Place a network (deterministic; depends on the architecture only).

    Raises :class:`~firstspike.compiler.errors.PlacementError` when a stage cannot fit; the design rules
    (:func:`firstspike.compiler.rules.check`) report the same problems with all details first.
    """
    arch = network if isinstance(network, Architecture) else Architecture.of(network)
    for k in range(len(arch.layers)):
        if arch.n_sources(k) > MAX_FAN_IN:
            raise PlacementError(f"layer {k}: {arch.n_sources(k)} signed inputs exceed {MAX_FAN_IN}")
    stages: list[StagePlacement] = []
    layers: list[LayerPlacement] = []
    for s, group in enumerate(partition(arch, allow_split)):
        sp, lps = _place_stage(arch, s, group)
        stages.append(sp)
        layers.extend(lps)
    return Placement(tuple(stages), tuple(layers))


def synapse_indices(
    neuron_ids: np.ndarray, merged: bool, source_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into a (2, 256, 256) synapse array of the excitatory and inhibitory synapse of each
    (source i, neuron j) pair, both of shape (n_sources, n_out)."""
    ids = np.asarray(neuron_ids, dtype=np.int64)
    rows = np.asarray(source_rows, dtype=np.int64)
    n_src = rows.shape[0]
    col = ids % chip.COLUMNS_PER_HALF
    if merged:
        reach = rows[:, :, 0] >= 0
        if not np.all(reach.sum(axis=1) == 1):
            raise PlacementError("merged layer: every source must reach exactly one half")
        h_src = np.argmax(reach, axis=1)
        half = np.broadcast_to(h_src[:, None], (n_src, len(ids)))
    else:
        half = np.broadcast_to((ids // chip.COLUMNS_PER_HALF)[None, :], (n_src, len(ids)))
    src = np.broadcast_to(np.arange(n_src)[:, None], half.shape)
    r_exc = rows[src, half, 0]
    r_inh = rows[src, half, 1]
    if np.any(r_exc < 0) or np.any(r_inh < 0):
        raise PlacementError("a source does not reach the half of a neuron it feeds")
    base = half * (chip.ROWS_PER_HALF * chip.COLUMNS_PER_HALF) + col[None, :]
    return base + r_exc * chip.COLUMNS_PER_HALF, base + r_inh * chip.COLUMNS_PER_HALF
