"""From measured rounds to codes: each neuron's transfer (effective / nominal of the configured code, or the offset
of a voltage) and its error against the targets.

The transfer of this chip family is monotonic and linear in the code (a time constant is ``4 ticks x code x f``,
a voltage ``code + offset``, a jump ``w gain / 64 x f``), so one measurement at any code gives the slope, and
:meth:`~firstspike.hal.neuron_calibration.NeuronCalibration.apply` inverts it for any target: this replaces a
binary search over codes by one measurement, and each further round (measured at the codes the previous estimate
chose) is a correction: its estimate is averaged with the earlier ones.
"""

from __future__ import annotations

import warnings

import numpy as np

from firstspike.hal.calibration import GAIN_DIVISOR, TAU_TICKS_PER_CODE
from firstspike.hal.neuron_calibration import FACTOR_FIELDS, OFFSET_FIELDS, NeuronCalibration
from firstspike.runtime.calibration import protocol
from firstspike.runtime.calibration.measure import Round, SynapticRound

__all__ = ["METRICS", "TARGETS", "combine", "metrics", "transfer"]

#: what the calibration reports per neuron (before and after), its unit, and its target
METRICS: dict[str, tuple[str, float]] = {
    "tau_mem": ("ticks", float(protocol.TAU_CODE * TAU_TICKS_PER_CODE)),
    "tau_syn_exc": ("ticks", float(protocol.TAU_CODE * TAU_TICKS_PER_CODE)),
    "tau_syn_inh": ("ticks", float(protocol.TAU_CODE * TAU_TICKS_PER_CODE)),
    "span_error": ("LSB", 0.0),  # (threshold - leak) effective minus nominal
    "reset_error": ("LSB", 0.0),  # (reset - leak) effective minus nominal
    "leak_error": ("LSB", 0.0),  # leak effective minus nominal (needs membrane readout)
    "gain_exc": ("x target", 1.0),  # model weight of one excitatory step / the nominal one
    "gain_inh": ("x target", 1.0),
}
TARGETS = {k: v[1] for k, v in METRICS.items()}


def _jump_per_nominal(s: SynapticRound) -> np.ndarray:
    """Measured jump of one event / the nominal jump of the configured codes (the gain factor)."""
    return s.fit.mean_jump / (s.weight * s.gain_code / GAIN_DIVISOR)


def transfer(r: Round) -> dict[str, np.ndarray]:
    """Per-neuron transfer estimated from one round (NaN where a fit failed): the NeuronCalibration fields."""
    group0 = r.tau_code[0]
    leak_offset = r.leak - r.leak_code
    return {
        "tau_mem": r.membrane.tau_m[0] / (group0 * TAU_TICKS_PER_CODE),
        "tau_syn_exc": r.excitatory.fit.tau / (r.excitatory.tau_code * TAU_TICKS_PER_CODE),
        "tau_syn_inh": r.inhibitory.fit.tau / (r.inhibitory.tau_code * TAU_TICKS_PER_CODE),
        "gain_exc": _jump_per_nominal(r.excitatory),
        "gain_inh": _jump_per_nominal(r.inhibitory),
        "leak": leak_offset,  # NaN without readout
        "threshold": r.membrane.threshold,
        "reset": r.membrane.reset,
    }


def combine(rounds: list[Round], device_model: str, serial: int, spec_version: str
            ) -> tuple[NeuronCalibration, np.ndarray]:
    """Average the rounds' transfer estimates into a calibration; returns it and a (512,) mask of neurons with
    any parameter that could not be measured (they keep the nominal transfer for that parameter)."""
    per = [transfer(r) for r in rounds]
    fields: dict[str, np.ndarray] = {}
    failed = np.zeros(len(per[0]["tau_mem"]), dtype=bool)
    for name in (*FACTOR_FIELDS, *OFFSET_FIELDS):
        stack = np.stack([p[name] for p in per])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a neuron no round could measure: NaN
            mean = np.nanmean(stack, axis=0)
        default = 1.0 if name in FACTOR_FIELDS else 0.0
        missing = ~np.isfinite(mean)
        if name != "leak":  # no absolute leak without readout: not a failure, the leak keeps its code
            failed |= missing
        fields[name] = np.where(missing, default, mean)
    return NeuronCalibration(device_model, serial, spec_version, **fields), failed


def metrics(r: Round) -> dict[str, np.ndarray]:
    """Per-neuron effective parameters of a round against :data:`METRICS`' targets (the codes the round was
    configured with are those of the calibration under test; in the first round the nominal ones)."""
    s0 = protocol.MEMBRANE[0]
    exc, inh = r.excitatory, r.inhibitory
    # model weight per step: jump / |level|, relative to the nominal jump / nominal level
    gain_exc = (exc.fit.mean_jump / exc.level) / (protocol.EXCITATORY.jump_lsb / protocol.EXCITATORY.level)
    gain_inh = (inh.fit.mean_jump / inh.level) / (protocol.INHIBITORY.jump_lsb / protocol.INHIBITORY.level)
    return {
        "tau_mem": r.membrane.tau_m[0],
        "tau_syn_exc": exc.fit.tau,
        "tau_syn_inh": inh.fit.tau,
        "span_error": (r.x[0] - r.membrane.threshold) * -1.0 + s0.x,
        "reset_error": (r.y[0] - r.membrane.reset) * -1.0 + s0.y,
        "leak_error": r.leak - s0.leak,
        "gain_exc": gain_exc,
        "gain_inh": gain_inh,
    }
