"""The named structures :mod:`firstspike.sim_device.engine`'s numba kernels take instead of long positional lists.

Each is a :class:`typing.NamedTuple` of arrays and scalars. numba passes a namedtuple to a compiled function as its
fields (the same machine code as passing them one by one) and reads a field at no cost, so a kernel takes a few of
these and adding a table is one field here plus the line that fills it, not an edit of every signature in the
call chain. Units: ticks for times, Q12 (2^-12 membrane LSB, docs/device-spec.md section 2) for membranes,
currents and thresholds, Q30 (2^30 = 1.0) for propagator coefficients. "Engine neuron ``i``" is ``active[i]``;
"compact source ``k``" is a delay line whose events reach an active neuron: the routes of one input channel or
neuron with one delay (without delays, a line is its source).

At the Python boundary the entry kernels take them as plain tuples (:func:`plain`), :class:`Model` field by field,
and ``engine._run_chunk`` names them again: numba types a plain tuple of arrays in C, a namedtuple in Python
(measured 2.7 against 5.3 us per call for five of eight arrays each, on the ~0.15 ms of a one-sample run), and a
parallel loop (``prange``) passes only tuples whose fields are arrays or scalars.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Tables(NamedTuple):
    """Propagators (docs/device-spec.md section 3), shared by neurons with equal time constants: ``t`` is a table.
    The engine builds them int64 and runs on int32 copies cut to a run's duration (every coefficient is in
    ``[0, 2^30]``)."""

    tick: np.ndarray  # (T, 5, P) Q30: rows u<-u, u<-I_e, u<-I_i, I_e<-I_e, I_i<-I_i for d mod P ticks
    step: np.ndarray  # (T, 6, J) Q30: the same rows for d div P whole update periods; row 5: suffix max of row 1
    jlen: np.ndarray  # (T,) step columns in use: a gap of jlen or more periods decays everything to 0
    kb: np.ndarray  # (T,) max of tick row 1 + max of step row 1: every grid sample is <= u+ + kb I_e / 2^30


class Neurons(NamedTuple):
    """Parameters of engine neuron ``i``, one entry per active logical neuron (int64)."""

    tid: np.ndarray  # its propagator table
    reset: np.ndarray  # membrane after a spike (Q12, relative to leak)
    umin: np.ndarray  # membrane clamp, lower (Q12)
    umax: np.ndarray  # membrane clamp, upper (Q12)
    refr: np.ndarray  # refractory period (ticks)
    leak: np.ndarray  # leak potential (Q12), added back for the membrane readout


class Wiring(NamedTuple):
    """What an event of compact source ``k`` does to engine neuron ``i``: rows are neurons (the neuron-by-neuron
    path reads one neuron's row per event)."""

    we: np.ndarray  # (A, S) int64 summed excitatory jump (Q12)
    wi: np.ndarray  # (A, S) int64 summed inhibitory jump (Q12)
    wired: np.ndarray  # (A, S) bool: the event anchors the neuron, whatever its jump (spec 5.1)


class Fanout(NamedTuple):
    """What a spike of engine neuron ``i`` becomes: one event per delay line of the neuron (its routes of one delay,
    on rows that are not OFF), lines ``ptr[i]:ptr[i+1]`` (int64; without delays at most one line per neuron)."""

    ptr: np.ndarray  # (A + 1,)
    source: np.ndarray  # (F,) compact source index of the line's events (-1: they reach no active neuron)
    lag: np.ndarray  # (F,) ticks from the spike's time-stamp to the arrival: ROUTE_DELAY_TICKS + the line's delay
    synapses: np.ndarray  # (F,) synapses one event of the line activates (the ``synaptic_events`` statistic)
    neuron_id: np.ndarray  # (A,) the neuron's logical id (the recorded label)


class Levels(NamedTuple):
    """The processing order: level ``g`` is engine neurons ``nrn[ptr[g]:ptr[g+1]]``, run once per entry in
    topological order, or iterated to the fixed point if ``iterate[g]`` (recurrent routing). The routing matrices
    transposed, columns in that order, for the lockstep pass (int32, clipped at ``I_MAX``: exact, see
    ``engine._level_jumps``)."""

    ptr: np.ndarray  # (G + 1,) int64
    nrn: np.ndarray  # (A,) int64 engine neurons in processing order
    iterate: np.ndarray  # (G,) bool
    we: np.ndarray  # (S, A) int32
    wi: np.ndarray  # (S, A) int32
    wired: np.ndarray  # (S, A) int8


class Lockstep(NamedTuple):
    """Which levels of one run go in lockstep, and the tables the lockstep pass reads (built per duration)."""

    on: np.ndarray  # (G,) bool: level g runs in lockstep ...
    min_events: int  # ... if its chunk has at least this many source events per entry
    coef: np.ndarray  # (rows, columns) int32: every neuron's coefficients as a column (``engine._level_tables``)
    jc: int  # step columns in ``coef``
    #: (G, P + jc) int64: per level, the largest I_e <- I_e coefficient of its neurons for each tick r < P, then for
    #: each step j < jc (an upper bound of every neuron's current decay, ``engine._decay_bound``)
    emax: np.ndarray


class Model(NamedTuple):
    """Everything the kernels read about the configured chip, for one run's duration and lockstep choice."""

    tables: Tables
    neurons: Neurons
    wiring: Wiring
    fanout: Fanout
    levels: Levels
    lock: Lockstep


class Run(NamedTuple):
    """One call of ``run_engine``: the entries' inputs and options, and the arrays the results go to."""

    in_ptr: np.ndarray  # (B + 1,) int64: events of entry b are in_t/in_k[in_ptr[b]:in_ptr[b+1]]
    in_t: np.ndarray  # int64 ticks, sorted within each entry
    in_k: np.ndarray  # int64 compact sources
    theta: np.ndarray  # (B, A) int64 thresholds (Q12, noise included)
    dur: int  # ticks per entry
    record_first: bool  # keep each neuron's first spike only
    ro_idx: np.ndarray  # (R,) int64 engine neuron of each readout (-1: inactive, filled on the host)
    period: int  # readout sample period (ticks)
    out_t: np.ndarray  # (B, cap) uint32 recorded ticks, row b sorted
    out_n: np.ndarray  # (B, cap) uint16 recorded neuron ids
    out_cnt: np.ndarray  # (B,) int64 recorded spikes (may exceed cap: the host reruns those entries)
    stats: np.ndarray  # (B, 2) int64: spikes emitted, synapses activated by neuron spikes
    mem: np.ndarray  # (B, R, S) int32 membrane samples


class Sources(NamedTuple):
    """Events of a chunk's entries as the neurons of one level see them: entry ``e``'s are ``t[ptr[e]:ptr[e+1]]``
    (int64 ticks, time-sorted) from compact sources ``k[...]``."""

    ptr: np.ndarray
    t: np.ndarray
    k: np.ndarray


class LevelState(NamedTuple):
    """A lockstep level's working state (``engine.STATE_ROWS``): one flat int64 array of rows ``engine.SM`` apart,
    one column per level neuron, and one flag byte per neuron (also read as 64-bit words)."""

    flat: np.ndarray  # (N_STATE * SM,) int64
    slow: np.ndarray  # (SM,) uint8
    slow_words: np.ndarray  # (SM // 8,) uint64, the same memory as ``slow``


def plain(x: Any) -> Any:
    """``x`` with every (nested) namedtuple turned into a plain tuple, for a kernel's Python entry point."""
    return tuple(plain(v) for v in x) if isinstance(x, tuple) else x
