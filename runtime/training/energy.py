"""Energy per classification from event counts: a documented, deliberately simple model (see docs/energy.md).

    E = E_syn * synaptic_events + E_spike * (neuron spikes + input events) + P_static * chip_time

``synaptic_events``: synapse activations (an event on a row reaching a synapse whose label matches);
``spikes`` / ``input_events``: events the chip emits or receives; ``chip_time``: how long the chip runs
(batch entries x run window, the accelerated chip time, not host wall time). All constants are ESTIMATES
(the simulated chip has no power meter); their sources and status are in :data:`ENERGY_CONSTANTS` and
docs/energy.md. Change them with :class:`EnergyModel` fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ENERGY_CONSTANTS", "EnergyEstimate", "EnergyModel", "format_energy"]

#: the default constants, their unit, value and where they come from
ENERGY_CONSTANTS: dict[str, dict[str, Any]] = {
    "synaptic_event_j": {
        "value": 10e-12,
        "unit": "J per synaptic event",
        "status": "estimate (order of magnitude, not a published BrainScaleS-2 figure)",
        "source": "assumed: an analog synapse current pulse plus its share of the row driver; docs/energy.md",
    },
    "spike_j": {
        "value": 100e-12,
        "unit": "J per neuron spike or input event",
        "status": "estimate (order of magnitude, not a published BrainScaleS-2 figure)",
        "source": "assumed: digital event generation, routing and time-stamping of one event; docs/energy.md",
    },
    "static_w": {
        "value": 0.70,
        "unit": "W while the chip runs",
        "status": "upper-bound estimate derived from a published measurement of another workload",
        "source": "Stradmann et al., IEEE OJCAS 3, 252 (2022): BrainScaleS-2 ASIC energy 192 uJ per 276 us "
                  "inference (analog MAC mode) -> 192e-6 J / 276e-6 s = 0.70 W average ASIC power",
    },
}


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy of a run (joules) and per classification, with the three terms separately."""

    samples: int
    synaptic_j: float
    spike_j: float
    static_j: float

    @property
    def total_j(self) -> float:
        return self.synaptic_j + self.spike_j + self.static_j

    @property
    def per_sample_j(self) -> float:
        return self.total_j / self.samples if self.samples else float("nan")

    def to_dict(self) -> dict[str, float]:
        d = asdict(self)
        d["total_j"] = self.total_j
        d["per_sample_j"] = self.per_sample_j
        return d


@dataclass(frozen=True)
class EnergyModel:
    """The event-count energy model; constants default to :data:`ENERGY_CONSTANTS` (all estimates)."""

    synaptic_event_j: float = ENERGY_CONSTANTS["synaptic_event_j"]["value"]
    spike_j: float = ENERGY_CONSTANTS["spike_j"]["value"]
    static_w: float = ENERGY_CONSTANTS["static_w"]["value"]

    def __post_init__(self) -> None:
        for name in ("synaptic_event_j", "spike_j", "static_w"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v >= 0 and v != float("inf")):
                raise ValueError(f"EnergyModel.{name} must be a finite number >= 0, got {v!r}")

    def estimate(self, stats: Mapping[str, int], chip_seconds: float, samples: int) -> EnergyEstimate:
        """Energy of a run from device counters (``synaptic_events``, ``spikes``, ``input_events``; missing
        counters count as 0), the chip time it took (seconds) and the number of classifications."""
        syn = float(stats.get("synaptic_events", 0))
        events = float(stats.get("spikes", 0)) + float(stats.get("input_events", 0))
        return EnergyEstimate(
            samples=int(samples),
            synaptic_j=self.synaptic_event_j * syn,
            spike_j=self.spike_j * events,
            static_j=self.static_w * float(chip_seconds),
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def format_energy(joules: float) -> str:
    """Human units: ``12.3 uJ``, ``450 nJ``, ``1.2 mJ``."""
    if joules != joules:  # NaN
        return "n/a"
    for scale, unit in ((1.0, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ")):
        if abs(joules) >= scale:
            return f"{joules / scale:.3g} {unit}"
    return f"{joules:.3g} J"
