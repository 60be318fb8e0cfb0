"""TTFS model -> the compiler's IR (:class:`firstspike.compiler.ir.Network`), so the compiler never imports torch
layers.

Both sides use the same model units (tau_s = 1, theta = 1, E_l = 0) and the same weight layout
((n_in [+1 bias], n_out), the bias row last, the bias spiking at ``bias_time``), so the conversion copies weights
(float64) and per-layer parameters; nothing is rescaled.
"""

from __future__ import annotations

from typing import Any

from firstspike.compiler.ir import Layer, Network

__all__ = ["UnsupportedDelaysError", "to_network"]


class UnsupportedDelaysError(ValueError):
    """A model has transmission delays the compiler's IR (and so the chip) cannot hold."""


def to_network(model: Any, name: str | None = None) -> Network:
    """The compiler IR of a :class:`firstspike.runtime.ttfs.TTFSNetwork` (or any object with ``n_inputs`` and ``layers``
    of modules carrying ``weight``, ``bias_time`` and ``tau_ratio``). ``name`` defaults to the model's task.

    A model with delays (any kind) raises :class:`UnsupportedDelaysError`, naming the layer and the kind."""
    layers_in = getattr(model, "layers", None)
    if layers_in is None or not hasattr(model, "n_inputs"):
        raise TypeError(f"to_network needs a TTFS network (n_inputs, layers), got {type(model).__name__}")
    for k, layer in enumerate(layers_in):
        kind = getattr(layer, "delay_kind", "none")
        if getattr(layer, "delay", None) is not None:
            raise UnsupportedDelaysError(
                f"layer {k} has {kind} delays, which the compiler cannot map onto the chip yet (the chip has no "
                "delay lines so far; axonal delays will map onto them): only models without delays compile")
    layers = []
    for k, layer in enumerate(layers_in):
        w = layer.weight.detach().cpu().double().numpy()
        layers.append(Layer(w, bias_time=layer.bias_time, tau_ratio=float(layer.tau_ratio), name=f"layer{k}"))
    if name is None:
        meta = getattr(model, "metadata", {}) or {}
        name = str(meta.get("task", ""))
    return Network(int(model.n_inputs), tuple(layers), name)
