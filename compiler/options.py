"""Compile options: what the user may choose besides the network itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from firstspike.hal import chip

__all__ = ["CompileOptions"]


@dataclass(frozen=True)
class CompileOptions:
    """Options of :func:`firstspike.compiler.compile`.

    ``weight_scale``: digital steps per model weight unit (e.g. 30 as in the reference), one value for
    all layers or one per layer (None = choose the layer's scale from its largest weight). Fixed scales
    let in-the-loop training keep one scale while weights grow. ``tau_s_ticks``: target synaptic time
    constant in ticks (8 ns); the artifact records the realised value. ``allow_split``: cut networks
    larger than one chip into stages; if False such networks fail with design rule FS-R001.
    """

    weight_scale: float | tuple[float | None, ...] | None = None
    tau_s_ticks: float = float(chip.NOMINAL_TAU_S_TICKS)
    allow_split: bool = True

    def __post_init__(self) -> None:
        ws = self.weight_scale
        if isinstance(ws, Sequence) and not isinstance(ws, str):
            object.__setattr__(self, "weight_scale", tuple(None if v is None else float(v) for v in ws))
        elif ws is not None:
            object.__setattr__(self, "weight_scale", float(ws))
        object.__setattr__(self, "tau_s_ticks", float(self.tau_s_ticks))
        object.__setattr__(self, "allow_split", bool(self.allow_split))

    def layer_weight_scale(self, k: int) -> float | None:
        """The fixed weight scale of layer ``k`` (None = automatic)."""
        ws = self.weight_scale
        if isinstance(ws, tuple):
            return ws[k] if k < len(ws) else None
        return ws

    def to_dict(self) -> dict[str, Any]:
        ws = self.weight_scale
        return {
            "weight_scale": list(ws) if isinstance(ws, tuple) else ws,
            "tau_s_ticks": self.tau_s_ticks,
            "allow_split": self.allow_split,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompileOptions:
        ws = d.get("weight_scale")
        return cls(tuple(ws) if isinstance(ws, list) else ws, d["tau_s_ticks"], d["allow_split"])
