"""TTFS model -> the compiler's IR (:class:`firstspike.compiler.ir.Network`), so the compiler never imports torch
layers.

Both sides use the same model units (tau_s = 1, theta = 1, E_l = 0) and the same weight layout
((n_in [+1 bias], n_out), the bias row last, the bias spiking at ``bias_time``), so the conversion copies weights
(float64) and per-layer parameters; nothing is rescaled.
"""

from __future__ import annotations

from typing import Any

from firstspike.compiler.ir import Layer, Network

__all__ = ["to_network"]


def to_network(model: Any, name: str | None = None) -> Network:
    """The compiler IR of a :class:`firstspike.runtime.ttfs.TTFSNetwork` (or any object with ``n_inputs`` and ``layers``
    of modules carrying ``weight``, ``bias_time`` and ``tau_ratio``). ``name`` defaults to the model's task.

    A layer's delays (``delay``, tau_s, of its ``delay_kind``) travel with it: the IR holds all three kinds, the
    chip only axonal ones (per input row, the bias row's included: the bias channel has its own delay line); the
    compiler refuses the others with design rule FS-R014."""
    layers_in = getattr(model, "layers", None)
    if layers_in is None or not hasattr(model, "n_inputs"):
        raise TypeError(f"to_network needs a TTFS network (n_inputs, layers), got {type(model).__name__}")
    layers = []
    for k, layer in enumerate(layers_in):
        w = layer.weight.detach().cpu().double().numpy()
        d = getattr(layer, "delay", None)
        delays = None if d is None else d.detach().cpu().double().numpy()
        kind = getattr(layer, "delay_kind", "none") if d is not None else "axonal"
        layers.append(Layer(w, bias_time=layer.bias_time, tau_ratio=float(layer.tau_ratio), delays=delays,
                            name=f"layer{k}", delay_kind=kind))
    if name is None:
        meta = getattr(model, "metadata", {}) or {}
        name = str(meta.get("task", ""))
    return Network(int(model.n_inputs), tuple(layers), name)
