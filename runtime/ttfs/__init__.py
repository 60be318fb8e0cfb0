"""Exact time-to-first-spike (TTFS) learning in pure torch (Göltz, Kriener et al. 2021).

Model units throughout: times in units of the synaptic time constant tau_s = 1, threshold theta = 1,
leak g_l = 1, E_l = 0; tau_ratio = tau_m / tau_s in {1, 2}; ``+inf`` = no spike. This package must not
import any device code: the device-in-the-loop trainer feeds measured times into :class:`SpikeTimeFn`
(or :class:`TTFSNetwork` via ``measured_times``) and gets the exact gradients at those times.
"""

from firstspike.runtime.ttfs.lambertw import lambertw0
from firstspike.runtime.ttfs.layers import MODEL_FORMAT, TTFSLinear, TTFSNetwork
from firstspike.runtime.ttfs.loss import WeightBumper, accuracy, predict, ttfs_loss
from firstspike.runtime.ttfs.spiketime import (
    SpikeTimeFn,
    first_spike_times,
    membrane_potential,
    membrane_slope,
    spike_time_jacobians,
    spike_times,
)

__all__ = [
    "MODEL_FORMAT",
    "SpikeTimeFn",
    "TTFSLinear",
    "TTFSNetwork",
    "WeightBumper",
    "accuracy",
    "first_spike_times",
    "lambertw0",
    "membrane_potential",
    "membrane_slope",
    "predict",
    "spike_time_jacobians",
    "spike_times",
    "ttfs_loss",
]
