"""The analytic responses the calibration fits to measured spike times (float64, times in ticks).

A neuron obeys ``tau_m du/dt = -u + I_e - I_i``, ``tau_x dI_x/dt = -I_x`` (docs/device-spec.md section 3; ``u`` is
the membrane relative to the leak, in LSB). Two responses are all the calibration needs:

* a current jump ``J`` at time 0 gives ``u(t) = J K(t)`` with the kernel
  ``K(t) = tau_x / (tau_m - tau_x) (exp(-t/tau_m) - exp(-t/tau_x))``, evaluated here in the stable form
  ``K(t) = (t/tau_m) exp(-t/tau_a) phi(t |1/tau_m - 1/tau_x|)``, ``tau_a = max(tau_m, tau_x)``,
  ``phi(z) = (1 - exp(-z))/z`` (no cancellation at ``tau_m = tau_x``, no overflow for a fast membrane);
* without synaptic current a membrane released at ``-y`` relaxes as ``-y exp(-t/tau_m)``, so it reaches ``-x``
  after ``tau_m ln(y/x)``: the interspike interval of a neuron whose leak lies above its threshold.
"""

from __future__ import annotations

import numpy as np

__all__ = ["log_kernel", "relaxation_interval"]


def _log_phi(z: np.ndarray) -> np.ndarray:
    """ln((1 - exp(-z)) / z) for z >= 0, with its series near 0."""
    z = np.asarray(z, dtype=np.float64)
    small = z < 1e-6
    safe = np.where(small, 1.0, z)
    return np.where(small, -0.5 * z + z * z / 24.0, np.log(-np.expm1(-safe) / safe))


def log_kernel(t: np.ndarray, tau_m: np.ndarray, tau_x: np.ndarray) -> np.ndarray:
    """ln K(t) of a current jump (see the module docstring); ``t > 0``, taus in ticks; broadcasts."""
    t = np.asarray(t, dtype=np.float64)
    tau_m = np.asarray(tau_m, dtype=np.float64)
    tau_x = np.asarray(tau_x, dtype=np.float64)
    d = np.abs(1.0 / tau_m - 1.0 / tau_x)
    return np.log(t) - np.log(tau_m) - t / np.maximum(tau_m, tau_x) + _log_phi(t * d)


def relaxation_interval(tau_m: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ticks a current-free membrane needs from ``-y`` to ``-x`` below its leak (``y > x > 0``, LSB)."""
    return np.asarray(tau_m, dtype=np.float64) * np.log(np.asarray(y, dtype=np.float64) / np.asarray(x))
