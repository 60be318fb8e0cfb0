"""The constants of the simulated device's integer arithmetic (see ``docs/device-spec.md``).

Every number the dynamics use is an integer derived from these constants, the digital configuration and
(optionally) the analog model. Changing any of them changes the bits the device produces: bump
:data:`SPEC_VERSION` and regenerate the golden vectors (``scripts/gen_golden_sim.py``).
"""

from __future__ import annotations

from firstspike.hal import chip

#: version of the device spec; reported as ``DeviceInfo.version``
SPEC_VERSION = "1.2"

#: earlier versions whose configurations produce the same bits under this one: 1.2 adds the routes' delay lines
#: (docs/device-spec.md section 5.1), and a configuration without delays runs exactly as under 1.1
SAME_BITS_AS = ("1.1",)

#: the threshold comparator samples the membrane on this grid (ticks since the start of the entry)
UPDATE_PERIOD_TICKS = 64

#: delay between a neuron's spike time-stamp and the arrival of its routed event (ticks), before the route's own
#: programmable delay (``hal.chip.DELAY_STEP_TICKS`` per code step) is added
ROUTE_DELAY_TICKS = 1

#: fractional bits of membrane voltage and synaptic currents (state unit: 2^-12 membrane LSB)
V_FRAC_BITS = 12
V_ONE = 1 << V_FRAC_BITS

#: fractional bits of the propagator coefficients (Q30)
COEF_BITS = 30
COEF_ONE = 1 << COEF_BITS

#: fractional bits of the per-tick coefficients the tables are derived from (Q62, Python integers)
FINE_BITS = 62

#: time constants are held in units of 1/256 tick
TAU_FRAC_BITS = 8

#: the membrane is bounded by the rails 0 .. V_MAX_LSB membrane LSB (the codes' range plus one)
V_MAX_LSB = chip.PARAM_MAX + 1  # 1023
V_MAX = V_MAX_LSB * V_ONE

#: each synaptic current is bounded to 0 .. I_MAX_LSB membrane LSB
I_MAX_LSB = 1 << 14
I_MAX = I_MAX_LSB * V_ONE

#: multiplicative factors (mismatch) are Q16
FACTOR_BITS = 16
FACTOR_ONE = 1 << FACTOR_BITS
