"""The compiler's own small IR: a layered time-to-first-spike network in model units.

Model units (Göltz et al. 2021): times in units of the synaptic time constant tau_s = 1, leak g_l = 1,
E_l = 0, threshold theta = 1; an input of weight w makes the synaptic current jump by w. A layer is a
dense projection from the previous layer's neurons (or the network inputs) onto its neurons. A bias is
an extra input that spikes at ``bias_time``; its weights are the LAST row of the weight matrix.

Both classes are immutable (their arrays are read-only copies), compare by value and hash by the
SHA-256 of their canonical bytes (:meth:`Network.to_bytes`), so the same network always has the same hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firstspike.compiler.errors import IRError
from firstspike.hal.encoding import decode_arrays, encode_arrays
from firstspike.hal.errors import ConfigDecodeError

IR_MAGIC = b"FSIR"
IR_VERSION = 1

#: the kinds of transmission delay a layer can carry (DelGrad): per input row (``axonal``: every connection from
#: input i is delayed by ``delays[i]``), per connection (``synaptic``: ``delays[i, j]``), per neuron (``dendritic``:
#: every input of neuron j is delayed by ``delays[j]``)
DELAY_KINDS = ("axonal", "synaptic", "dendritic")

__all__ = ["DELAY_KINDS", "IR_MAGIC", "IR_VERSION", "Layer", "Network"]


def _to_numpy(x: Any) -> np.ndarray:
    """Array-like (nested lists, numpy, torch tensor) -> float64 numpy array (copy)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        return np.array(x, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as e:
        raise IRError(f"expected an array of numbers, got {type(x).__name__}: {e}") from None


def _canonical(a: np.ndarray) -> np.ndarray:
    """Read-only float64 copy with -0.0 -> 0.0 and one NaN bit pattern, so equal values give equal bytes."""
    a = np.ascontiguousarray(a, dtype=np.float64) + 0.0
    a[np.isnan(a)] = np.nan
    a.setflags(write=False)
    return a


def _param(value: Any, n_out: int, what: str) -> float | np.ndarray:
    """A neuron parameter: a float (uniform) or a per-neuron float64 array of shape (n_out,).

    Uniform arrays collapse to a float so that the same network has one representation.
    """
    if isinstance(value, bool):
        raise IRError(f"{what}: expected a number or an array of shape ({n_out},), got a bool")
    arr = _to_numpy(value)
    if arr.ndim == 0:
        return float(arr) + 0.0
    arr = arr.reshape(-1) if arr.size == n_out else arr
    if arr.shape != (n_out,):
        raise IRError(f"{what}: shape {arr.shape}; expected a scalar or ({n_out},) (one value per neuron)")
    if n_out and (np.all(arr == arr[0]) or np.all(np.isnan(arr))):
        return float(arr[0]) + 0.0
    return _canonical(arr)


def _param_equal(a: float | np.ndarray, b: float | np.ndarray) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.tobytes() == b.tobytes()
    return a == b or (math.isnan(a) and math.isnan(b))


@dataclass(frozen=True, eq=False)
class Layer:
    """One dense TTFS layer in model units.

    ``weights``: shape (n_in [+1 if ``bias_time`` is not None], n_out), float64, model weight units
    (theta - E_l = 1); row i feeds every neuron from input i, the last row is the bias input's.
    ``bias_time``: bias spike time in model units (tau_s), or None for no bias.
    ``tau_ratio``: tau_m / tau_s (the chip's TTFS math supports 1 and 2), uniform or per neuron.
    ``v_reset``: reset potential in model units (E_l = 0, theta = 1), uniform or per neuron.
    ``delays``: optional transmission delays in model time units (tau_s), of the kind ``delay_kind``
    (:data:`DELAY_KINDS`): ``axonal`` (the default) shape (rows,), one per input row, the bias row's included;
    ``synaptic`` shape (rows, n_out), one per connection; ``dendritic`` shape (n_out,), one per neuron. The chip
    holds axonal delays (one delay line per route); the compiler refuses the other kinds (FS-R014).
    ``name``: free text used in reports and errors.
    """

    weights: np.ndarray
    bias_time: float | None = None
    tau_ratio: float | np.ndarray = 1.0
    v_reset: float | np.ndarray = 0.0
    delays: np.ndarray | None = None
    name: str = ""
    delay_kind: str = "axonal"

    def __post_init__(self) -> None:
        w = _to_numpy(self.weights)
        if w.ndim != 2:
            raise IRError(f"layer {self.name!r}: weights must be 2-d (inputs, neurons), got shape {w.shape}")
        if self.bias_time is not None:
            if isinstance(self.bias_time, bool) or not isinstance(self.bias_time, int | float | np.floating):
                raise IRError(f"layer {self.name!r}: bias_time must be a number or None, not {self.bias_time!r}")
            object.__setattr__(self, "bias_time", float(self.bias_time) + 0.0)
        n_rows, n_out = w.shape
        min_rows = 2 if self.bias_time is not None else 1
        if n_out < 1 or n_rows < min_rows:
            raise IRError(
                f"layer {self.name!r}: weights shape {w.shape}; need >= 1 neuron and >= 1 input"
                + (" plus the bias row" if self.bias_time is not None else "")
            )
        if not isinstance(self.name, str):
            raise IRError(f"layer name must be a str, not {type(self.name).__name__}")
        object.__setattr__(self, "weights", _canonical(w))
        object.__setattr__(self, "tau_ratio", _param(self.tau_ratio, n_out, f"layer {self.name!r} tau_ratio"))
        object.__setattr__(self, "v_reset", _param(self.v_reset, n_out, f"layer {self.name!r} v_reset"))
        if self.delay_kind not in DELAY_KINDS:
            raise IRError(f"layer {self.name!r}: delay_kind {self.delay_kind!r}; allowed {list(DELAY_KINDS)}")
        if self.delays is not None:
            shape = {"axonal": (n_rows,), "synaptic": (n_rows, n_out), "dendritic": (n_out,)}[self.delay_kind]
            what = {"axonal": "one per input row", "synaptic": "one per connection (input row, neuron)",
                    "dendritic": "one per neuron"}[self.delay_kind]
            d = _to_numpy(self.delays)
            if self.delay_kind != "synaptic" and d.size == shape[0]:
                d = d.reshape(-1)
            if d.shape != shape:
                raise IRError(f"layer {self.name!r}: {self.delay_kind} delays shape {d.shape}; expected {shape}"
                              f" ({what})")
            object.__setattr__(self, "delays", _canonical(d))

    # ---- shape ---------------------------------------------------------------------------------
    @property
    def has_bias(self) -> bool:
        return self.bias_time is not None

    @property
    def n_in(self) -> int:
        """Inputs from the previous layer (without the bias input)."""
        return int(self.weights.shape[0]) - int(self.has_bias)

    @property
    def n_out(self) -> int:
        """Neurons of this layer."""
        return int(self.weights.shape[1])

    @property
    def n_sources(self) -> int:
        """Signed inputs each neuron receives (n_in + 1 with a bias)."""
        return int(self.weights.shape[0])

    def with_weights(self, weights: Any) -> Layer:
        """The same layer with other weights (same shape required)."""
        w = _to_numpy(weights)
        if w.shape != self.weights.shape:
            raise IRError(f"layer {self.name!r}: new weights shape {w.shape} != {self.weights.shape}")
        return Layer(w, self.bias_time, self.tau_ratio, self.v_reset, self.delays, self.name, self.delay_kind)

    def with_delays(self, delays: Any, delay_kind: str | None = None) -> Layer:
        """The same layer with other delays (model units; None: none) of ``delay_kind`` (default: this layer's)."""
        return Layer(self.weights, self.bias_time, self.tau_ratio, self.v_reset, delays, self.name,
                     self.delay_kind if delay_kind is None else delay_kind)

    # ---- value semantics -----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        return (
            self.weights.tobytes() == other.weights.tobytes()
            and self.weights.shape == other.weights.shape
            and (self.bias_time is None) == (other.bias_time is None)
            and (self.bias_time is None or _param_equal(self.bias_time, other.bias_time))  # type: ignore[arg-type]
            and _param_equal(self.tau_ratio, other.tau_ratio)
            and _param_equal(self.v_reset, other.v_reset)
            and (
                (self.delays is None and other.delays is None)
                or (
                    self.delays is not None
                    and other.delays is not None
                    and self.delays.tobytes() == other.delays.tobytes()
                )
            )
            and self.name == other.name
            and self.delay_kind == other.delay_kind
        )

    def __hash__(self) -> int:
        return hash((self.weights.shape, self.weights.tobytes(), self.bias_time, self.name))

    def _meta(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "shape": list(self.weights.shape),
            "bias_time": self.bias_time,
            "tau_ratio": None if isinstance(self.tau_ratio, np.ndarray) else self.tau_ratio,
            "v_reset": None if isinstance(self.v_reset, np.ndarray) else self.v_reset,
            "has_delays": self.delays is not None,
        }
        if self.delay_kind != "axonal":  # only then: a network's bytes (and hash) stay what they were before kinds
            out["delay_kind"] = self.delay_kind
        return out


@dataclass(frozen=True, eq=False)
class Network:
    """A layered TTFS network: ``n_inputs`` input channels, then ``layers`` in order.

    Layer 0 reads the network inputs; layer k > 0 reads layer k-1's neurons. Construction checks that
    the shapes chain up (raises :class:`~firstspike.compiler.errors.IRError` otherwise).
    """

    n_inputs: int
    layers: tuple[Layer, ...]
    name: str = ""
    _digest: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.n_inputs, bool) or not isinstance(self.n_inputs, int | np.integer) or self.n_inputs < 1:
            raise IRError(f"n_inputs must be a positive integer, not {self.n_inputs!r}")
        object.__setattr__(self, "n_inputs", int(self.n_inputs))
        layers = tuple(self.layers)
        if not layers:
            raise IRError("a network needs at least one layer")
        for k, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise IRError(f"layers[{k}] must be a firstspike.compiler.ir.Layer, not {type(layer).__name__}")
            expect = self.n_inputs if k == 0 else layers[k - 1].n_out
            if layer.n_in != expect:
                src = "the network's n_inputs" if k == 0 else f"layer {k - 1}'s {expect} neurons"
                raise IRError(
                    f"layer {k} ({layer.name!r}) has {layer.n_in} inputs (weights {layer.weights.shape},"
                    f" bias={'yes' if layer.has_bias else 'no'}) but {src} give {expect}"
                )
        if not isinstance(self.name, str):
            raise IRError(f"network name must be a str, not {type(self.name).__name__}")
        object.__setattr__(self, "layers", layers)

    # ---- convenience ---------------------------------------------------------------------------
    @property
    def sizes(self) -> tuple[int, ...]:
        """(n_inputs, n_out of each layer)."""
        return (self.n_inputs, *(layer.n_out for layer in self.layers))

    @property
    def weights(self) -> list[np.ndarray]:
        """Each layer's weight matrix (read-only views)."""
        return [layer.weights for layer in self.layers]

    def with_weights(self, weights: Sequence[Any]) -> Network:
        """The same architecture with other weights (one matrix per layer, same shapes)."""
        if len(weights) != len(self.layers):
            raise IRError(f"{len(weights)} weight matrices given for {len(self.layers)} layers")
        return Network(self.n_inputs, tuple(L.with_weights(w) for L, w in zip(self.layers, weights, strict=True)),
                       self.name)

    def with_delays(self, delays: Sequence[Any]) -> Network:
        """The same network with other delays (one entry per layer, in each layer's delay kind; None: none)."""
        if len(delays) != len(self.layers):
            raise IRError(f"{len(delays)} delay arrays given for {len(self.layers)} layers")
        return Network(self.n_inputs, tuple(L.with_delays(d) for L, d in zip(self.layers, delays, strict=True)),
                       self.name)

    def architecture(self) -> dict[str, Any]:
        """Everything but the weights (what placement depends on), as a plain dict."""
        return {"n_inputs": self.n_inputs, "layers": [{k: v for k, v in L._meta().items()} for L in self.layers]}

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of Python lists/floats (JSON-able; weights as nested lists of float64 values)."""
        def par(v: float | np.ndarray) -> Any:
            return v.tolist() if isinstance(v, np.ndarray) else v

        return {
            "format": "firstspike.ir.v1",
            "name": self.name,
            "n_inputs": self.n_inputs,
            "layers": [
                {
                    "name": L.name,
                    "weights": L.weights.tolist(),
                    "bias_time": L.bias_time,
                    "tau_ratio": par(L.tau_ratio),
                    "v_reset": par(L.v_reset),
                    "delays": None if L.delays is None else L.delays.tolist(),
                    **({"delay_kind": L.delay_kind} if L.delay_kind != "axonal" else {}),
                }
                for L in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Network:
        """Build from :meth:`to_dict` output; weights may be nested lists, numpy arrays or torch tensors."""
        if not isinstance(data, dict):
            raise IRError(f"network dict expected, got {type(data).__name__}")
        fmt = data.get("format", "firstspike.ir.v1")
        if fmt != "firstspike.ir.v1":
            raise IRError(f"unknown network format {fmt!r}; this build reads 'firstspike.ir.v1'")
        try:
            layers = tuple(
                Layer(
                    weights=d["weights"],
                    bias_time=d.get("bias_time"),
                    tau_ratio=d.get("tau_ratio", 1.0),
                    v_reset=d.get("v_reset", 0.0),
                    delays=d.get("delays"),
                    name=d.get("name", ""),
                    delay_kind=d.get("delay_kind", "axonal"),
                )
                for d in data["layers"]
            )
            return cls(int(data["n_inputs"]), layers, data.get("name", ""))
        except KeyError as e:
            raise IRError(f"network dict misses key {e}") from None
        except (TypeError, AttributeError) as e:
            raise IRError(f"malformed network dict: {e}") from None

    def to_bytes(self) -> bytes:
        """Canonical, versioned bytes (hal's checksummed array container, magic FSIR): same network ->
        same bytes. JSON header (sorted keys) for the scalars, raw little-endian float64 for the arrays."""
        meta = {"name": self.name, "n_inputs": self.n_inputs, "layers": [L._meta() for L in self.layers]}
        header = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
        arrays: dict[str, np.ndarray] = {}
        for k, L in enumerate(self.layers):
            arrays[f"l{k}.weights"] = L.weights
            if isinstance(L.tau_ratio, np.ndarray):
                arrays[f"l{k}.tau_ratio"] = L.tau_ratio
            if isinstance(L.v_reset, np.ndarray):
                arrays[f"l{k}.v_reset"] = L.v_reset
            if L.delays is not None:
                arrays[f"l{k}.delays"] = L.delays
        return encode_arrays(IR_MAGIC, IR_VERSION, arrays, header=header)

    @classmethod
    def from_bytes(cls, data: bytes) -> Network:
        """Decode :meth:`to_bytes` output; any defect raises ConfigDecodeError (hal's typed decode error)."""
        _, header, arrays = decode_arrays(data, IR_MAGIC, (IR_VERSION,))
        try:
            meta = json.loads(header.decode("utf-8"))
            layers = []
            for k, m in enumerate(meta["layers"]):
                w = arrays[f"l{k}.weights"]
                if list(w.shape) != list(m["shape"]):
                    raise ConfigDecodeError(f"layer {k}: weights shape {w.shape} != header {m['shape']}")
                tau = arrays[f"l{k}.tau_ratio"] if m["tau_ratio"] is None else m["tau_ratio"]
                vr = arrays[f"l{k}.v_reset"] if m["v_reset"] is None else m["v_reset"]
                delays = arrays[f"l{k}.delays"] if m["has_delays"] else None
                layers.append(Layer(w, m["bias_time"], tau, vr, delays, m["name"], m.get("delay_kind", "axonal")))
            net = cls(meta["n_inputs"], tuple(layers), meta["name"])
        except ConfigDecodeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as e:
            raise ConfigDecodeError(f"network bytes are malformed: {type(e).__name__}: {e}") from None
        if net.to_bytes() != bytes(data):
            raise ConfigDecodeError("network bytes are not in canonical form")
        return net

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_bytes` to a ``.fsir`` file."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Network:
        """Read a ``.fsir`` file written by :meth:`save`."""
        return cls.from_bytes(Path(path).read_bytes())

    def sha256(self) -> str:
        """Hex SHA-256 of the canonical bytes: the network's identity (the artifact's source hash)."""
        if not self._digest:
            object.__setattr__(self, "_digest", hashlib.sha256(self.to_bytes()).digest())
        return self._digest.hex()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Network):
            return NotImplemented
        return self.sha256() == other.sha256()

    def __hash__(self) -> int:
        return hash(self.sha256())
