"""The distortions a device documents about itself, published in ``DeviceInfo.extra["noise_model"]``.

A device states how it departs from the ideal TTFS model so that software can train for it (hardware-aware
training samples these distortions) without hard-coding one chip's numbers:

* ``weight_bits``: digital weight resolution (magnitude bits; the sign comes from the row);
* fixed pattern (per chip, stable across runs; standard deviations): ``tau_fixed_rel`` (each neuron's time
  constants, relative), ``gain_fixed_rel`` (each neuron's synaptic gains, relative), ``synapse_fixed_rel`` (each
  synapse's weight-to-current factor, relative; no neuron code can correct it), ``leak_fixed_lsb``,
  ``threshold_fixed_lsb``, ``reset_fixed_lsb`` (offsets, membrane LSB);
* trial to trial (per run; standard deviations / probability): ``threshold_trial_lsb`` (per entry and neuron),
  ``input_jitter_ticks`` (per input event), ``input_loss_probability`` (per input event).

The dictionary form (:meth:`DeviceNoiseModel.to_dict`) carries ``"format": "firstspike.noise_model.v1"``;
:meth:`DeviceNoiseModel.from_dict` validates every field (it is external input) and raises ``ValueError`` naming
what is wrong. :meth:`DeviceNoiseModel.in_model_units` converts to the TTFS model's units for a layer's operating
point (threshold - leak span in LSB, tau_s in ticks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["NOISE_MODEL_FORMAT", "NOISE_MODEL_KEY", "DeviceNoiseModel", "ModelNoise"]

#: the key of ``DeviceInfo.extra`` under which a device publishes its noise model
NOISE_MODEL_KEY = "noise_model"
NOISE_MODEL_FORMAT = "firstspike.noise_model.v1"

_FIXED = ("tau_fixed_rel", "gain_fixed_rel", "synapse_fixed_rel", "leak_fixed_lsb", "threshold_fixed_lsb",
          "reset_fixed_lsb")
_TRIAL = ("threshold_trial_lsb", "input_jitter_ticks", "input_loss_probability")


@dataclass(frozen=True)
class ModelNoise:
    """A device's distortions in TTFS model units at one operating point (standard deviations).

    ``threshold_fixed`` / ``threshold_trial``: of the threshold relative to the leak, in units of
    ``theta - E_l = 1``; ``reset_fixed``: of the reset relative to the leak, same unit; ``tau_fixed``,
    ``gain_fixed``, ``synapse_fixed``: relative; ``input_jitter``: in units of tau_s; ``input_loss_probability``;
    ``weight_bits``.
    """

    weight_bits: int
    tau_fixed: float
    gain_fixed: float
    synapse_fixed: float
    threshold_fixed: float
    reset_fixed: float
    threshold_trial: float
    input_jitter: float
    input_loss_probability: float


@dataclass(frozen=True)
class DeviceNoiseModel:
    """The documented distortions of a device, in device units (see the module docstring)."""

    weight_bits: int
    tau_fixed_rel: float = 0.0
    gain_fixed_rel: float = 0.0
    synapse_fixed_rel: float = 0.0
    leak_fixed_lsb: float = 0.0
    threshold_fixed_lsb: float = 0.0
    reset_fixed_lsb: float = 0.0
    threshold_trial_lsb: float = 0.0
    input_jitter_ticks: float = 0.0
    input_loss_probability: float = 0.0

    def __post_init__(self) -> None:
        wb = self.weight_bits
        if isinstance(wb, bool) or not isinstance(wb, int) or not 1 <= wb <= 32:
            raise ValueError(f"noise model weight_bits: {wb!r} not allowed; an integer in [1, 32]")
        for name in (*_FIXED, *_TRIAL):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"noise model {name}: {v!r} not allowed; a finite number >= 0")
            object.__setattr__(self, name, float(v))
        if self.input_loss_probability > 1:
            raise ValueError(f"noise model input_loss_probability: {self.input_loss_probability} not in [0, 1]")

    @property
    def noise_free(self) -> bool:
        """True when the device documents no distortion besides the weight resolution."""
        return all(getattr(self, n) == 0 for n in (*_FIXED, *_TRIAL))

    def without_fixed_pattern(self) -> DeviceNoiseModel:
        """The same device with its per-chip fixed pattern removed (trial-to-trial noise kept)."""
        zero: dict[str, Any] = {n: 0.0 for n in _FIXED}
        return replace(self, **zero)

    def to_dict(self) -> dict[str, Any]:
        """The published (JSON) form, with ``"format"``."""
        return {"format": NOISE_MODEL_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, d: Any) -> DeviceNoiseModel:
        """Parse the published form (validated; unknown keys and a missing format are errors)."""
        if not isinstance(d, dict):
            raise ValueError(f"noise model: expected a JSON object, got {type(d).__name__}")
        if d.get("format") != NOISE_MODEL_FORMAT:
            raise ValueError(f"noise model: format {d.get('format')!r} not supported; expected {NOISE_MODEL_FORMAT!r}")
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names - {"format"}
        if unknown:
            raise ValueError(f"noise model: unknown fields {sorted(unknown)}; allowed {sorted(names)}")
        if "weight_bits" not in d:
            raise ValueError("noise model: weight_bits is required")
        return cls(**{k: v for k, v in d.items() if k != "format"})

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> DeviceNoiseModel | None:
        """The model a ``DeviceInfo.extra`` publishes, or None if it publishes none."""
        if NOISE_MODEL_KEY not in extra:
            return None
        return cls.from_dict(extra[NOISE_MODEL_KEY])

    def in_model_units(self, span_lsb: float, tau_s_ticks: float) -> ModelNoise:
        """Model units for a layer whose threshold lies ``span_lsb`` above its leak, with tau_s ``tau_s_ticks``.

        The threshold's and the reset's fixed offsets are relative to the leak's, so their spreads add in
        quadrature with the leak's."""
        if not (math.isfinite(span_lsb) and span_lsb > 0 and math.isfinite(tau_s_ticks) and tau_s_ticks > 0):
            raise ValueError(f"span_lsb and tau_s_ticks must be positive, got {span_lsb}, {tau_s_ticks}")
        return ModelNoise(
            weight_bits=self.weight_bits,
            tau_fixed=self.tau_fixed_rel,
            gain_fixed=self.gain_fixed_rel,
            synapse_fixed=self.synapse_fixed_rel,
            threshold_fixed=math.hypot(self.threshold_fixed_lsb, self.leak_fixed_lsb) / span_lsb,
            reset_fixed=math.hypot(self.reset_fixed_lsb, self.leak_fixed_lsb) / span_lsb,
            threshold_trial=self.threshold_trial_lsb / span_lsb,
            input_jitter=self.input_jitter_ticks / tau_s_ticks,
            input_loss_probability=self.input_loss_probability,
        )
