"""NIR (Neuromorphic Intermediate Representation, PyPI ``nir``) import and export.

Supported graphs: ``Input -> ([Delay] -> Linear|Affine -> CubaLIF)+ -> Output``, a chain. Everything
else is rejected with :class:`~firstspike.compiler.errors.NIRImportError` naming the node and the reason.

Mapping to model units (NIR's CubaLIF: tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = v_leak - v + r I,
where a spike S is a Dirac delta, so it makes I jump by w_in * W / tau_syn):

* the time unit is tau_syn (uniform within a layer and equal in all layers); tau_ratio = tau_mem / tau_syn
  must be 1 or 2 (uniform);
* the voltage unit is v_threshold - v_leak (uniform, > 0): u = (v - v_leak) / (v_threshold - v_leak), so
  theta = 1, E_l = 0 and the model reset is (v_reset - v_leak) / (v_threshold - v_leak) (uniform);
* the model weight of Linear entry W[j, i] is ``W[j, i] * w_in[j] * r[j] / (tau_syn * (v_threshold -
  v_leak))`` (r and w_in may differ per neuron: they only scale its inputs);
* a ``Delay`` right before a Linear gives per-input (axonal) delays (delay / tau_syn); the compiler maps them onto
  the route delay lines (docs/compiler.md).

That is the literal reading (``convention="nir"``, the default). Files written by snnTorch, Rockpool and Norse
mean something else by w_in, r and the time constants; ``convention="snntorch"|"rockpool"|"norse"`` reads them
as their exporter's discrete dynamics behave (:mod:`firstspike.compiler.nir_conventions`).

Biases: NIR's Affine bias is a constant current, which a TTFS bias SPIKE cannot reproduce, so a nonzero
Affine bias is rejected. A firstspike bias is exported as what it is, an extra input spike: an ``Input``
node of shape (1,) whose metadata ``firstspike.bias_time`` holds the spike time (model units, i.e. in units
of tau_syn), feeding a ``Linear`` of weight shape (n_out, 1) into the layer's CubaLIF (NIR sums the
edges into a node). Export writes tau_syn = T (default 1), tau_mem = ratio * T, r = T, w_in = 1,
v_leak = 0, v_threshold = 1, so that import scales weights by exactly 1 and the round trip is exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firstspike.compiler.artifact import CompiledNetwork
from firstspike.compiler.errors import DesignRuleErrors, NIRImportError
from firstspike.compiler.ir import Layer, Network
from firstspike.compiler.nir_conventions import (
    CONVENTIONS,
    RATIO_RTOL,
    CubaLIFParams,
    Detection,
    detect,
    parse_convention,
    pattern_mismatch,
    ratio_tolerance,
    unit_factor,
    weight_hint,
    with_hint,
)
from firstspike.compiler.options import CompileOptions
from firstspike.compiler.pipeline import compile

BIAS_TIME_KEY = "firstspike.bias_time"
NAME_KEY = "firstspike.name"
SUPPORTED_TAU_RATIOS = (1.0, 2.0)

__all__ = ["BIAS_TIME_KEY", "CONVENTIONS", "NAME_KEY", "NIRImport", "compile_nir", "from_nir", "import_nir",
           "read_nir", "to_nir", "write_nir"]


def _nir() -> Any:
    import nir  # imported lazily: compiling from the IR never needs it

    return nir


def _arr(node: str, what: str, value: Any, n: int) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise NIRImportError(node, f"{what} is not numeric") from None
    if a.size == 1:
        a = np.full(n, float(a.reshape(-1)[0]))
    a = a.reshape(-1) if a.size == n else a
    if a.shape != (n,):
        raise NIRImportError(node, f"{what} has shape {a.shape}; expected ({n},) or a scalar")
    if not np.all(np.isfinite(a)):
        raise NIRImportError(node, f"{what} contains NaN or inf")
    return a


def _uniform(node: str, what: str, a: np.ndarray) -> float:
    if np.any(a != a[0]):
        j = int(np.flatnonzero(a != a[0])[0])
        raise NIRImportError(node, f"{what} must be uniform within a layer (the chip sets one value per layer);"
                                   f" neuron 0 has {a[0]}, neuron {j} has {a[j]}")
    return float(a[0])


def _meta_str(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _meta_float(node: str, meta: Mapping[str, Any], key: str) -> float:
    try:
        return float(np.asarray(meta[key], dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise NIRImportError(node, f"metadata {key!r} must be a number, got {meta[key]!r}") from None


def _shape_1d(node: str, shape: Any) -> int:
    s = np.asarray(shape).reshape(-1)
    if s.size != 1:
        raise NIRImportError(node, f"shape {tuple(int(x) for x in s)} is not 1-d; flatten the input before export")
    return int(s[0])


def _linear_weight(node: str, obj: Any) -> np.ndarray:
    nir = _nir()
    if isinstance(obj, nir.Affine):
        b = np.asarray(obj.bias, dtype=np.float64)
        if np.any(b != 0):
            raise NIRImportError(node, "Affine with a nonzero bias: a constant bias current has no exact TTFS"
                                       " equivalent (firstspike biases are spikes); use a Linear fed by an Input"
                                       f" node with metadata {BIAS_TIME_KEY!r} (see docs/compiler.md), or a zero bias")
    w = np.asarray(obj.weight, dtype=np.float64)
    if w.ndim != 2:
        raise NIRImportError(node, f"weight has shape {w.shape}; only 2-d (n_out, n_in) weights are supported")
    if not np.all(np.isfinite(w)):
        raise NIRImportError(node, "weight contains NaN or inf")
    return w


@dataclass(frozen=True)
class _RawLayer:
    """One ``[Delay] -> Linear|Affine -> CubaLIF`` step of the chain, before any unit mapping."""

    lin_name: str
    weight: np.ndarray  # (n_out, n_in) NIR weight
    affine_bias: np.ndarray | None  # None for a Linear
    params: CubaLIFParams
    v_reset: float
    bias_weight: np.ndarray | None  # (n_out, 1) of the bias Linear, if any
    bias_time: float | None
    delays: np.ndarray | None  # NIR time units, per input
    delay_node: str | None
    name: str


@dataclass(frozen=True)
class NIRImport:
    """What :func:`import_nir` read: the ``network`` in model units, the ``convention`` it was read with, what the
    file looks like (``detection``), the model weight per NIR weight of each layer (``unit_factors``, per neuron)
    and the ``hint`` a weight-range error should carry ('' when the reading looks right)."""

    network: Network
    convention: str
    detection: Detection
    unit_factors: tuple[np.ndarray, ...]
    hint: str


def _read_graph(graph: Any) -> Any:
    nir = _nir()
    if isinstance(graph, str | Path):
        try:
            graph = nir.read(graph)
        except (OSError, KeyError, ValueError, TypeError, AssertionError) as e:
            raise NIRImportError(str(graph), f"cannot read the NIR file: {type(e).__name__}: {e}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NIRImportError("<graph>", f"expected a nir.NIRGraph, got {type(graph).__name__}")
    return graph


def _has_firstspike_metadata(graph: Any) -> bool:
    metas = [graph.metadata, *(getattr(v, "metadata", None) for v in graph.nodes.values())]
    return any(isinstance(m, dict) and any(str(k).startswith("firstspike.") for k in m) for m in metas)


def _walk(graph: Any) -> tuple[int, list[_RawLayer]]:
    """Follow ``Input -> ([Delay] -> Linear|Affine -> CubaLIF)+ -> Output``; (n_inputs, raw layers)."""
    nir = _nir()
    nodes: dict[str, Any] = dict(graph.nodes)
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in graph.edges:
        if a not in nodes or b not in nodes:
            raise NIRImportError(f"{a}->{b}", "edge references a node that does not exist")
        succ[a].append(b)
        pred[b].append(a)

    supported = (nir.Input, nir.Output, nir.Linear, nir.Affine, nir.CubaLIF, nir.Delay)
    for name, obj in nodes.items():
        if not isinstance(obj, supported):
            raise NIRImportError(name, f"unsupported node type {type(obj).__name__}; supported: Input, Linear,"
                                       " Affine (zero bias), CubaLIF, Delay (before a Linear), Output")
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input) and BIAS_TIME_KEY not in (v.metadata or {})]
    if len(inputs) != 1:
        raise NIRImportError(",".join(inputs) or "<graph>", f"expected exactly one (non-bias) Input node, found"
                                                              f" {len(inputs)}")
    visited: set[str] = set()

    def only_succ(name: str) -> str:
        s = succ[name]
        if len(s) != 1:
            raise NIRImportError(name, f"has {len(s)} successors {s}; only a chain"
                                       " Input -> (Linear|Affine -> CubaLIF)* -> Output is supported")
        return s[0]

    cur = inputs[0]
    visited.add(cur)
    n_prev = _shape_1d(cur, nodes[cur].input_type["input"])
    n_inputs = n_prev
    layers: list[_RawLayer] = []
    while True:
        nxt = only_succ(cur)
        obj = nodes[nxt]
        if isinstance(obj, nir.Output):
            if not layers:
                raise NIRImportError(nxt, "the graph has no CubaLIF layer")
            if len(pred[nxt]) != 1:
                raise NIRImportError(nxt, f"has {len(pred[nxt])} inputs; expected one CubaLIF")
            visited.add(nxt)
            break
        delay_node = None
        if isinstance(obj, nir.Delay):
            delay_node = nxt
            visited.add(nxt)
            nxt = only_succ(nxt)
            obj = nodes[nxt]
        if not isinstance(obj, nir.Linear | nir.Affine):
            raise NIRImportError(nxt, f"expected Linear or Affine after {cur!r}, found {type(obj).__name__}")
        lin_name = nxt
        visited.add(lin_name)
        w = _linear_weight(lin_name, obj)
        if w.shape[1] != n_prev:
            raise NIRImportError(lin_name, f"weight shape {w.shape} does not take the {n_prev} inputs before it")
        lif_name = only_succ(lin_name)
        lif = nodes[lif_name]
        if isinstance(lif, nir.Delay):
            raise NIRImportError(lif_name, f"a Delay between {lin_name!r} and its CubaLIF delays each neuron's input"
                                           " (a dendritic delay); the chip's delay lines delay a source's events"
                                           " (axonal: put the Delay before the Linear)")
        if not isinstance(lif, nir.CubaLIF):
            raise NIRImportError(lif_name, f"expected CubaLIF after {lin_name!r}, found {type(lif).__name__}"
                                           " (only current-based LIF neurons are supported)")
        visited.add(lif_name)
        n_out = w.shape[0]

        # Bias: another predecessor of the CubaLIF, a Linear (n_out, 1) fed by a bias Input.
        others = [p for p in pred[lif_name] if p != lin_name]
        bias_w = None
        bias_time = None
        if len(others) > 1:
            raise NIRImportError(lif_name, f"has {len(pred[lif_name])} inputs {pred[lif_name]}; expected the"
                                           " layer's Linear and at most one bias Linear")
        if others:
            bl = others[0]
            bobj = nodes[bl]
            if not isinstance(bobj, nir.Linear | nir.Affine):
                raise NIRImportError(bl, f"feeds CubaLIF {lif_name!r} beside {lin_name!r}; only a bias Linear may")
            bw = _linear_weight(bl, bobj)
            if bw.shape != (n_out, 1) or len(pred[bl]) != 1 or len(succ[bl]) != 1:
                raise NIRImportError(bl, f"a bias Linear must have weight shape ({n_out}, 1), one bias Input and"
                                         " one successor")
            bin_name = pred[bl][0]
            bin_obj = nodes[bin_name]
            if not isinstance(bin_obj, nir.Input) or BIAS_TIME_KEY not in (bin_obj.metadata or {}):
                raise NIRImportError(bin_name, f"feeds bias Linear {bl!r} but is not an Input with metadata"
                                               f" {BIAS_TIME_KEY!r}")
            if _shape_1d(bin_name, bin_obj.input_type["input"]) != 1 or len(succ[bin_name]) != 1:
                raise NIRImportError(bin_name, "a bias Input must have shape (1,) and feed exactly one Linear")
            bias_time = _meta_float(bin_name, bin_obj.metadata, BIAS_TIME_KEY)
            bias_w = bw
            visited.update((bl, bin_name))

        tau_syn = _uniform(lif_name, "tau_syn", _arr(lif_name, "tau_syn", lif.tau_syn, n_out))
        tau_mem = _uniform(lif_name, "tau_mem", _arr(lif_name, "tau_mem", lif.tau_mem, n_out))
        v_leak = _uniform(lif_name, "v_leak", _arr(lif_name, "v_leak", lif.v_leak, n_out))
        v_th = _uniform(lif_name, "v_threshold", _arr(lif_name, "v_threshold", lif.v_threshold, n_out))
        v_reset = _uniform(lif_name, "v_reset", _arr(lif_name, "v_reset", lif.v_reset, n_out))
        r = _arr(lif_name, "r", lif.r, n_out)
        w_in = _arr(lif_name, "w_in", lif.w_in, n_out)
        if tau_syn <= 0 or tau_mem <= 0:
            raise NIRImportError(lif_name, f"time constants must be positive (tau_syn={tau_syn}, tau_mem={tau_mem})")
        if v_th <= v_leak:
            raise NIRImportError(lif_name, f"v_threshold={v_th} must exceed v_leak={v_leak}")
        if np.any(r <= 0):
            raise NIRImportError(lif_name, "r (resistance) must be positive")
        delays = None
        if delay_node is not None:
            delays = _arr(delay_node, "delay", nodes[delay_node].delay, n_prev)
            if np.any(delays < 0):
                raise NIRImportError(delay_node, "delays must be >= 0")
        meta = lif.metadata or {}
        name = _meta_str(meta[NAME_KEY]) if NAME_KEY in meta else lif_name
        affine_bias = np.asarray(obj.bias, dtype=np.float64) if isinstance(obj, nir.Affine) else None
        params = CubaLIFParams(lif_name, tau_syn, tau_mem, v_leak, v_th, r, w_in)
        layers.append(_RawLayer(lin_name, w, affine_bias, params, v_reset, bias_w, bias_time, delays, delay_node,
                                name))
        n_prev = n_out
        cur = lif_name

    unvisited = sorted(set(nodes) - visited)
    if unvisited:
        k = unvisited[0]
        raise NIRImportError(k, f"{type(nodes[k]).__name__} node is not on the Input -> ... -> Output chain")
    return n_inputs, layers


def import_nir(graph: Any, *, convention: str = "nir") -> NIRImport:
    """Read a NIR graph (``nir.NIRGraph`` or a path to a ``.nir`` file) under ``convention`` (``nir``: the literal
    NIR semantics, the default; ``snntorch``, ``rockpool``, ``norse``: how those frameworks' exporters write
    CubaLIF, see :mod:`firstspike.compiler.nir_conventions` and docs/compiler.md).

    A non-literal reading refuses a file that lacks its exporter's pattern or looks like another exporter's, with
    a :class:`NIRImportError` that names the ``--nir-convention`` to use.
    """
    conv = parse_convention(convention)
    graph = _read_graph(graph)
    n_inputs, raw = _walk(graph)
    detection = detect([L.params for L in raw], [L.affine_bias for L in raw], list(graph.nodes),
                       _has_firstspike_metadata(graph))
    if conv != "nir":
        elsewhere = detection.hint() if detection.convention not in (None, conv) else ""
        for L in raw:
            why = pattern_mismatch(conv, L.params)
            if why is not None:
                raise NIRImportError(L.params.node, f"not a {conv} export: {why}"
                                                    + (f"; {elsewhere}" if elsewhere else
                                                       "; --nir-convention nir reads NIR literally"))
        if elsewhere:
            raise NIRImportError("<graph>", f"not read as {conv}: {elsewhere}")
    tau_unit: tuple[str, float] | None = None
    layers: list[Layer] = []
    factors: list[np.ndarray] = []
    for L in raw:
        p = L.params
        if tau_unit is None:
            tau_unit = (p.node, p.tau_syn)
        elif abs(p.tau_syn - tau_unit[1]) > RATIO_RTOL * tau_unit[1]:
            raise NIRImportError(p.node, f"tau_syn={p.tau_syn} differs from {tau_unit[0]!r}'s {tau_unit[1]}; the"
                                         " TTFS model uses one synaptic time constant as its time unit")
        ratio = p.tau_mem / p.tau_syn
        tol = ratio_tolerance(conv, p)
        snapped = [R for R in SUPPORTED_TAU_RATIOS if abs(ratio - R) <= tol * R]
        if not snapped:
            elsewhere = f"; {detection.hint()}" if detection.convention not in (None, conv) else ""
            raise NIRImportError(p.node, f"tau_mem / tau_syn = {ratio}; supported ratios are 1 and 2"
                                         f" (within {tol:.2g} relative){elsewhere}")
        factor = unit_factor(conv, p)  # model weight per NIR weight, per neuron
        weights = L.weight.T * factor[None, :]
        if L.bias_weight is not None:
            weights = np.vstack([weights, L.bias_weight.T * factor[None, :]])
        delays = None
        if L.delays is not None:
            delays = L.delays / p.tau_syn
            if L.bias_weight is not None:
                delays = np.append(delays, 0.0)
        layers.append(Layer(weights, L.bias_time, snapped[0], (L.v_reset - p.v_leak) / p.unit_v, delays, L.name))
        factors.append(factor)
    gmeta = graph.metadata if isinstance(graph.metadata, dict) else {}
    network = Network(n_inputs, tuple(layers), _meta_str(gmeta[NAME_KEY]) if NAME_KEY in gmeta else "")
    return NIRImport(network, conv, detection, tuple(factors), weight_hint(conv, detection, factors))


def from_nir(graph: Any, *, convention: str = "nir") -> Network:
    """Map a NIR graph (``nir.NIRGraph`` or a path to a ``.nir`` file) to a :class:`Network`
    (see :func:`import_nir` for ``convention``)."""
    return import_nir(graph, convention=convention).network


def compile_nir(graph: Any, options: CompileOptions | None = None, *, convention: str = "nir",
                keep_source: bool = True) -> CompiledNetwork:
    """Import (see :func:`import_nir`) and compile; a weight-range error (FS-R006) names ``--nir-convention`` when
    the file looks like another reading or this reading's unit factor is far from 1."""
    imp = import_nir(graph, convention=convention)
    try:
        return compile(imp.network, options, keep_source=keep_source)
    except DesignRuleErrors as e:
        raise with_hint(e, imp.hint) from None


def to_nir(network: Network, *, tau_syn: float = 1.0) -> Any:
    """Export a :class:`Network` as a ``nir.NIRGraph`` (see the module docstring for the conventions).

    ``tau_syn`` is the NIR time unit of tau_s (default 1: NIR times in model units). Per-neuron tau_ratio or
    v_reset arrays are exported as they are (the design rules reject them at compile time).
    """
    nir = _nir()
    T = float(tau_syn)
    if not (math.isfinite(T) and T > 0):
        raise ValueError(f"tau_syn must be positive and finite, got {tau_syn!r}")
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([network.n_inputs])})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for k, L in enumerate(network.layers):
        n = L.n_out
        if L.delays is not None:
            if L.delay_kind != "axonal":
                raise ValueError(f"layer {k}: {L.delay_kind} delays cannot be exported; a NIR Delay before a Linear"
                                 " is one delay per input (axonal)")
            nodes[f"delay_{k}"] = nir.Delay(delay=np.asarray(L.delays[: L.n_in]) * T)
            edges.append((prev, f"delay_{k}"))
            prev = f"delay_{k}"
        nodes[f"linear_{k}"] = nir.Linear(weight=np.array(L.weights[: L.n_in].T))
        edges.append((prev, f"linear_{k}"))
        ones = np.ones(n)
        nodes[f"lif_{k}"] = nir.CubaLIF(
            tau_syn=ones * T,
            tau_mem=np.broadcast_to(np.asarray(L.tau_ratio, dtype=np.float64), (n,)) * T,
            r=ones * T,
            v_leak=np.zeros(n),
            v_threshold=ones.copy(),
            v_reset=np.broadcast_to(np.asarray(L.v_reset, dtype=np.float64), (n,)).copy(),
            w_in=ones.copy(),
            metadata={NAME_KEY: L.name},
        )
        edges.append((f"linear_{k}", f"lif_{k}"))
        if L.has_bias:
            # a delay on the bias row is the same as a later bias spike (NIR has no delay for an Input of its own)
            bias_delay = float(L.delays[-1]) if L.delays is not None else 0.0
            bias_meta = {BIAS_TIME_KEY: float(L.bias_time or 0.0) + bias_delay}  # has_bias: bias_time is set
            nodes[f"bias_{k}"] = nir.Input(input_type={"input": np.array([1])}, metadata=bias_meta)  # type: ignore[arg-type]
            nodes[f"bias_linear_{k}"] = nir.Linear(weight=np.array(L.weights[L.n_in :].T))
            edges += [(f"bias_{k}", f"bias_linear_{k}"), (f"bias_linear_{k}", f"lif_{k}")]
        prev = f"lif_{k}"
    nodes["output"] = nir.Output(output_type={"output": np.array([network.layers[-1].n_out])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={NAME_KEY: network.name})


def write_nir(network: Network, path: str | Path, *, tau_syn: float = 1.0) -> None:
    """Export to a ``.nir`` (HDF5) file."""
    _nir().write(path, to_nir(network, tau_syn=tau_syn))


def read_nir(path: str | Path, *, convention: str = "nir") -> Network:
    """Import a ``.nir`` file (see :func:`import_nir` for ``convention``)."""
    return from_nir(Path(path), convention=convention)
