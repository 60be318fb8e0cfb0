"""From a digital configuration (and a chip's mismatch) to the integers the dynamics use (spec sections 4-6).

:func:`build_model` is shared by the reference and the fast engine: it maps codes to effective integer
parameters per logical neuron and to a current jump per synapse. The dynamics themselves (routing, events,
threshold, reset) are implemented separately in :mod:`firstspike.sim_device.reference` and
:mod:`firstspike.sim_device.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from firstspike.hal import chip
from firstspike.hal.calibration import GAIN_DIVISOR, REFRACTORY_TICKS_PER_CODE, TAU_TICKS_PER_CODE
from firstspike.hal.config import ChipConfig, RowMode
from firstspike.sim_device.analog import Mismatch, apply_factor
from firstspike.sim_device.fixedpoint import Propagator, propagator
from firstspike.sim_device.spec import FACTOR_BITS, TAU_FRAC_BITS, V_MAX, V_ONE

N = chip.N_NEURONS
C = chip.COLUMNS_PER_HALF


@dataclass(frozen=True, eq=False)
class DeviceModel:
    """Effective integer parameters of a configured chip (arrays indexed by neuron id 0..511, int64).

    ``logical[p]``: the logical neuron physical neuron ``p`` belongs to (``p`` itself, or column ``c`` for the
    half-1 neuron of a merged column). ``active``: sorted ids of logical neurons that integrate and spike.
    Membrane quantities are Q12 LSB relative to the neuron's effective leak: ``theta`` (threshold before
    temporal noise), ``reset``, ``u_min``/``u_max`` (the rails). ``refractory`` in ticks. ``tau_q``: (3, 512)
    effective tau_m, tau_e, tau_i in 1/256 tick. ``jump``: (2, 256, 256) current jump in Q12 LSB of an event
    through each synapse (sign from the row mode). ``props[n]``: the propagator of active neuron ``n``.
    """

    config: ChipConfig
    logical: np.ndarray
    active: np.ndarray
    leak: np.ndarray
    theta: np.ndarray
    reset: np.ndarray
    u_min: np.ndarray
    u_max: np.ndarray
    refractory: np.ndarray
    tau_q: np.ndarray
    jump: np.ndarray
    props: dict[int, Propagator]


def logical_map(merged: np.ndarray) -> np.ndarray:
    """(512,) logical neuron of each physical neuron: half-1 neurons of merged columns map to the column."""
    out = np.arange(N, dtype=np.int64)
    cols = np.flatnonzero(merged)
    out[C + cols] = cols
    return out


def _clip_v(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, V_MAX)


def _jump_values(w: np.ndarray, mode: np.ndarray, col_logical: np.ndarray, v: dict, mismatch: Mismatch,
                 f_syn: np.ndarray) -> np.ndarray:
    """Current jumps (Q12 LSB) of synapses given elementwise (or broadcastable): weight ``w``, row mode, the
    logical neuron of the column and the synapse's mismatch factor. (w * g * V_ONE / GAIN_DIVISOR) * f_neuron
    * f_synapse with one rounding; zero on OFF rows."""
    inh = mode == RowMode.INHIBITORY
    gain = np.where(inh, np.asarray(v["gain_inh"], dtype=np.int64)[col_logical],
                    np.asarray(v["gain_exc"], dtype=np.int64)[col_logical])
    f_n = np.where(inh, mismatch.gain_i[col_logical], mismatch.gain_e[col_logical])
    base = np.asarray(w, dtype=np.int64) * gain * (V_ONE // GAIN_DIVISOR)
    jump = (base * f_n * f_syn) >> (2 * FACTOR_BITS)
    return np.where(mode == RowMode.OFF, 0, jump).astype(np.int64)


def _jumps(config: ChipConfig, logical: np.ndarray, mismatch: Mismatch) -> np.ndarray:
    """(2, 256, 256) current jump (Q12 LSB) of every synapse (:func:`_jump_values`)."""
    modes = np.asarray(config.row_modes, dtype=np.int64)[:, :, None]
    col_logical = logical.reshape(chip.N_HALVES, 1, C)
    return _jump_values(config.synapses.weights, modes, col_logical, config.neurons.values, mismatch,
                        mismatch.synapse)


def only_weights_differ(a: ChipConfig, b: ChipConfig) -> bool:
    """True if ``a`` and ``b`` differ in nothing but synapse weights (the in-the-loop trainer's updates)."""
    fa, fb = a.fields(), b.fields()
    return all(
        fa[k].shape == fb[k].shape and np.array_equal(fa[k], fb[k]) for k in fa if k != "synapses.weights"
    )


def only_weights_and_delays_differ(a: ChipConfig, b: ChipConfig) -> bool:
    """True if ``a`` and ``b`` differ in nothing but synapse weights and route delays (the same routes): what an
    in-the-loop step that trains delays changes."""
    fa, fb = a.fields(), b.fields()
    return all(
        fa[k].shape == fb[k].shape and np.array_equal(fa[k], fb[k])
        for k in fa
        if k not in ("synapses.weights", "routing.delay")
    )


def with_weights(model: DeviceModel, config: ChipConfig, mismatch: Mismatch,
                 changed: np.ndarray | None = None) -> DeviceModel:
    """``build_model(config, mismatch)`` for a ``config`` that differs from ``model.config`` only in synapse
    weights and route delays (see :func:`only_weights_and_delays_differ`; the model does not depend on the routing):
    every per-neuron integer and propagator is reused, and only the jumps of the synapses whose weight changed are
    recomputed. ``changed``: the flat indices of those synapses if the caller knows them (an unchanged one among
    them gets its own jump again), else found here. Same arrays as a full build (tested)."""
    # Only the synapses whose weight changed get a new jump (a training step changes a few hundred of 131 072).
    if changed is None:
        changed = np.flatnonzero(model.config.synapses.weights.reshape(-1) != config.synapses.weights.reshape(-1))
    jump = model.jump.copy()
    if len(changed):
        h, r, c = np.unravel_index(changed, model.jump.shape)
        mode = np.asarray(config.row_modes, dtype=np.int64)[h, r]
        col_logical = model.logical.reshape(chip.N_HALVES, C)[h, c]
        jump.reshape(-1)[changed] = _jump_values(config.synapses.weights.reshape(-1)[changed], mode, col_logical,
                                                 config.neurons.values, mismatch, mismatch.synapse.reshape(-1)[changed])
    return replace(model, config=config, jump=jump)


def build_model(config: ChipConfig, mismatch: Mismatch) -> DeviceModel:
    """Effective integers of ``config`` on a chip with ``mismatch`` (use ``Mismatch.ideal()`` for none)."""
    v = config.neurons.values
    merged = np.asarray(config.neurons.merged_columns, dtype=bool)
    logical = logical_map(merged)
    ids = np.arange(N)
    own = logical == ids  # neurons that are a logical neuron of their own (emit spikes)
    enabled = np.asarray(v["enabled"], dtype=bool) & own
    active = np.flatnonzero(enabled).astype(np.int64)

    code = {k: np.asarray(v[k], dtype=np.int64) for k in v if k != "enabled"}
    leak = _clip_v(code["leak"] * V_ONE + mismatch.leak)
    threshold = _clip_v(code["threshold"] * V_ONE + mismatch.threshold)
    reset = _clip_v(code["reset"] * V_ONE + mismatch.reset)

    tau_q = np.empty((3, N), dtype=np.int64)
    scale = TAU_TICKS_PER_CODE << TAU_FRAC_BITS
    for k, (name, f) in enumerate(
        (("tau_mem", mismatch.tau_m), ("tau_syn_exc", mismatch.tau_e), ("tau_syn_inh", mismatch.tau_i))
    ):
        tau_q[k] = np.maximum(apply_factor(code[name] * scale, f), 1 << TAU_FRAC_BITS)

    jump = _jumps(config, logical, mismatch)
    props = {int(n): propagator(int(tau_q[0, n]), int(tau_q[1, n]), int(tau_q[2, n])) for n in active}
    return DeviceModel(
        config=config,
        logical=logical,
        active=active,
        leak=leak,
        theta=threshold - leak,
        reset=reset - leak,
        u_min=-leak,
        u_max=V_MAX - leak,
        refractory=code["refractory"] * REFRACTORY_TICKS_PER_CODE,
        tau_q=tau_q,
        jump=jump,
        props=props,
    )
