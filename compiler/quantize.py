"""Quantisation: model weights -> 6-bit magnitudes on the row of their sign; neuron parameters -> codes.

One digital weight step of a layer is worth ``q = gain / 64 / (threshold - leak)`` model weight units
(:func:`firstspike.hal.calibration.model_weight_per_lsb`). Per layer we pick the gain code and the threshold-leak span
so that the layer's largest |w| lands at (just under) 63 steps, or so that q matches a user-given fixed
scale (``weight_scale`` steps per model unit, e.g. the reference's 30). A weight w becomes
``d = clip(round(|w| / q), 0, 63)`` on the excitatory row if w >= 0, else on the inhibitory row, so the
chip's effective weight is exactly ``sign(w) * d * q``.

Delays: an axonal delay of ``d`` model time units (tau_s) becomes the delay code ``k = clip(round(d * tau_s_ticks /
8), 0, 511)`` on every route of its source (:func:`delay_codes`), so the chip realises ``k * 8 / tau_s_ticks``
(:func:`delay_values`), at the compile's realised tau_s; the error is at most half a step (4 ticks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from firstspike.hal import calibration, chip

LEAK_CODE = 300  # resting potential (membrane LSB); reset and threshold are placed relative to it
SPAN_MIN = 16  # smallest threshold - leak (LSB): below this the membrane resolution is too coarse
SPAN_MAX = 300  # largest span; with leak 300 this keeps threshold <= 600 and reset >= 0 for v_reset >= -1
NOMINAL_SPAN = 300
Q_MIN = calibration.model_weight_per_lsb(1, LEAK_CODE + SPAN_MAX, LEAK_CODE)  # finest step (gain 1)
Q_MAX = calibration.model_weight_per_lsb(chip.PARAM_MAX, LEAK_CODE + SPAN_MIN, LEAK_CODE)  # coarsest step
MAX_ABS_WEIGHT = Q_MAX * chip.WEIGHT_MAX  # largest representable |w| (model units)
DEFAULT_WEIGHT_SCALE = 30.0  # steps per model unit used when a layer has only zero weights
_SPANS = np.arange(SPAN_MIN, SPAN_MAX + 1, dtype=np.int64)

__all__ = [
    "DEFAULT_WEIGHT_SCALE",
    "LEAK_CODE",
    "MAX_ABS_WEIGHT",
    "Q_MAX",
    "Q_MIN",
    "LayerDelayReport",
    "LayerQuantReport",
    "LayerScale",
    "NeuronCodes",
    "choose_scale",
    "delay_codes",
    "delay_report",
    "delay_values",
    "digitize",
    "neuron_codes",
    "quantization_report",
    "signed_steps",
    "tau_codes",
]


@dataclass(frozen=True)
class LayerScale:
    """A layer's weight scale: gain code, leak and threshold codes, and ``q`` (model weight per step)."""

    gain: int
    leak: int
    threshold: int
    q: float
    fixed: bool  # True when chosen from a user-given weight_scale

    @property
    def span(self) -> int:
        return self.threshold - self.leak


def _scale(gain: int, span: int, fixed: bool) -> LayerScale:
    q = calibration.model_weight_per_lsb(gain, LEAK_CODE + span, LEAK_CODE)
    return LayerScale(int(gain), LEAK_CODE, LEAK_CODE + int(span), q, fixed)


def choose_scale(max_abs_weight: float, weight_scale: float | None = None) -> LayerScale:
    """Pick (gain, span) for a layer.

    Without ``weight_scale``: the smallest step q >= max|w| / 63 (so nothing clips and the largest weight
    uses nearly all 63 steps), ties broken towards the larger span. With ``weight_scale`` (steps per model
    unit): q closest to 1 / weight_scale. Raises ValueError when the requested step is not representable
    (the design rules report this first).
    """
    spans = _SPANS
    if weight_scale is None and max_abs_weight > 0:
        target = float(max_abs_weight) / chip.WEIGHT_MAX
        if target > Q_MAX:
            raise ValueError(f"max |w| = {max_abs_weight} exceeds the representable {MAX_ABS_WEIGHT}")
        gain = np.ceil(target * calibration.GAIN_DIVISOR * spans).astype(np.int64)
        q = gain / calibration.GAIN_DIVISOR / spans
        gain = np.where(q < target, gain + 1, gain)  # guard against float rounding below the target
        gain = np.maximum(gain, 1)
        q = gain / calibration.GAIN_DIVISOR / spans
        ok = gain <= chip.PARAM_MAX
        cost = np.where(ok, q, np.inf)
        fixed = False
    else:
        scale = DEFAULT_WEIGHT_SCALE if weight_scale is None else float(weight_scale)
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"weight_scale must be a positive finite number, got {weight_scale!r}")
        target = 1.0 / scale
        gain = np.clip(np.rint(target * calibration.GAIN_DIVISOR * spans), 1, chip.PARAM_MAX).astype(np.int64)
        q = gain / calibration.GAIN_DIVISOR / spans
        cost = np.abs(q - target) / target
        fixed = weight_scale is not None
        if not (Q_MIN * (1 - 1e-9) <= target <= Q_MAX * (1 + 1e-9)):
            raise ValueError(f"weight_scale {scale} gives a step {target} outside [{Q_MIN}, {Q_MAX}]")
    # Lowest cost; among equal costs the largest span (finer membrane resolution): argmin on the reverse.
    best = len(spans) - 1 - int(np.argmin(cost[::-1]))
    return _scale(int(gain[best]), int(spans[best]), fixed)


def digitize(weights: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """Model weights -> (magnitudes uint8 0..63, negative mask). ``d = clip(round(|w|/q), 0, 63)``."""
    w = np.asarray(weights, dtype=np.float64)
    d = np.minimum(np.rint(np.abs(w) / q), chip.WEIGHT_MAX).astype(np.uint8)
    return d, w < 0


def signed_steps(d: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Signed integer steps (int64): ``-d`` where negative, else ``d``."""
    s = d.astype(np.int64)
    return np.where(negative, -s, s)


@dataclass(frozen=True)
class LayerQuantReport:
    """How well a layer's weights survived quantisation (errors in model weight units)."""

    layer: int
    name: str
    q: float  # model weight of one digital step
    steps_per_unit: float  # 1 / q
    gain: int
    threshold: int
    leak: int
    fixed_scale: bool
    n_weights: int
    max_abs_weight: float
    max_steps: int  # largest digital magnitude used
    clipped: int  # weights whose |w|/q rounds above 63
    max_abs_error: float
    mean_abs_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerQuantReport:
        return cls(**d)


def quantization_report(layer: int, name: str, weights: np.ndarray, scale: LayerScale) -> LayerQuantReport:
    """Quantise ``weights`` with ``scale`` and measure clipping and error."""
    w = np.asarray(weights, dtype=np.float64)
    d, neg = digitize(w, scale.q)
    wq = signed_steps(d, neg) * scale.q
    err = np.abs(w - wq)
    clipped = int(np.count_nonzero(np.rint(np.abs(w) / scale.q) > chip.WEIGHT_MAX))
    return LayerQuantReport(
        layer=layer,
        name=name,
        q=scale.q,
        steps_per_unit=1.0 / scale.q,
        gain=scale.gain,
        threshold=scale.threshold,
        leak=scale.leak,
        fixed_scale=scale.fixed,
        n_weights=int(w.size),
        max_abs_weight=float(np.max(np.abs(w))) if w.size else 0.0,
        max_steps=int(d.max()) if d.size else 0,
        clipped=clipped,
        max_abs_error=float(err.max()) if err.size else 0.0,
        mean_abs_error=float(err.mean()) if err.size else 0.0,
    )


def tau_codes(tau_s_ticks: float, tau_ratio: float) -> tuple[int, int]:
    """(tau_syn code, tau_mem code) for a target tau_s in ticks and tau_m/tau_s = ``tau_ratio``.

    tau_mem's code is the exact multiple of tau_syn's so the ratio survives rounding.
    """
    syn = calibration.tau_ticks_to_code(tau_s_ticks)
    mem = round(syn * float(tau_ratio))
    if not 1 <= mem <= chip.PARAM_MAX:
        raise ValueError(f"tau_mem code {mem} (= {syn} x {tau_ratio}) is outside [1, {chip.PARAM_MAX}]")
    return syn, mem


@dataclass(frozen=True)
class NeuronCodes:
    """The digital parameters shared by every neuron of a layer."""

    leak: int
    threshold: int
    reset: int
    tau_syn: int
    tau_mem: int
    refractory: int
    gain: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def neuron_codes(scale: LayerScale, tau_ratio: float, v_reset: float, tau_s_ticks: float) -> NeuronCodes:
    """Neuron codes of a layer: leak/threshold from the weight scale, reset = leak + v_reset * span (kept
    below threshold), time constants from tau_s, and the longest refractory period so a neuron fires once
    within a TTFS run."""
    syn, mem = tau_codes(tau_s_ticks, tau_ratio)
    reset = int(np.clip(scale.leak + round(float(v_reset) * scale.span), 0, scale.threshold - 1))
    return NeuronCodes(
        leak=scale.leak,
        threshold=scale.threshold,
        reset=reset,
        tau_syn=syn,
        tau_mem=mem,
        refractory=chip.REFRACTORY_MAX,
        gain=scale.gain,
    )


def delay_codes(delays: np.ndarray, tau_s_ticks: float) -> np.ndarray:
    """Model-unit delays (tau_s) -> delay codes (uint16): ``clip(round(d * tau_s_ticks / 8), 0, 511)``; NaN must
    not reach here (the design rules and :meth:`CompiledNetwork.delay_codes` refuse it)."""
    d = np.asarray(delays, dtype=np.float64)
    return np.clip(np.rint(d * (float(tau_s_ticks) / chip.DELAY_STEP_TICKS)), 0, chip.DELAY_CODE_MAX).astype(np.uint16)


def delay_values(codes: np.ndarray, tau_s_ticks: float) -> np.ndarray:
    """Delay codes -> the delays the chip realises, model units (tau_s): ``code * 8 / tau_s_ticks`` (float64)."""
    return np.asarray(codes, dtype=np.float64) * chip.DELAY_STEP_TICKS / float(tau_s_ticks)


@dataclass(frozen=True)
class LayerDelayReport:
    """How well a layer's axonal delays survived quantisation onto the delay lines (delays in tau_s and ticks)."""

    layer: int
    name: str
    n_delays: int  # one per input row (the bias row's is 0)
    step: float  # model time of one delay code step (8 ticks / tau_s_ticks)
    max_delay: float  # largest requested delay, tau_s
    max_code: int  # largest code used
    clipped: int  # delays beyond the last code (the design rules refuse them at compile time)
    max_abs_error_ticks: float
    mean_abs_error_ticks: float
    max_abs_error: float  # tau_s
    mean_abs_error: float  # tau_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerDelayReport:
        return cls(**d)


def delay_report(layer: int, name: str, delays: np.ndarray, tau_s_ticks: float) -> LayerDelayReport:
    """Quantise ``delays`` (model units) at ``tau_s_ticks`` and measure the error."""
    d = np.asarray(delays, dtype=np.float64)
    codes = delay_codes(d, tau_s_ticks)
    err_ticks = np.abs(d * float(tau_s_ticks) - codes.astype(np.float64) * chip.DELAY_STEP_TICKS)
    return LayerDelayReport(
        layer=layer,
        name=name,
        n_delays=int(d.size),
        step=chip.DELAY_STEP_TICKS / float(tau_s_ticks),
        max_delay=float(d.max()) if d.size else 0.0,
        max_code=int(codes.max()) if codes.size else 0,
        clipped=int(np.count_nonzero(np.rint(d * float(tau_s_ticks) / chip.DELAY_STEP_TICKS) > chip.DELAY_CODE_MAX)),
        max_abs_error_ticks=float(err_ticks.max()) if d.size else 0.0,
        mean_abs_error_ticks=float(err_ticks.mean()) if d.size else 0.0,
        max_abs_error=float(err_ticks.max() / tau_s_ticks) if d.size else 0.0,
        mean_abs_error=float(err_ticks.mean() / tau_s_ticks) if d.size else 0.0,
    )
