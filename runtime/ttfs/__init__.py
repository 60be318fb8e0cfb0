"""Exact time-to-first-spike (TTFS) learning in pure torch (Göltz, Kriener et al. 2021).

Model units throughout: times in units of the synaptic time constant tau_s = 1, threshold theta = 1,
leak g_l = 1, E_l = 0; tau_ratio = tau_m / tau_s in {1, 2}; ``+inf`` = no spike. Transmission delays (axonal,
synaptic, dendritic; DelGrad) are in :mod:`firstspike.runtime.ttfs.delays`. This package must not
import any device code: the device-in-the-loop trainer feeds measured times into :class:`SpikeTimeFn`
(or :class:`TTFSNetwork` via ``measured_times``) and gets the exact gradients at those times.
"""

from firstspike.runtime.ttfs.delays import (
    DELAY_KINDS,
    DelayedSpikeTimeFn,
    delayed_first_spike_times,
    delayed_spike_time_jacobians,
    delayed_spike_times,
)
from firstspike.runtime.ttfs.lambertw import lambertw0
from firstspike.runtime.ttfs.layers import MODEL_FORMAT, TTFSLinear, TTFSNetwork
from firstspike.runtime.ttfs.loss import ShiftMSELoss, WeightBumper, accuracy, predict, shift_mse_loss, ttfs_loss
from firstspike.runtime.ttfs.spiketime import (
    SpikeTimeFn,
    first_spike_times,
    membrane_potential,
    membrane_slope,
    spike_time_jacobians,
    spike_times,
)

__all__ = [
    "DELAY_KINDS",
    "MODEL_FORMAT",
    "DelayedSpikeTimeFn",
    "ShiftMSELoss",
    "SpikeTimeFn",
    "TTFSLinear",
    "TTFSNetwork",
    "WeightBumper",
    "accuracy",
    "delayed_first_spike_times",
    "delayed_spike_time_jacobians",
    "delayed_spike_times",
    "first_spike_times",
    "lambertw0",
    "membrane_potential",
    "membrane_slope",
    "predict",
    "shift_mse_loss",
    "spike_time_jacobians",
    "spike_times",
    "ttfs_loss",
]
