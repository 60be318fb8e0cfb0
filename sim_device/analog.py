"""The analog reality model: fixed-pattern mismatch and temporal noise from a counter-based PRNG (spec section 6).

Every random number is a pure function of a key, ``hash64(tag, k1, k2, ...)``, built from the SplitMix64
finaliser; nothing is drawn from a stateful generator, so the same chip (serial number) always has the same
mismatch and the same (seed, entry, neuron) always sees the same noise, in any order, on any machine.

Normal variates are integers: :func:`normal64` sums twelve 5-bit uniforms from one hash and gives ``z`` in
units of 1/64 (standard deviation 0.9995, range -5.8 .. +5.8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firstspike.hal import chip
from firstspike.sim_device.spec import FACTOR_BITS, FACTOR_ONE, V_ONE

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

# Stream tags: one per kind of random quantity (ASCII of a short name, so they never collide).
TAG_TAU_M = 0x7461755F6D  # "tau_m"
TAG_TAU_E = 0x7461755F65
TAG_TAU_I = 0x7461755F69
TAG_LEAK = 0x6C65616B
TAG_THRESHOLD = 0x7468726573
TAG_RESET = 0x7265736574
TAG_GAIN_E = 0x6761696E5F65
TAG_GAIN_I = 0x6761696E5F69
TAG_SYNAPSE = 0x73796E
TAG_NOISE_THRESHOLD = 0x6E5F746872
TAG_NOISE_LOSS = 0x6E5F6C6F7373
TAG_NOISE_JITTER = 0x6E5F6A6974

# ---- the magnitudes of the analog effects (documented in docs/device-spec.md section 6) ----------------------
#: mismatch: relative standard deviation of each time constant (Q16: 1966/65536 = 3 %)
SIGMA_TAU_Q16 = 1966
#: mismatch: standard deviation of leak, threshold and reset offsets (membrane LSB in Q12: 2 LSB)
SIGMA_LEAK_Q12 = 2 * V_ONE
SIGMA_THRESHOLD_Q12 = 2 * V_ONE
SIGMA_RESET_Q12 = 2 * V_ONE
#: mismatch: relative standard deviation of each neuron's synaptic gains (Q16: 3 %)
SIGMA_GAIN_Q16 = 1966
#: mismatch: relative standard deviation of each synapse's weight-to-current gain (Q16: 5 %)
SIGMA_SYNAPSE_Q16 = 3277
#: noise: standard deviation of the per-entry threshold noise of each neuron (Q12: 1 LSB)
SIGMA_NOISE_THRESHOLD_Q12 = V_ONE
#: noise: an input event is lost when the top LOSS_BITS of its hash are zero (probability 2^-12)
LOSS_BITS = 12
#: noise: standard deviation of the arrival-time jitter of input events (ticks)
SIGMA_JITTER_TICKS = 2


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def hash64(tag: int, *keys: np.ndarray | int) -> np.ndarray:
    """``h = mix(tag)``, then for each key ``h = mix(h ^ mix(key + GOLDEN))`` (all mod 2^64); broadcasts."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(np.uint64(tag & 0xFFFFFFFFFFFFFFFF)))
        for k in keys:
            kk = np.asarray(k).astype(np.uint64)
            h = _mix(h ^ _mix(kk + _GOLDEN))
    return h


def normal64(h: np.ndarray) -> np.ndarray:
    """Integer normal variate in units of 1/64 from a hash: ``sum_{i<12} (2 U_i + 1) - 384``, ``U_i`` = bits
    5i..5i+4 of ``h``. Mean 0, standard deviation 0.9995, |z| <= 372/64. Returns int64."""
    s = np.zeros(np.shape(h), dtype=np.int64)
    for i in range(12):
        s += ((h >> np.uint64(5 * i)) & np.uint64(31)).astype(np.int64) * 2 + 1
    return s - 384


def scaled(z64: np.ndarray, sigma: int) -> np.ndarray:
    """``floor(z64 * sigma / 64)``: a normal variate of standard deviation ``sigma`` (same unit as sigma)."""
    return (z64 * int(sigma)) >> 6


@dataclass(frozen=True, eq=False)
class Mismatch:
    """The fixed pattern of one chip (all int64). Factors are Q16 (65536 = nominal), offsets Q12 LSB.

    Per physical neuron (512): ``tau_m``, ``tau_e``, ``tau_i``, ``gain_e``, ``gain_i`` factors and ``leak``,
    ``threshold``, ``reset`` offsets; per synapse (2, 256, 256): ``synapse`` factor.
    """

    tau_m: np.ndarray
    tau_e: np.ndarray
    tau_i: np.ndarray
    gain_e: np.ndarray
    gain_i: np.ndarray
    leak: np.ndarray
    threshold: np.ndarray
    reset: np.ndarray
    synapse: np.ndarray

    @classmethod
    def ideal(cls) -> Mismatch:
        """No mismatch: every factor nominal, every offset zero."""
        one = np.full(chip.N_NEURONS, FACTOR_ONE, dtype=np.int64)
        zero = np.zeros(chip.N_NEURONS, dtype=np.int64)
        syn = np.full((chip.N_HALVES, chip.ROWS_PER_HALF, chip.COLUMNS_PER_HALF), FACTOR_ONE, dtype=np.int64)
        return cls(one, one, one, one, one, zero, zero, zero, syn)

    @classmethod
    def for_serial(cls, serial: int) -> Mismatch:
        """The mismatch of the chip with this serial number (keys: (tag, serial, neuron) and
        (tag, serial, half, row, column))."""
        n = np.arange(chip.N_NEURONS, dtype=np.uint64)

        def factor(tag: int, sigma: int) -> np.ndarray:
            return FACTOR_ONE + scaled(normal64(hash64(tag, serial, n)), sigma)

        def offset(tag: int, sigma: int) -> np.ndarray:
            return scaled(normal64(hash64(tag, serial, n)), sigma)

        h, r, c = np.meshgrid(
            np.arange(chip.N_HALVES, dtype=np.uint64),
            np.arange(chip.ROWS_PER_HALF, dtype=np.uint64),
            np.arange(chip.COLUMNS_PER_HALF, dtype=np.uint64),
            indexing="ij",
        )
        syn = FACTOR_ONE + scaled(normal64(hash64(TAG_SYNAPSE, serial, h, r, c)), SIGMA_SYNAPSE_Q16)
        return cls(
            tau_m=factor(TAG_TAU_M, SIGMA_TAU_Q16),
            tau_e=factor(TAG_TAU_E, SIGMA_TAU_Q16),
            tau_i=factor(TAG_TAU_I, SIGMA_TAU_Q16),
            gain_e=factor(TAG_GAIN_E, SIGMA_GAIN_Q16),
            gain_i=factor(TAG_GAIN_I, SIGMA_GAIN_Q16),
            leak=offset(TAG_LEAK, SIGMA_LEAK_Q12),
            threshold=offset(TAG_THRESHOLD, SIGMA_THRESHOLD_Q12),
            reset=offset(TAG_RESET, SIGMA_RESET_Q12),
            synapse=syn,
        )


def threshold_noise(seed: int, entries: np.ndarray, neurons: np.ndarray) -> np.ndarray:
    """(len(entries), len(neurons)) threshold noise in Q12 LSB, keyed by (seed, global entry, neuron id)."""
    e = np.asarray(entries, dtype=np.uint64)[:, None]
    n = np.asarray(neurons, dtype=np.uint64)[None, :]
    return scaled(normal64(hash64(TAG_NOISE_THRESHOLD, seed, e, n)), SIGMA_NOISE_THRESHOLD_Q12)


def input_noise(
    seed: int, entries: np.ndarray, channels: np.ndarray, occurrence: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per input event: (lost: bool, jitter: int64 ticks), keyed by (seed, global entry, channel, k) where k
    counts the earlier events of the same channel in the same entry."""
    e = np.asarray(entries, dtype=np.uint64)
    ch = np.asarray(channels, dtype=np.uint64)
    k = np.asarray(occurrence, dtype=np.uint64)
    lost = (hash64(TAG_NOISE_LOSS, seed, e, ch, k) >> np.uint64(64 - LOSS_BITS)) == 0
    z = normal64(hash64(TAG_NOISE_JITTER, seed, e, ch, k))
    jitter = (z * SIGMA_JITTER_TICKS + 32) >> 6
    return lost, jitter


def apply_factor(value: np.ndarray | int, factor_q16: np.ndarray | int) -> np.ndarray:
    """``(value * factor + 2^15) >> 16``: a Q16 factor applied with rounding (half up)."""
    return (np.asarray(value, dtype=np.int64) * factor_q16 + (1 << (FACTOR_BITS - 1))) >> FACTOR_BITS
