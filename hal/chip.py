"""The chip's resource model: the numbers every layer of firstspike agrees on.

A BrainScaleS-2-like chip: 512 neurons in two halves ("hemispheres") of 256 columns. Each half owns a
256-row x 256-column synapse array; a neuron sees only the rows of its own half. Rows are driven in pairs
by synapse drivers and are excitatory, inhibitory or off, so a signed input costs two rows.
"""

from __future__ import annotations

N_HALVES = 2
COLUMNS_PER_HALF = 256
N_NEURONS = N_HALVES * COLUMNS_PER_HALF  # 512
ROWS_PER_HALF = 256
ROWS_PER_DRIVER = 2
DRIVERS_PER_HALF = ROWS_PER_HALF // ROWS_PER_DRIVER  # 128
N_SYNAPSES = N_HALVES * ROWS_PER_HALF * COLUMNS_PER_HALF  # 131 072
MAX_SIGNED_INPUTS_PER_HALF = ROWS_PER_HALF // 2  # one excitatory + one inhibitory row each

WEIGHT_BITS = 6
WEIGHT_MAX = (1 << WEIGHT_BITS) - 1  # 63
LABEL_BITS = 6
N_LABELS = 1 << LABEL_BITS  # 64

# External event sources (spike-train inputs from the host) addressable by the routing crossbar.
N_INPUT_CHANNELS = 1024

# Digital neuron parameters are 10-bit (capacitive-memory-like cells); 1023 is reserved.
PARAM_BITS = 10
PARAM_MAX = (1 << PARAM_BITS) - 2  # 1022
REFRACTORY_MAX = 255

CLOCK_HZ = 125_000_000
TICK_NS = 8
TICK_S = 1.0 / CLOCK_HZ
SPEEDUP = 1000  # accelerated time: 1 us on chip ~ 1 ms biological
NOMINAL_TAU_S_TICKS = 750  # the paper's tau_s = 6 us on chip

# Programmable delay lines in the event router: one per route (source -> half, row, address), digital and exact
# in ticks. A 9-bit code counts steps of 8 ticks: 0 .. 4088 ticks (32.7 us, 5.45 tau_s at the nominal tau_s).
DELAY_BITS = 9
DELAY_CODE_MAX = (1 << DELAY_BITS) - 1  # 511
DELAY_STEP_TICKS = 8
DELAY_MAX_TICKS = DELAY_CODE_MAX * DELAY_STEP_TICKS  # 4088

# Limits of one run (per batch entry and per call); devices may report tighter limits in DeviceInfo.
MAX_DURATION_TICKS = 1 << 24  # ~134 ms of chip time per batch entry
MAX_BATCH = 1 << 16


def resource_model() -> dict[str, int | float]:
    """The resource model as a plain dict (for ``firstspike info``, device info and the wire)."""
    return {
        "halves": N_HALVES,
        "columns_per_half": COLUMNS_PER_HALF,
        "neurons": N_NEURONS,
        "rows_per_half": ROWS_PER_HALF,
        "drivers_per_half": DRIVERS_PER_HALF,
        "rows_per_driver": ROWS_PER_DRIVER,
        "synapses": N_SYNAPSES,
        "max_signed_inputs_per_half": MAX_SIGNED_INPUTS_PER_HALF,
        "weight_bits": WEIGHT_BITS,
        "weight_max": WEIGHT_MAX,
        "label_bits": LABEL_BITS,
        "input_channels": N_INPUT_CHANNELS,
        "param_bits": PARAM_BITS,
        "param_max": PARAM_MAX,
        "refractory_max": REFRACTORY_MAX,
        "clock_hz": CLOCK_HZ,
        "tick_ns": TICK_NS,
        "speedup": SPEEDUP,
        "nominal_tau_s_ticks": NOMINAL_TAU_S_TICKS,
        "delay_bits": DELAY_BITS,
        "delay_step_ticks": DELAY_STEP_TICKS,
        "delay_max_ticks": DELAY_MAX_TICKS,
        "max_duration_ticks": MAX_DURATION_TICKS,
        "max_batch": MAX_BATCH,
    }
