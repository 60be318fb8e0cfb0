"""Nominal calibration: how digital parameter values map to physical quantities and to model units.

This is the *ideal* chip's transfer function. A real (or simulated, mismatched) chip deviates from it per
neuron and synapse; the device's own calibration corrects for that. The compiler uses these curves to turn
model units into digital values, and the simulator uses them as the nominal point around which it draws
its fixed-pattern mismatch.

Model units (the TTFS math, Göltz et al. 2021): time in units of the synaptic time constant tau_s = 1,
leak conductance g_l = 1, leak potential E_l = 0, threshold theta = 1. The neuron obeys::

    tau_m du/dt = -(u - E_l) + I          tau_s dI/dt = -I          (an input of weight w: I += w)

so for tau_m = tau_s = tau one input gives the kernel ``w (t/tau) exp(-t/tau)`` and for tau_m != tau_s
``w tau_s/(tau_m - tau_s) (exp(-t/tau_m) - exp(-t/tau_s))``.

On the chip, voltages are in membrane LSB (the digital leak/threshold/reset codes are voltages in the same
LSB), currents are in membrane LSB too (the I of the equation above), and an event through a synapse of
digital weight ``d`` on a neuron whose synaptic gain code is ``g`` makes its synaptic current jump by
``d * g / GAIN_DIVISOR`` LSB. Hence one model weight unit equals ``(threshold - leak)`` LSB of current.
"""

from __future__ import annotations

from firstspike.hal import chip

TAU_TICKS_PER_CODE = 4  # time-constant codes 1..1022 -> 4..4088 ticks (32 ns .. 32.7 us)
REFRACTORY_TICKS_PER_CODE = 8  # refractory codes 0..255 -> 0..2040 ticks
GAIN_DIVISOR = 64  # current jump per event = weight * gain_code / GAIN_DIVISOR membrane LSB
VOLT_LSB_MV = 1.0  # one membrane LSB is 1 mV (nominal; used only for display)


def tau_code_to_ticks(code: int | float) -> float:
    """Nominal time constant in ticks for a digital time-constant code (1..1022)."""
    return float(code) * TAU_TICKS_PER_CODE


def tau_ticks_to_code(ticks: float) -> int:
    """Nearest digital time-constant code for a time constant in ticks (clipped to 1..PARAM_MAX)."""
    return int(min(max(round(ticks / TAU_TICKS_PER_CODE), 1), chip.PARAM_MAX))


def refractory_code_to_ticks(code: int) -> int:
    """Refractory period in ticks for a refractory code (0..255)."""
    return int(code) * REFRACTORY_TICKS_PER_CODE


def refractory_ticks_to_code(ticks: float) -> int:
    """Nearest refractory code for a refractory period in ticks (clipped to 0..REFRACTORY_MAX)."""
    return int(min(max(round(ticks / REFRACTORY_TICKS_PER_CODE), 0), chip.REFRACTORY_MAX))


def current_jump_lsb(weight: int | float, gain_code: int | float) -> float:
    """Synaptic current jump in membrane LSB of one event through a synapse of digital ``weight``."""
    return float(weight) * float(gain_code) / GAIN_DIVISOR


def model_weight_per_lsb(gain_code: int | float, threshold_code: int, leak_code: int) -> float:
    """Model weight (theta - E_l = 1 units) represented by one digital weight step at these settings."""
    span = threshold_code - leak_code
    if span <= 0:
        raise ValueError(f"threshold code {threshold_code} must exceed leak code {leak_code}")
    return current_jump_lsb(1, gain_code) / span


def model_time_to_ticks(t: float, tau_s_ticks: float) -> float:
    """Model time (units of tau_s) -> ticks."""
    return t * tau_s_ticks


def ticks_to_model_time(ticks: float, tau_s_ticks: float) -> float:
    """Ticks -> model time (units of tau_s)."""
    return ticks / tau_s_ticks
