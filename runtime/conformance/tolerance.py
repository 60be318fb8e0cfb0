"""Tolerances of the conformance suite and how spike results are compared.

A device states what it claims in ``DeviceInfo.extra["conformance"]`` (all keys optional); the suite's
``--conformance-claim KEY=VALUE`` option overrides a claim (e.g. to demand ``agreement=exact`` in CI).

=====================  ==========  ======================================================================
key                    default     meaning
=====================  ==========  ======================================================================
``agreement``          0.95        against the reference device on the reference networks: ``"exact"``
                                   (identical events) or the minimum fraction of (entry, neuron) pairs
                                   whose fired/silent state matches
``mean_abs_dt_ticks``  75.0        maximum mean |t - t_ref| (ticks) over pairs that fired on both (0.1 tau_s)
``noise_free``         measured    the device has no temporal noise; if absent the suite measures it
                                   (two seeds give identical events on the probe network)
``jitter_agreement``   0.90        noisy devices only: minimum fired/silent agreement between two runs
                                   that must behave alike (entries of one batch, diff vs full config...)
``jitter_ticks``       30.0        noisy devices only: maximum mean |dt| (ticks) between such runs
=====================  ==========  ======================================================================

Noise-free devices are held to identical events between runs that must behave alike, and to a time
shift of exactly D +- 1 tick when every input moves by D ticks (the one tick allows rounding of a
continuous threshold crossing to the clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from firstspike.hal.events import SpikeEvents

DEFAULTS: dict[str, Any] = {
    "agreement": 0.95,
    "mean_abs_dt_ticks": 75.0,
    "noise_free": None,
    "jitter_agreement": 0.90,
    "jitter_ticks": 30.0,
}
SHIFT_SLACK_TICKS = 1  # allowed |(t2 - t1) - D| on noise-free devices


class ClaimError(ValueError):
    """A conformance claim (from DeviceInfo.extra or the command line) is malformed."""


def _parse_value(key: str, value: Any) -> Any:
    if key == "agreement":
        if value == "exact":
            return "exact"
        v = _as_float(key, value)
        if not 0.0 < v <= 1.0:
            raise ClaimError(f"conformance claim agreement={v}: allowed 'exact' or a fraction in (0, 1]")
        return v
    if key == "noise_free":
        if isinstance(value, bool) or value is None:
            return value
        if str(value).lower() in ("1", "true", "yes"):
            return True
        if str(value).lower() in ("0", "false", "no"):
            return False
        raise ClaimError(f"conformance claim noise_free={value!r}: allowed true or false")
    if key == "jitter_agreement":
        v = _as_float(key, value)
        if not 0.0 < v <= 1.0:
            raise ClaimError(f"conformance claim {key}={v}: allowed a fraction in (0, 1]")
        return v
    v = _as_float(key, value)
    if not 0.0 <= v < math.inf:
        raise ClaimError(f"conformance claim {key}={v}: allowed a finite number of ticks >= 0")
    return v


def _as_float(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ClaimError(f"conformance claim {key}={value!r} is not a number") from None


def resolve_claims(extra: dict[str, Any], overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults, then the device's ``extra["conformance"]`` claims, then ``KEY=VALUE`` overrides."""
    claims = dict(DEFAULTS)
    declared = extra.get("conformance", {}) if isinstance(extra, dict) else {}
    if not isinstance(declared, dict):
        raise ClaimError(f"DeviceInfo.extra['conformance'] must be a dict, got {type(declared).__name__}")
    items = list(declared.items())
    for text in overrides or []:
        key, sep, value = text.partition("=")
        if not sep:
            raise ClaimError(f"--conformance-claim {text!r}: expected KEY=VALUE, e.g. agreement=exact")
        items.append((key.strip(), value.strip()))
    for key, value in items:
        if key not in DEFAULTS:
            raise ClaimError(f"unknown conformance claim {key!r}; allowed {sorted(DEFAULTS)}")
        claims[key] = _parse_value(key, value)
    return claims


@dataclass(frozen=True)
class Comparison:
    """How two runs of the same network differ, over (entry, neuron) pairs of the observed neurons."""

    pairs: int  # entries x observed neurons
    agreement: float  # fraction of pairs with the same fired/silent state
    fired_a: int  # pairs that fired in run a
    fired_b: int
    both: int  # pairs that fired in both
    mean_abs_dt: float  # mean |t_a - t_b| over ``both`` (ticks; 0 if none)
    max_abs_dt: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def compare(a: SpikeEvents, b: SpikeEvents, neurons: np.ndarray) -> Comparison:
    """Compare the first spikes of ``neurons`` in two results of equal batch size."""
    if a.batch_size != b.batch_size:
        raise ValueError(f"batch sizes differ: {a.batch_size} vs {b.batch_size}")
    ta, tb = a.first_spike_ticks(neurons), b.first_spike_ticks(neurons)
    fa, fb = ta >= 0, tb >= 0
    both = fa & fb
    dt = np.abs(ta[both] - tb[both])
    return Comparison(
        pairs=int(ta.size),
        agreement=float((fa == fb).mean()) if ta.size else 1.0,
        fired_a=int(fa.sum()),
        fired_b=int(fb.sum()),
        both=int(both.sum()),
        mean_abs_dt=float(dt.mean()) if len(dt) else 0.0,
        max_abs_dt=int(dt.max()) if len(dt) else 0,
    )


def describe_difference(a: SpikeEvents, b: SpikeEvents, limit: int = 6) -> str:
    """A short human-readable listing of events present in one result but not the other."""
    sa = {tuple(int(x) for x in e) for e in a.events}
    sb = {tuple(int(x) for x in e) for e in b.events}
    only_a, only_b = sorted(sa - sb)[:limit], sorted(sb - sa)[:limit]
    return f"(batch, tick, neuron) only in first: {only_a}; only in second: {only_b}"
