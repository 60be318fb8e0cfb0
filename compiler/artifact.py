"""The compiler's output: :class:`CompiledNetwork`, one versioned file (``.fsn``) holding all a runtime
needs to run and train a network on a chip without the compiler's internals.

File layout: hal's checksummed array container (see :mod:`firstspike.hal.encoding`) with magic ``FSNW``, version 1:

* header: canonical JSON (sorted keys, no timestamps) with the compiler version, the source network's
  SHA-256, tau_s in ticks, the options, per-layer maps (stage, address, merged, bias channel and time,
  weight step q and all neuron codes), the stage list and the quantisation report (and, for a network with
  delays, the delay quantisation report; the delays themselves are the stage configurations' route delays);
* arrays: each stage's ChipConfig as its own ``to_bytes()`` (uint8), each stage's input channels, per
  layer the neuron ids, source kinds/ids and source rows, and optionally the source network's IR bytes;
  for a network calibrated with per-synapse factors (layer meta ``"synapse_corrected": true``) per layer
  ``layer{k}.synapse_gain``, uint16 (2, n_sources, n_out): the factor x 2^14 of each weight's excitatory and
  inhibitory synapse (the calibration's own grid).

Same compiled network -> same bytes. :meth:`CompiledNetwork.from_bytes` raises
:class:`~firstspike.compiler.errors.ArtifactDecodeError` on any truncated, corrupted or foreign input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from firstspike.compiler._weight_writer import write_layer_weights
from firstspike.compiler.errors import ArtifactDecodeError, CompileError
from firstspike.compiler.ir import Network
from firstspike.compiler.options import CompileOptions
from firstspike.compiler.placement import synapse_indices
from firstspike.compiler.quantize import (
    LayerDelayReport,
    LayerQuantReport,
    NeuronCodes,
    delay_codes,
    delay_values,
    digitize,
    signed_steps,
)
from firstspike.hal import chip
from firstspike.hal.config import ChipConfig, NeuronParams, Routing, SynapseArrays
from firstspike.hal.encoding import decode_arrays, encode_arrays
from firstspike.hal.errors import ConfigDecodeError

#: per-synapse factors are stored as ``round(factor * 2^14)`` (uint16), the calibration file's grid
_SYNAPSE_SCALE = 1 << 14
ARTIFACT_MAGIC = b"FSNW"
ARTIFACT_VERSION = 1
ARTIFACT_FORMAT = "firstspike.compiled.v1"
COMPILER_VERSION = "1.0"

__all__ = ["ARTIFACT_FORMAT", "ARTIFACT_VERSION", "COMPILER_VERSION", "CompiledNetwork", "LayerMap", "Stage"]


def _frozen(a: np.ndarray, dtype: str) -> np.ndarray:
    out = np.array(a, dtype=np.dtype(dtype), copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class LayerMap:
    """One layer on the chip.

    ``neuron_ids``: chip neuron id (on its stage's chip) of each logical neuron, in layer order; a merged
    neuron is its half-0 id. ``source_kind``/``source_id``: the event source of each weight row (INPUT
    channel or NEURON id). ``source_rows[i, half, 0/1]``: excitatory/inhibitory row of source i in that
    half (-1: not routed there). ``q``: the exact model weight of one digital step, so the chip's weight
    is ``sign * d * q``. ``codes``: the digital neuron parameters of every neuron of the layer.
    ``synapse_gain``: None, or (on a chip calibrated per synapse) float64 (2, n_sources, n_out), the measured
    factor of each weight's excitatory [0] and inhibitory [1] synapse: a weight then becomes
    ``d = round(|w| / (q * factor))`` on the synapse of its sign, and the chip's weight is ``sign * d * q * factor``.
    """

    index: int
    name: str
    stage: int
    n_in: int
    n_out: int
    bias_time: float | None
    bias_channel: int | None
    address: int
    merged: bool
    neuron_ids: np.ndarray
    source_kind: np.ndarray
    source_id: np.ndarray
    source_rows: np.ndarray
    q: float
    codes: NeuronCodes
    tau_ratio: float
    fixed_scale: bool
    synapse_gain: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.synapse_gain is not None:
            g = np.array(self.synapse_gain, dtype=np.float64, copy=True)
            if g.shape != (2, *self.weight_shape) or not np.isfinite(g).all() or g.min() <= 0 or g.max() >= 4:
                raise CompileError(f"layer {self.index}: synapse_gain must be finite factors in (0, 4) of shape "
                                   f"{(2, *self.weight_shape)}, got shape {g.shape}")
            g = np.rint(g * _SYNAPSE_SCALE) / _SYNAPSE_SCALE  # the file's grid
            g.setflags(write=False)
            object.__setattr__(self, "synapse_gain", g)
        object.__setattr__(self, "neuron_ids", _frozen(self.neuron_ids, "<i8"))
        object.__setattr__(self, "source_kind", _frozen(self.source_kind, "|u1"))
        object.__setattr__(self, "source_id", _frozen(self.source_id, "<i8"))
        object.__setattr__(self, "source_rows", _frozen(self.source_rows, "<i8"))

    @property
    def n_sources(self) -> int:
        return self.n_in + int(self.bias_time is not None)

    @property
    def weight_shape(self) -> tuple[int, int]:
        """Shape of this layer's weight matrix: (n_in [+1 bias], n_out)."""
        return (self.n_sources, self.n_out)

    @cached_property
    def synapse_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices into the (2, 256, 256) synapse arrays of each weight's (exc, inh) synapse."""
        return synapse_indices(self.neuron_ids, self.merged, self.source_rows)

    def _meta(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "stage": self.stage,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "bias_time": self.bias_time,
            "bias_channel": self.bias_channel,
            "address": self.address,
            "merged": self.merged,
            "q": self.q,
            "codes": self.codes.to_dict(),
            "tau_ratio": self.tau_ratio,
            "fixed_scale": self.fixed_scale,
            **({"synapse_corrected": True} if self.synapse_gain is not None else {}),
        }

    def digitize(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model weights -> (magnitudes 0..63, negative mask) with this layer's step q and, if present, each
        synapse's factor divided out before rounding."""
        if self.synapse_gain is None:
            return digitize(weights, self.q)
        w = np.asarray(weights, dtype=np.float64)
        neg = w < 0
        factor = np.where(neg, self.synapse_gain[1], self.synapse_gain[0])
        d = np.minimum(np.rint(np.abs(w) / (self.q * factor)), chip.WEIGHT_MAX).astype(np.uint8)
        return d, neg

    def realised(self, d: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """The model weights the chip realises for magnitudes ``d`` (``sign * d * q``, times the synapse's
        factor where the layer is synapse-corrected), float64."""
        w = signed_steps(d, negative) * self.q
        if self.synapse_gain is None:
            return w
        return w * np.where(negative, self.synapse_gain[1], self.synapse_gain[0])


@dataclass(frozen=True, eq=False)
class Stage:
    """One chip configuration. ``input_source``: -1 when it reads the network inputs, else the layer whose
    recorded spikes are replayed into it; ``input_channels[k]``: the channel of stage input k."""

    index: int
    config: ChipConfig
    layers: tuple[int, ...]
    input_source: int
    input_channels: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_channels", _frozen(self.input_channels, "<i8"))


@dataclass(frozen=True, eq=False)
class CompiledNetwork:
    """A network compiled for the chip (see the module docstring for the file format).

    ``tau_s_ticks`` is the REALISED synaptic time constant (code x 4 ticks): the runtime converts model
    time to ticks with it. ``quantization`` holds one report per layer; ``delay_quantization`` one per layer that
    has axonal delays; ``warnings`` the design-rule warnings (e.g. clipped weights); ``source`` the compiled IR (if
    kept).

    Training in the loop updates weights and delays through :meth:`update_stage_parameters` (a runtime session's
    ``update_parameters`` does it and sends the diff): per layer a (n_in [+1 bias], n_out) weight matrix and a
    (n_in [+1],) vector of axonal delays in model units (tau_s) (a bias row's delay is the delay line of the
    layer's own bias channel), e.g. a TTFS model's axonal delays::

        delays = [layer.delay for layer in model.layers]                 # model units, (n_in [+1],) each
        configs = compiled.update_stage_parameters(weights, delays)   # codes round(d * tau_s_ticks / 8), clipped
        realised = compiled.realised_delays(configs)                  # what the chip holds: code * 8 / tau_s_ticks
    """

    n_inputs: int
    layers: tuple[LayerMap, ...]
    stages: tuple[Stage, ...]
    tau_s_ticks: float
    quantization: tuple[LayerQuantReport, ...]
    source_sha256: str
    compiler_version: str
    options: CompileOptions
    warnings: tuple[str, ...] = ()
    source: Network | None = None
    calibration: dict[str, Any] | None = None  # identity of the chip calibration applied to the stage configs
    delay_quantization: tuple[LayerDelayReport, ...] = ()

    # ---- what a runtime reads ------------------------------------------------------------------
    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def config(self) -> ChipConfig:
        """The chip configuration of a single-stage network (raises for split networks)."""
        if len(self.stages) != 1:
            raise CompileError(f"the network is split into {len(self.stages)} stages; use .stages[k].config")
        return self.stages[0].config

    @property
    def input_channels(self) -> np.ndarray:
        """Input channel of each network input (stage 0)."""
        return self.stages[0].input_channels

    @property
    def bias_inputs(self) -> list[tuple[int, float] | None]:
        """Per layer (input channel, bias spike time in model units) of its bias, or None."""
        return [None if L.bias_time is None else (int(L.bias_channel), L.bias_time) for L in self.layers]  # type: ignore[arg-type]

    @property
    def output_neuron_ids(self) -> list[np.ndarray]:
        """Per layer the chip neuron id of each logical neuron, in layer order."""
        return [L.neuron_ids for L in self.layers]

    @property
    def weight_steps(self) -> list[float]:
        """Per layer q: the model weight of one digital weight step."""
        return [L.q for L in self.layers]

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """Per layer the weight matrix shape (n_in [+1 bias], n_out)."""
        return [L.weight_shape for L in self.layers]

    @property
    def delay_step(self) -> float:
        """Model time (tau_s) of one delay code step: 8 ticks / ``tau_s_ticks``."""
        return float(delay_values(np.ones(1), self.tau_s_ticks)[0])

    @property
    def max_delay(self) -> float:
        """The longest delay a delay line holds, model units (tau_s): 511 steps."""
        return float(delay_values(np.array([chip.DELAY_CODE_MAX]), self.tau_s_ticks)[0])

    @cached_property
    def _layer_routes(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """Per layer: the indices of its routes in its stage configuration's route table (those of its sources that
        carry its address) and the weight row (source) of each. The table's keys never change after compiling, so
        the indices hold for every configuration :meth:`update_stage_parameters` makes."""
        out = []
        for L in self.layers:
            r = self.stages[L.stage].config.routing.routes
            lut = np.full(2 * chip.N_INPUT_CHANNELS, -1, dtype=np.int64)
            lut[L.source_kind.astype(np.int64) * chip.N_INPUT_CHANNELS + L.source_id] = np.arange(L.n_sources)
            row = lut[r["kind"].astype(np.int64) * chip.N_INPUT_CHANNELS + r["source"].astype(np.int64)]
            mine = np.flatnonzero((row >= 0) & (r["address"] == L.address))
            out.append((mine, row[mine]))
        return tuple(out)

    # ---- training fast path --------------------------------------------------------------------
    def _checked_weights(self, weights: Sequence[Any]) -> list[np.ndarray]:
        """Each layer's float weights as float64 arrays, checked: one matrix per layer, of its shape, finite."""
        if len(weights) != len(self.layers):
            raise ValueError(f"{len(weights)} weight matrices given; the network has {len(self.layers)} layers")
        out = []
        for L, w in zip(self.layers, weights, strict=True):
            if hasattr(w, "detach"):  # torch tensor, without importing torch
                w = w.detach().cpu().numpy()
            w = np.asarray(w, dtype=np.float64)
            if w.shape != L.weight_shape:
                raise ValueError(f"layer {L.index}: weights shape {w.shape}; expected {L.weight_shape}")
            if not np.isfinite(w).all():
                raise ValueError(f"layer {L.index}: weights contain NaN or inf")
            out.append(w)
        return out

    def _digitize(self, weights: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [L.digitize(w) for L, w in zip(self.layers, self._checked_weights(weights), strict=True)]

    def quantize(self, weights: Sequence[Any]) -> list[np.ndarray]:
        """The weights the chip realises for these float weights (``sign * d * q`` per layer, float64; on a chip
        calibrated per synapse times each synapse's measured factor)."""
        return [L.realised(d, n) for L, (d, n) in zip(self.layers, self._digitize(weights), strict=True)]

    def delay_codes(self, delays: Sequence[Any]) -> list[np.ndarray | None]:
        """Per layer the delay code of each weight row for these axonal delays (model units, tau_s): an array of
        shape (n_in [+1 bias],) (the bias row's delay is its bias channel's) or (n_in,) (the bias row then gets 0),
        or None (that layer's delays stay). Codes are ``round(d * tau_s_ticks / 8)`` clipped to 0..511, like weights
        beyond 63 steps clip to 63; NaN or inf raise ValueError."""
        if len(delays) != len(self.layers):
            raise ValueError(f"{len(delays)} delay arrays given; the network has {len(self.layers)} layers")
        out: list[np.ndarray | None] = []
        for L, d in zip(self.layers, delays, strict=True):
            if d is None:
                out.append(None)
                continue
            if hasattr(d, "detach"):  # torch tensor, without importing torch
                d = d.detach().cpu().numpy()
            a = np.asarray(d, dtype=np.float64).reshape(-1)
            if L.bias_time is not None and a.shape == (L.n_in,):
                a = np.append(a, 0.0)
            if a.shape != (L.n_sources,):
                raise ValueError(f"layer {L.index}: {a.shape} delays; expected ({L.n_sources},), one per weight row"
                                 + (f" (the bias row's 0), or ({L.n_in},)" if L.bias_time is not None else ""))
            if not np.isfinite(a).all():
                raise ValueError(f"layer {L.index}: delays contain NaN or inf")
            out.append(delay_codes(a, self.tau_s_ticks))
        return out

    def quantize_delays(self, delays: Sequence[Any]) -> list[np.ndarray | None]:
        """The axonal delays the chip realises for these float delays (model units, per layer, None stays None):
        ``code * 8 / tau_s_ticks`` with the codes of :meth:`delay_codes`."""
        return [None if c is None else delay_values(c, self.tau_s_ticks) for c in self.delay_codes(delays)]

    def realised_delays(self, configs: Sequence[ChipConfig] | None = None) -> list[np.ndarray]:
        """Per layer the axonal delay of each weight row (n_in [+1 bias],), model units, as the route delays of
        ``configs`` (one per stage; default: the compiled ones) realise them. Raises CompileError if a source's
        routes disagree (a configuration the compiler did not make)."""
        cfgs = [s.config for s in self.stages] if configs is None else list(configs)
        if len(cfgs) != len(self.stages):
            raise ValueError(f"{len(cfgs)} config(s) given for a network of {len(self.stages)} stage(s)")
        out = []
        for L, (idx, row) in zip(self.layers, self._layer_routes, strict=True):
            codes = cfgs[L.stage].routing.routes["delay"][idx].astype(np.int64)
            lo = np.full(L.n_sources, chip.DELAY_CODE_MAX + 1, dtype=np.int64)
            hi = np.zeros(L.n_sources, dtype=np.int64)
            np.minimum.at(lo, row, codes)
            np.maximum.at(hi, row, codes)
            routed = lo <= chip.DELAY_CODE_MAX
            if np.any(routed & (lo != hi)):
                i = int(np.flatnonzero(routed & (lo != hi))[0])
                raise CompileError(f"layer {L.index} input {i}: its routes have delay codes {lo[i]}..{hi[i]};"
                                   " an axonal delay is one code on all routes of a source")
            out.append(delay_values(np.where(routed, hi, 0), self.tau_s_ticks))
        return out

    def update_stage_parameters(self, weights: Sequence[Any] | None = None, delays: Sequence[Any] | None = None, *,
                                base: Sequence[ChipConfig] | None = None) -> list[ChipConfig]:
        """New configs (one per stage): ``base`` (default: the compiled configs; a session passes the ones the
        device has) with these float weights re-quantised with the artifact's FIXED per-layer steps q (None: keep
        ``base``'s synapse weights) and these axonal delays (model units) as route delay codes (:meth:`delay_codes`;
        None, or None for a layer: keep ``base``'s). Nothing else differs from ``base``, so the diff to it carries
        only changed weights and delays."""
        cfgs = [s.config for s in self.stages] if base is None else list(base)
        if len(cfgs) != len(self.stages) or any(len(c.routing) != len(s.config.routing)
                                                for c, s in zip(cfgs, self.stages, strict=True)):
            raise ValueError("base must be one configuration per stage with the compiled routes")
        new_w = [c.synapses.weights for c in cfgs]
        if weights is not None:
            checked = self._checked_weights(weights)
            new_w = [w.copy() for w in new_w]
            for L, w in zip(self.layers, checked, strict=True):
                write_layer_weights(new_w[L.stage].reshape(-1), w, L.q, L.synapse_gain, *L.synapse_indices)
        new_d: list[np.ndarray | None] = [None] * len(cfgs)
        if delays is not None:
            for L, c, (idx, row) in zip(self.layers, self.delay_codes(delays), self._layer_routes, strict=True):
                if c is None:
                    continue
                stage_d = new_d[L.stage]
                if stage_d is None:
                    stage_d = new_d[L.stage] = cfgs[L.stage].routing.routes["delay"].copy()
                stage_d[idx] = c[row]
        return [_with_parameters(c, w, d) for c, w, d in zip(cfgs, new_w, new_d, strict=True)]

    def update_stage_weights(self, weights: Sequence[Any]) -> list[ChipConfig]:
        """New configs (one per stage) holding these float weights, re-quantised with the artifact's FIXED
        per-layer steps q (and per-synapse factors, if calibrated so). Only synapse weights differ from the
        compiled configs."""
        return self.update_stage_parameters(weights)

    def update_weights(self, weights: Sequence[Any]) -> ChipConfig:
        """Single-stage :meth:`update_stage_weights`: the new ChipConfig (differs only in synapse weights)."""
        if len(self.stages) != 1:
            raise CompileError(f"the network is split into {len(self.stages)} stages; use update_stage_weights")
        return self.update_stage_weights(weights)[0]

    # ---- file ----------------------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {
            "format": ARTIFACT_FORMAT,
            "compiler_version": self.compiler_version,
            "source_sha256": self.source_sha256,
            "n_inputs": self.n_inputs,
            "tau_s_ticks": self.tau_s_ticks,
            "options": self.options.to_dict(),
            "warnings": list(self.warnings),
            "layers": [L._meta() for L in self.layers],
            "stages": [{"index": s.index, "layers": list(s.layers), "input_source": s.input_source}
                       for s in self.stages],
            "quantization": [r.to_dict() for r in self.quantization],
            "has_source": self.source is not None,
            **({"calibration": self.calibration} if self.calibration is not None else {}),
            **({"delay_quantization": [r.to_dict() for r in self.delay_quantization]}
               if self.delay_quantization else {}),
        }

    def to_bytes(self) -> bytes:
        """The ``.fsn`` file content (deterministic)."""
        header = json.dumps(self._header(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        arrays: dict[str, np.ndarray] = {}
        for s in self.stages:
            arrays[f"stage{s.index}.config"] = np.frombuffer(s.config.to_bytes(), dtype=np.uint8)
            arrays[f"stage{s.index}.input_channels"] = s.input_channels.astype("<i4")
        for L in self.layers:
            arrays[f"layer{L.index}.neuron_ids"] = L.neuron_ids.astype("<i4")
            arrays[f"layer{L.index}.source_kind"] = L.source_kind
            arrays[f"layer{L.index}.source_id"] = L.source_id.astype("<i4")
            arrays[f"layer{L.index}.source_rows"] = L.source_rows.astype("<i4")
            if L.synapse_gain is not None:
                arrays[f"layer{L.index}.synapse_gain"] = np.rint(L.synapse_gain * _SYNAPSE_SCALE).astype("<u2")
        if self.source is not None:
            arrays["source"] = np.frombuffer(self.source.to_bytes(), dtype=np.uint8)
        return encode_arrays(ARTIFACT_MAGIC, ARTIFACT_VERSION, arrays, header=header.encode("utf-8"))

    @classmethod
    def from_bytes(cls, data: bytes) -> CompiledNetwork:
        """Decode an ``.fsn`` file; any defect raises :class:`ArtifactDecodeError`."""
        try:
            _, header, arrays = decode_arrays(data, ARTIFACT_MAGIC, (ARTIFACT_VERSION,))
        except ConfigDecodeError as e:
            raise ArtifactDecodeError(f"not a valid compiled network file: {e}") from None
        try:
            out = _decode(json.loads(header.decode("utf-8")), arrays)
        except ArtifactDecodeError:
            raise
        except (ConfigDecodeError, CompileError, KeyError, TypeError, ValueError, AttributeError, IndexError,
                RecursionError) as e:
            raise ArtifactDecodeError(f"compiled network file is malformed: {type(e).__name__}: {e}") from None
        if out.to_bytes() != bytes(data):
            raise ArtifactDecodeError("compiled network file is not in canonical form")
        return out

    def save(self, path: str | Path) -> None:
        """Write the ``.fsn`` file."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> CompiledNetwork:
        """Read an ``.fsn`` file written by :meth:`save`."""
        return cls.from_bytes(Path(path).read_bytes())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompiledNetwork):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]


def _with_parameters(base: ChipConfig, weights: np.ndarray, delays: np.ndarray | None) -> ChipConfig:
    """A copy of ``base`` with the synapse weights ``weights`` and the route delay codes ``delays`` (None: base's;
    every other array copied, so the result is independent).

    Weights come from 6-bit magnitudes and codes from :func:`delay_codes` (0..511), and the route keys are
    base's, so no range check is needed; this skips ChipConfig.copy()'s full validation because it runs every
    training step.
    """
    neurons = NeuronParams({k: v.copy() for k, v in base.neurons.values.items()},
                           merged_columns=base.neurons.merged_columns.copy())
    routing = Routing.__new__(Routing)
    routing.routes = base.routing.routes.copy()  # already sorted and unique; delays never change the order
    if delays is not None:
        routing.routes["delay"] = delays
    w = weights if weights is not base.synapses.weights else weights.copy()
    return ChipConfig(neurons=neurons, synapses=SynapseArrays(w, base.synapses.labels.copy()),
                      row_modes=base.row_modes.copy(), routing=routing)


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise ArtifactDecodeError(f"compiled network file is inconsistent: {what}")


def _int(x: Any, lo: int, hi: int, what: str) -> int:
    _check(isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi, f"{what}={x!r} not in [{lo}, {hi}]")
    return int(x)


def _decode(h: dict[str, Any], arrays: dict[str, np.ndarray]) -> CompiledNetwork:
    _check(isinstance(h, dict) and h.get("format") == ARTIFACT_FORMAT, f"format is not {ARTIFACT_FORMAT!r}")
    n_inputs = _int(h["n_inputs"], 1, 1 << 30, "n_inputs")
    stages_meta = h["stages"]
    _check(isinstance(stages_meta, list) and len(stages_meta) >= 1, "no stages")
    stages = []
    for k, sm in enumerate(stages_meta):
        _check(sm["index"] == k, f"stage {k} index")
        cfg_bytes = arrays[f"stage{k}.config"]
        _check(cfg_bytes.dtype == np.uint8 and cfg_bytes.ndim == 1, f"stage {k} config array")
        cfg = ChipConfig.from_bytes(cfg_bytes.tobytes())
        ch = arrays[f"stage{k}.input_channels"]
        _check(ch.ndim == 1 and (ch.size == 0 or (ch.min() >= 0 and ch.max() < chip.N_INPUT_CHANNELS)),
               f"stage {k} input channels")
        layers = tuple(_int(x, 0, 1 << 20, f"stage {k} layer") for x in sm["layers"])
        stages.append(Stage(k, cfg, layers, _int(sm["input_source"], -1, 1 << 20, "input_source"), ch))
    layers_meta = h["layers"]
    _check(isinstance(layers_meta, list) and len(layers_meta) >= 1, "no layers")
    layer_maps = []
    for k, m in enumerate(layers_meta):
        _check(m["index"] == k, f"layer {k} index")
        stage = _int(m["stage"], 0, len(stages) - 1, f"layer {k} stage")
        n_in, n_out = _int(m["n_in"], 1, 1 << 20, "n_in"), _int(m["n_out"], 1, chip.N_NEURONS, "n_out")
        bias_time = m["bias_time"]
        n_src = n_in + int(bias_time is not None)
        ids = arrays[f"layer{k}.neuron_ids"]
        kind = arrays[f"layer{k}.source_kind"]
        src = arrays[f"layer{k}.source_id"]
        rows = arrays[f"layer{k}.source_rows"]
        _check(ids.shape == (n_out,) and ids.min() >= 0 and ids.max() < chip.N_NEURONS, f"layer {k} neuron ids")
        _check(kind.shape == (n_src,) and src.shape == (n_src,) and kind.dtype == np.uint8, f"layer {k} sources")
        _check(rows.shape == (n_src, chip.N_HALVES, 2) and rows.min() >= -1 and rows.max() < chip.ROWS_PER_HALF,
               f"layer {k} source rows")
        q = float(m["q"])
        _check(np.isfinite(q) and q > 0, f"layer {k} q={q}")
        codes = NeuronCodes(**{f: _int(v, 0, chip.PARAM_MAX, f"layer {k} {f}") for f, v in m["codes"].items()})
        bias_channel = m["bias_channel"]
        gain = None
        if m.get("synapse_corrected", False):
            _check(m["synapse_corrected"] is True, f"layer {k} synapse_corrected")
            codes_u2 = arrays[f"layer{k}.synapse_gain"]
            _check(codes_u2.dtype == np.dtype("<u2"), f"layer {k} synapse_gain dtype {codes_u2.dtype}")
            gain = codes_u2.astype(np.float64) / _SYNAPSE_SCALE
        lm = LayerMap(k, str(m["name"]), stage, n_in, n_out, None if bias_time is None else float(bias_time),
                      None if bias_channel is None else _int(bias_channel, 0, chip.N_INPUT_CHANNELS - 1, "bias"),
                      _int(m["address"], 0, chip.N_LABELS - 1, "address"), bool(m["merged"]), ids, kind, src, rows,
                      q, codes, float(m["tau_ratio"]), bool(m["fixed_scale"]), gain)
        lm.synapse_indices  # noqa: B018  # validates the rows against the neurons now, not at first use
        layer_maps.append(lm)
    for st in stages:
        _check(all(0 <= k < len(layer_maps) and layer_maps[k].stage == st.index for k in st.layers),
               f"stage {st.index} lists layers of another stage")
    _check(sorted(k for st in stages for k in st.layers) == list(range(len(layer_maps))), "layers per stage")
    source = Network.from_bytes(arrays["source"].tobytes()) if h["has_source"] else None
    quant = tuple(LayerQuantReport.from_dict(r) for r in h["quantization"])
    _check(len(quant) == len(layer_maps), "quantisation report per layer")
    return CompiledNetwork(
        n_inputs=n_inputs,
        layers=tuple(layer_maps),
        stages=tuple(stages),
        tau_s_ticks=float(h["tau_s_ticks"]),
        quantization=quant,
        source_sha256=str(h["source_sha256"]),
        compiler_version=str(h["compiler_version"]),
        options=CompileOptions.from_dict(h["options"]),
        warnings=tuple(str(w) for w in h["warnings"]),
        source=source,
        calibration=_calibration_identity(h.get("calibration")),
        delay_quantization=tuple(LayerDelayReport.from_dict(r) for r in h.get("delay_quantization", [])),
    )


_IDENTITY_KEYS = {"device_model": str, "serial": int, "spec_version": str, "sha256": str}


def _calibration_identity(c: Any) -> dict[str, Any] | None:
    if c is None:
        return None
    _check(isinstance(c, dict) and set(c) == set(_IDENTITY_KEYS)
           and all(isinstance(c[k], t) and not isinstance(c[k], bool) for k, t in _IDENTITY_KEYS.items()),
           f"calibration identity {c!r}")
    return dict(c)
