"""The fast engine: bit-identical to :mod:`firstspike.sim_device.reference`, event-driven, parallel over batch entries.

Why it is fast (see docs/device-spec.md section 8):

* A neuron's trajectory depends only on the events it receives. When the neuron-to-neuron routing is acyclic
  the engine processes neurons in topological order ("levels"), each one once per entry, walking its own
  time-sorted events; the spikes of a level become events for the next. With recurrent routing it iterates
  the whole network to the (unique) fixed point of the same semantics.
* State is exact integers with O(1) propagation over any gap (tick table x step table), so time between
  events costs nothing. The threshold is checked only on the update grid, and only while an integer upper
  bound of the membrane (suffix maxima of the propagator) says a crossing is still possible.
* Routing is pre-aggregated into dense (neuron x source) jump and wiring matrices of the *used* sources and
  neurons.
* An acyclic level of several neurons with many events per entry (MNIST16's hidden and output layers) runs in
  lockstep instead: per event tick, one vectorised (SIMD) pass over all its neurons' contiguous state delivers
  the jumps of every neuron whose delivery provably needs no crossing search (an exact per-neuron bound ``lim``
  set at its last anchor); the few others go through the unchanged scalar search (docs/device-spec.md
  section 9).
* The kernels are compiled with numba and run chunks of batch entries on all cores: one kernel that releases the
  GIL, called on disjoint ranges of chunks from a few threads (:func:`_call_threads`); a batch of one chunk runs
  on the calling thread. One compiled kernel, not a serial and a ``prange`` one: a cold start compiles half.

The kernels take a few named structures (:mod:`firstspike.sim_device._kernel_args`: :class:`Tables`,
:class:`Neurons`, :class:`Wiring`, :class:`Fanout`, :class:`Levels`, :class:`Lockstep` bundled as :class:`Model`;
:class:`Run` for one call's inputs and outputs; :class:`Sources`, :class:`LevelState`), not long positional
lists: adding a table is a field there and the line here that fills it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from firstspike.hal import chip
from firstspike.hal.config import ChipConfig, RowMode, SourceKind
from firstspike.hal.threads import run_items
from firstspike.sim_device._kernel_args import (
    Fanout,
    Levels,
    LevelState,
    Lockstep,
    Model,
    Neurons,
    Run,
    Sources,
    Tables,
    Wiring,
    plain,
)
from firstspike.sim_device._noalias import load_state, load_table, store_state, trailing_zeros
from firstspike.sim_device._sorting import sort_nearly, sort_runs
from firstspike.sim_device.model import DeviceModel
from firstspike.sim_device.spec import (
    COEF_BITS,
    I_MAX,
    ROUTE_DELAY_TICKS,
    UPDATE_PERIOD_TICKS,
    V_FRAC_BITS,
    V_MAX_LSB,
)

try:  # numba is a declared dependency; without it the same code runs (slowly) as plain Python
    from numba import get_num_threads, njit, types
    from numba.core.cpu import CPUTargetOptions
    from numba.extending import overload

    HAVE_NUMBA = True
    # ``_nrt`` is numba's (underscored) switch for reference counting; should a version drop it, the kernels
    # compile with reference counting: slower, same results
    NO_REFCOUNT: dict[str, Any] = {"_nrt": False} if hasattr(CPUTargetOptions, "_nrt") else {}
except ImportError:  # pragma: no cover - exercised only where numba is missing
    HAVE_NUMBA = False
    NO_REFCOUNT = {}

    def get_num_threads() -> int:  # type: ignore[misc]
        return 1

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        if args and callable(args[0]):
            return args[0]
        return lambda f: f


def _thread_count() -> int:
    """numba's thread count (``numba.set_num_threads``, ``NUMBA_NUM_THREADS``), read without starting numba's
    threading layer when nothing has started it yet. The engine runs no numba-parallel code, and with the OpenMP
    layer that start resets the process's OpenMP thread count to all cores, and torch's intra-op threads with it
    (a trainer's one torch thread became two beside the engine)."""
    if not HAVE_NUMBA:
        return 1
    from numba import config
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", True):  # started (e.g. by set_num_threads), or a numba without the flag
        return int(get_num_threads())
    return int(getattr(config, "NUMBA_NUM_THREADS", 1))


def _lockstep(lock: tuple | None) -> Lockstep | None:
    """The :class:`Lockstep` of a plain tuple, or None (see :func:`_without_lockstep`)."""
    return None if lock is None else Lockstep(*lock)


if HAVE_NUMBA:

    @overload(_lockstep)
    def _lockstep_typed(lock):  # pragma: no cover - compiled
        # chosen by the argument's type, so each kernel specialisation has one Model type
        if isinstance(lock, types.NoneType):
            return lambda lock: None
        return lambda lock: Lockstep(*lock)


P = UPDATE_PERIOD_TICKS
SHIFT_P = P.bit_length() - 1
assert 1 << SHIFT_P == P, "the engine needs a power-of-two update period"
B30 = COEF_BITS
N_SOURCES = chip.N_INPUT_CHANNELS + chip.N_NEURONS  # source id: channel, or 1024 + neuron


# ---- kernels ------------------------------------------------------------------------------------------------
# Tables are shared by neurons with equal time constants: ``tid[i]`` is the table of engine neuron ``i``.
# Hot kernels that allocate nothing are compiled without numba's reference counting (``NO_REFCOUNT``): inlining
# the helpers below passes arrays by new names, and the increments and decrements numba then emits (atomic
# calls, inside the crossing search's loops) cost 16 % of an MNIST16 run; the arrays are owned by the caller.


@njit(cache=True, inline="always")
def _prop(tab, t, u, ie, ii, d):  # pragma: no cover - compiled
    """State after ``d`` ticks without events: tick table for ``d mod P``, then step table for ``d div P``
    (``tab``: :class:`Tables`, ``t``: the neuron's table)."""
    tick, step, jlen = tab.tick, tab.step, tab.jlen
    r = d & (P - 1)
    j = d >> SHIFT_P
    u1 = (tick[t, 0, r] * u + tick[t, 1, r] * ie - tick[t, 2, r] * ii) >> B30
    e1 = (tick[t, 3, r] * ie) >> B30
    i1 = (tick[t, 4, r] * ii) >> B30
    if j > 0:
        if j >= jlen[t]:
            u1 = 0
            e1 = 0
            i1 = 0
        else:
            u1 = (step[t, 0, j] * u1 + step[t, 1, j] * e1 - step[t, 2, j] * i1) >> B30
            e1 = (step[t, 3, j] * e1) >> B30
            i1 = (step[t, 4, j] * i1) >> B30
    return u1, e1, i1


@njit(cache=True, inline="always")
def _prop_i(tab, t, ie, ii, d):  # pragma: no cover - compiled
    """Currents only (they do not depend on the membrane)."""
    tick, step, jlen = tab.tick, tab.step, tab.jlen
    r = d & (P - 1)
    j = d >> SHIFT_P
    e1 = (tick[t, 3, r] * ie) >> B30
    i1 = (tick[t, 4, r] * ii) >> B30
    if j > 0:
        if j >= jlen[t]:
            e1 = 0
            i1 = 0
        else:
            e1 = (step[t, 3, j] * e1) >> B30
            i1 = (step[t, 4, j] * i1) >> B30
    return e1, i1


@njit(cache=True, inline="always")
def _prop_u(tab, t, u, ie, ii, d):  # pragma: no cover - compiled
    return _prop(tab, t, u, ie, ii, d)[0]


@njit(cache=True, inline="always")
def _search(tab, t, ta, u, ie, ii, theta, limit):  # pragma: no cover - compiled
    """Predicted crossing tick from the anchor, considering grid intervals that start at or before ``limit``;
    -1 if none there (or provably none at all)."""
    tick, step, jlen, kb = tab.tick, tab.step, tab.jlen, tab.kb
    up = u if u > 0 else 0
    th30 = theta << B30
    # cheap rigorous bound: every grid sample is <= u+ + kb * ie / 2^30 (see docs/device-spec.md section 8)
    if (up << B30) + kb[t] * ie < th30:
        return -1
    g = (ta >> SHIFT_P) + 1
    d0 = g * P - ta
    r0 = d0 & (P - 1)
    j = d0 >> SHIFT_P
    u1 = (tick[t, 0, r0] * u + tick[t, 1, r0] * ie - tick[t, 2, r0] * ii) >> B30
    e1 = (tick[t, 3, r0] * ie) >> B30
    i1 = (tick[t, 4, r0] * ii) >> B30
    up = u1 if u1 > 0 else 0
    jl = jlen[t]
    while (g - 1) * P <= limit:
        if j < jl:
            if step[t, 0, j] * up + step[t, 5, j] * e1 < th30:
                return -1  # no grid point from here on can reach threshold
            ug = (step[t, 0, j] * u1 + step[t, 1, j] * e1 - step[t, 2, j] * i1) >> B30
        else:
            ug = 0
            if ug < theta:
                return -1
        if ug >= theta:
            lo = (g - 1) * P
            if ta > lo:
                lo = ta
            hi = g * P
            # the membrane at lo and hi as the bisection finds it (the time-stamp below needs both); u_lo is
            # known once lo has moved, else it is evaluated at the end
            u_hi = ug
            u_lo = theta
            lo_moved = False
            while hi - lo > 1:
                if lo > limit:
                    return -1  # the crossing comes after the next event, which re-anchors the neuron first
                mid = (lo + hi) >> 1
                um = _prop_u(tab, t, u, ie, ii, mid - ta)
                above = um >= theta  # selects, not branches: this comparison is unpredictable
                hi = mid if above else hi
                u_hi = um if above else u_hi
                lo = lo if above else mid
                u_lo = u_lo if above else um
                lo_moved = lo_moved or not above
            if lo > limit:
                return -1
            if lo > ta:
                if not lo_moved:
                    u_lo = _prop_u(tab, t, u, ie, ii, lo - ta)
                if u_lo < theta and theta - u_lo < u_hi - theta:
                    return lo
            return hi
        g += 1
        j += 1
    return -1


@njit(cache=True, inline="always")
def _spike(spk, nsp, e, i, nth, ts, tab, t, ta, ie, ii, rs, rt):  # pragma: no cover - compiled
    """Engine neuron ``i`` (entry ``e``, table ``t``, anchored at ``ta``) spikes at tick ``ts`` (spec 5.2): the row
    (entry, tick, neuron, nth) goes to ``spk[nsp]`` (the caller guarantees room), the currents are propagated to
    ``ts``, the membrane is reset to ``rs`` and the neuron is refractory until ``ts + rt``. Returns (nsp, nth, ta,
    u, ie, ii, refractory, release) after the spike."""
    spk[nsp, 0] = e
    spk[nsp, 1] = ts
    spk[nsp, 2] = i
    spk[nsp, 3] = nth
    ie, ii = _prop_i(tab, t, ie, ii, ts - ta)
    return nsp + 1, nth + 1, ts, rs, ie, ii, True, ts + rt


@njit(cache=True, **NO_REFCOUNT)
def _sample(mem, ns, t_end, tab, t, ta, u, ie, ii, refr, reset, leak, period):  # pragma: no cover - compiled
    """Write readout samples for ticks in [ns * period, t_end) from the current anchor; returns the new ns."""
    while ns < mem.shape[0] and ns * period < t_end:
        s = ns * period
        v = reset if refr else _prop_u(tab, t, u, ie, ii, s - ta)
        x = (v + leak) >> V_FRAC_BITS
        mem[ns] = 0 if x < 0 else (V_MAX_LSB if x > V_MAX_LSB else x)
        ns += 1
    return ns


@njit(cache=True, inline="always")
def _spikes_at_most(dur, refr_ticks):  # pragma: no cover - compiled
    """The most spikes one neuron can emit in a run of ``dur`` ticks: at strictly increasing ticks at least
    (refractory + 1) apart."""
    return min(dur, (dur - 1) // (refr_ticks + 1) + 1)


@njit(cache=True, inline="always")
def _with_room(spk, nsp, more):  # pragma: no cover - compiled
    """``spk`` (spike rows, the first ``nsp`` used), or a copy with room for ``more`` rows after them (at least
    twice as long, so growing stays amortised)."""
    if nsp + more <= spk.shape[0]:
        return spk
    bigger = np.empty((2 * spk.shape[0] + more, 4), dtype=np.int64)
    # element by element: numba compiles a slice assignment's shape-mismatch message (string formatting), which
    # cost ~3 s of every cold start
    for s in range(nsp):
        for c in range(4):
            bigger[s, c] = spk[s, c]
    return bigger


@njit(cache=True)
def _neurons(nrn, e, src, theta, tab, par, wiring, dur, spk, nsp, mem, period):  # pragma: no cover - compiled
    """Run engine neurons ``nrn`` of chunk entry ``e`` over its events in ``src`` (:class:`Sources`) with
    thresholds ``theta`` (per engine neuron), tables ``tab``, parameters ``par`` (:class:`Neurons`) and
    :class:`Wiring`; append their spikes as rows (entry, tick, neuron, nth) to ``spk`` (grown here, so
    :func:`_neuron` allocates nothing). If ``mem`` is non-empty (one neuron only) sample its membrane every
    ``period`` ticks."""
    for q in range(nrn.shape[0]):
        i = nrn[q]
        spk = _with_room(spk, nsp, _spikes_at_most(dur, par.refr[i]))
        nsp = _neuron(i, e, src, theta, tab, par, wiring, dur, spk, nsp, mem, period)
    return spk, nsp


@njit(cache=True, **NO_REFCOUNT)
def _neuron(i, e, src, theta, tab, par, wiring, dur, spk, nsp, mem, period):  # pragma: no cover - compiled
    """Engine neuron ``i`` of chunk entry ``e`` (see :func:`_neurons`); ``spk`` has room for its spikes.
    Returns the new ``nsp``."""
    src_t, src_k = src.t, src.k
    we, wi, wired = wiring.we, wiring.wi, wiring.wired
    lo = src.ptr[e]
    hi = src.ptr[e + 1]
    sampling = mem.shape[0] > 0
    t = par.tid[i]
    th = theta[i]
    rs = par.reset[i]
    lk = par.leak[i]
    # the state as int64 and bool from the start: numba types a call with the literal 0 (or False) on its own and
    # compiles the callee (_sample) once more for it; same code, only compile time
    ta = np.int64(0)
    u = np.int64(0)
    ie = np.int64(0)
    ii = np.int64(0)
    refr = np.bool_(False)
    rel = np.int64(0)
    ns = np.int64(0)
    nth = 0
    idx = lo
    fetch = True
    tn = dur
    dje = 0
    dji = 0
    while True:
        if fetch:  # the next tick at which an event wired to this neuron arrives, and the summed jumps
            fetch = False
            tn = dur
            dje = 0
            dji = 0
            while idx < hi:
                if wired[i, src_k[idx]]:
                    break
                idx += 1
            if idx < hi:
                tn = src_t[idx]
                while idx < hi and src_t[idx] == tn:
                    k = src_k[idx]
                    dje += we[i, k]
                    dji += wi[i, k]
                    idx += 1
        if refr:
            if rel < dur and rel <= tn:  # release first (also at the tick of a delivery)
                if sampling:
                    ns = _sample(mem, ns, rel, tab, t, ta, u, ie, ii, refr, rs, lk, period)
                ie, ii = _prop_i(tab, t, ie, ii, rel - ta)
                ta = rel
                u = rs
                refr = False
                continue
            if tn >= dur:
                break
            if sampling:
                ns = _sample(mem, ns, tn, tab, t, ta, u, ie, ii, refr, rs, lk, period)
            ie, ii = _prop_i(tab, t, ie, ii, tn - ta)
            ta = tn
            ie = min(ie + dje, I_MAX)
            ii = min(ii + dji, I_MAX)
            fetch = True
            continue
        ts = _search(tab, t, ta, u, ie, ii, th, tn)
        if ts >= 0 and ts <= tn and ts < dur:
            if sampling:
                ns = _sample(mem, ns, ts, tab, t, ta, u, ie, ii, refr, rs, lk, period)
            nsp, nth, ta, u, ie, ii, refr, rel = _spike(spk, nsp, e, i, nth, ts, tab, t, ta, ie, ii, rs, par.refr[i])
            continue
        if tn >= dur:
            break
        if sampling:
            ns = _sample(mem, ns, tn, tab, t, ta, u, ie, ii, refr, rs, lk, period)
        u, ie, ii = _prop(tab, t, u, ie, ii, tn - ta)
        u = min(max(u, par.umin[i]), par.umax[i])
        ie = min(ie + dje, I_MAX)
        ii = min(ii + dji, I_MAX)
        ta = tn
        fetch = True
    if sampling:
        ns = _sample(mem, ns, dur, tab, t, ta, u, ie, ii, refr, rs, lk, period)
    return nsp


@njit(cache=True)
def _with_spikes(base, spk, lo, hi, fan, dur):  # pragma: no cover - compiled
    """Per-entry source lists (:class:`Sources`): the events of ``base`` plus the routed events of spikes
    ``spk[lo:hi]`` (one per delay line of the neuron that reaches an active neuron and arrives before ``dur``;
    ``fan``: :class:`Fanout`), time-sorted."""
    base_ptr, base_t, base_k = base
    f_ptr, f_src, f_lag = fan.ptr, fan.source, fan.lag
    n_entries = base_ptr.shape[0] - 1
    cnt = np.zeros(n_entries, dtype=np.int64)
    for s in range(lo, hi):
        i = spk[s, 2]
        for f in range(f_ptr[i], f_ptr[i + 1]):
            if f_src[f] >= 0 and spk[s, 1] + f_lag[f] < dur:
                cnt[spk[s, 0]] += 1
    ptr = np.zeros(n_entries + 1, dtype=np.int64)
    for e in range(n_entries):
        ptr[e + 1] = ptr[e] + (base_ptr[e + 1] - base_ptr[e]) + cnt[e]
    # the new events of each entry, grouped by entry, then sorted by time inside the entry
    nptr = np.zeros(n_entries + 1, dtype=np.int64)
    for e in range(n_entries):
        nptr[e + 1] = nptr[e] + cnt[e]
    nt = np.empty(max(nptr[n_entries], 1), dtype=np.int64)
    nk = np.empty(max(nptr[n_entries], 1), dtype=np.int64)
    fill = nptr[:n_entries].copy()
    for s in range(lo, hi):
        i = spk[s, 2]
        for f in range(f_ptr[i], f_ptr[i + 1]):
            k = f_src[f]
            ta = spk[s, 1] + f_lag[f]
            if k >= 0 and ta < dur:
                e = spk[s, 0]
                nt[fill[e]] = ta
                nk[fill[e]] = k
                fill[e] += 1
    out_t = np.empty(max(ptr[n_entries], 1), dtype=np.int64)
    out_k = np.empty(max(ptr[n_entries], 1), dtype=np.int64)
    for e in range(n_entries):
        a0, a1 = base_ptr[e], base_ptr[e + 1]
        c0, c1 = nptr[e], nptr[e + 1]
        # by time, ties in spike order (stable): the key carries the position
        skey = np.empty(c1 - c0, dtype=np.int64)
        for s in range(c1 - c0):
            skey[s] = (nt[c0 + s] << 32) | s
        sort_nearly(skey)
        seg_t = np.empty(c1 - c0, dtype=np.int64)
        seg_k = np.empty(c1 - c0, dtype=np.int64)
        for s in range(c1 - c0):
            seg_t[s] = skey[s] >> 32
            seg_k[s] = nk[c0 + (skey[s] & 0xFFFFFFFF)]
        q = ptr[e]
        x = a0
        y = 0
        ny = c1 - c0
        while x < a1 or y < ny:
            if y >= ny or (x < a1 and base_t[x] <= seg_t[y]):
                out_t[q] = base_t[x]
                out_k[q] = base_k[x]
                x += 1
            else:
                out_t[q] = seg_t[y]
                out_k[q] = seg_k[y]
                y += 1
            q += 1
    return Sources(ptr, out_t, out_k)


@njit(cache=True)
def _run_group(g, src, theta_be, b0, m, dur, spk, nsp):  # pragma: no cover - compiled
    """Level ``g`` of :class:`Model` ``m`` neuron by neuron on every entry of ``src``; the thresholds of chunk entry
    ``e`` are ``theta_be[b0 + e]``."""
    nrn = m.levels.nrn[m.levels.ptr[g] : m.levels.ptr[g + 1]]
    no_mem = np.empty(0, dtype=np.int32)
    for e in range(src.ptr.shape[0] - 1):
        spk, nsp = _neurons(nrn, e, src, theta_be[b0 + e], m.tables, m.neurons, m.wiring, dur, spk, nsp, no_mem,
                            np.int64(1))
    return spk, nsp


# ---- lockstep levels: per event tick, all neurons of a level at once --------------------------------------------
# State of a level (:class:`LevelState`), one row per field and one column per level neuron (rows are contiguous, so
# the per-event pass vectorises). The rows are ``SM`` apart in one flat array (a compile-time stride, so LLVM sees
# that they never overlap); the extra cache line keeps the rows off the same L1 sets (a stride of exactly 4 KiB made
# them evict each other).
SM = chip.N_NEURONS + 8
assert SM % 8 == 0, "the flag bytes of a level are scanned as whole 64-bit words"
#: the rows in memory order: anchor tick, membrane, currents, refractory flag (0/1), release tick, spikes so far and
#: ``lim``, the last delivery tick at which the exact fast path applies (see :func:`_level_entry`); the threshold
#: and the membrane's clamp bounds; per event tick the summed jumps and whether the tick's events are wired to the
#: neuron. Row ``name`` starts at ``S_<NAME>`` (:func:`state_row` gives it by name).
STATE_ROWS = ("ta", "u", "ie", "ii", "refr", "rel", "nth", "lim", "th", "umin", "umax", "je", "ji", "w")
N_STATE = len(STATE_ROWS)
S_TA, S_U, S_IE, S_II, S_REFR, S_REL, S_NTH, S_LIM, S_TH, S_UMIN, S_UMAX, S_JE, S_JI, S_W = range(0, N_STATE * SM, SM)
#: ``lim`` of a neuron that needs no search before its next anchor (larger than any tick of a run)
NEVER = 1 << 62


@njit(cache=True)
def new_level_state():  # pragma: no cover - compiled
    """A zeroed :class:`LevelState` for a level of up to ``chip.N_NEURONS`` neurons (the flag bytes past the level
    stay 0: they are scanned as whole words)."""
    slow = np.zeros(SM, dtype=np.uint8)
    return LevelState(np.zeros(N_STATE * SM, dtype=np.int64), slow, slow.view(np.uint64))


def state_row(ls: LevelState, name: str) -> np.ndarray:
    """Row ``name`` (one of :data:`STATE_ROWS`) of a level state, as a view of ``SM`` columns."""
    k = STATE_ROWS.index(name)
    return ls.flat[k * SM : (k + 1) * SM]


@njit(cache=True, inline="always")
def _lim(ct, c, tn, u, ie, ii, th):  # pragma: no cover - compiled
    """For a non-refractory neuron anchored at ``tn`` with state (u, ie, ii) and threshold ``th``: the last tick
    a delivery may arrive at without a crossing search. If the search's own bound at the first grid sample
    ``g1`` (membrane+ times the step decay plus the current times the suffix maximum of the step table's
    u<-I_e row) is below threshold, the search finds nothing whatever its limit: ``dur`` (never). Otherwise it
    can only find a spike before a delivery at ``t`` if the sample at ``g1`` reaches ``th`` (any ``t``), or the
    second one does and ``g1 <= t``, or ``g1 + P <= t`` (a third sample would be needed): -1, ``g1 - 1`` or
    ``g1 + P - 1``. Returns ``NEVER`` for "never"."""
    g1 = ((tn >> SHIFT_P) + 1) << SHIFT_P
    d1 = g1 - tn
    a = np.uint64(5) * np.uint64(d1 & (P - 1))
    b0 = np.uint64(5 * P) + np.uint64(6) * np.uint64(d1 >> SHIFT_P)
    b = b0 + np.uint64(6)
    x1 = (ct[a, c] * u + ct[a + np.uint64(1), c] * ie - ct[a + np.uint64(2), c] * ii) >> B30
    y1 = (ct[a + np.uint64(3), c] * ie) >> B30
    z1 = (ct[a + np.uint64(4), c] * ii) >> B30
    # the first grid sample: the tick part's membrane, or, for tn on the grid (d1 = P: the tick part is the
    # identity and b0 is the step table's row 1), one whole step
    s1 = x1 if d1 < P else (ct[b0, c] * x1 + ct[b0 + np.uint64(1), c] * y1 - ct[b0 + np.uint64(2), c] * z1) >> B30
    s2 = (ct[b, c] * x1 + ct[b + np.uint64(1), c] * y1 - ct[b + np.uint64(2), c] * z1) >> B30
    if ct[b0, c] * max(x1, 0) + ct[b0 + np.uint64(5), c] * y1 < (th << B30):
        return NEVER
    return -1 if s1 >= th else (g1 - 1 if s2 >= th else g1 + P - 1)


@njit(cache=True, inline="always")
def _decay_bound(emax, ie, d):  # pragma: no cover - compiled
    """An upper bound of the excitatory current ``ie`` (>= 0) of any neuron of a level after ``d`` ticks without
    events: :func:`_prop_i`'s two floor steps with the level's largest coefficients ``emax`` (``Lockstep.emax[g]``)
    instead of the neuron's own. Sound because every coefficient is in ``[0, 2^30]`` and a floor step is monotone
    in both the coefficient and the current (a step past a neuron's table gives it 0)."""
    e1 = (emax[d & (P - 1)] * ie) >> B30
    j = d >> SHIFT_P
    if j > 0:
        e1 = (emax[P + min(j, emax.shape[0] - P - 1)] * e1) >> B30
    return e1


@njit(cache=True)
def _deliver_all(ct, jc, q0, n, tn, tp, st, slow):  # pragma: no cover - compiled
    """The vector pass of one event tick ``tn`` over the ``n`` level neurons (columns ``q0:q0+n`` of ``ct``).
    Every neuron wired to the tick's events (``st[S_W]``; its jumps ``st[S_JE]``, ``st[S_JI]`` may be 0) that is
    anchored at ``tp`` (the previous event tick: in a densely wired level all are, so the table rows are shared
    and the loads contiguous) and whose delivery needs no search (``tn <= lim``) takes it: state propagated to
    ``tn`` (tick part, then step part), membrane clamped (held while refractory), jumps added, ``lim`` of the
    new anchor (:func:`_lim`). The others keep their state; the wired ones are flagged in ``slow`` (one byte per
    neuron) for the scalar pass. Returns the number flagged.

    The loop is branch-free (selects only), without calls and with alias information for LLVM
    (:mod:`firstspike.sim_device._noalias`), so it vectorises. It is specialised on two facts shared by all neurons:
    whether the step part is the identity (``tn - tp < P``) and whether the first grid sample is a whole step away
    (``tn`` on the grid; otherwise it is the tick table's membrane row, which the new anchor's ``lim`` reuses)."""
    d = tn - tp
    # whole groups of 8 neurons (one AVX-512 vector of int64): a remainder would run the loop's scalar copy. The
    # state rows past the level are zeros, so the extra lanes have no jump and store back what they loaded (the
    # rows hold SM > 512 columns, the table 16 spare columns past the last neuron)
    n = (n + 7) & ~7
    if d < P:
        if (tn & (P - 1)) == 0:
            return _deliver_loop(ct, jc, q0, n, tn, tp, st, slow, False, True)
        return _deliver_loop(ct, jc, q0, n, tn, tp, st, slow, False, False)
    if (tn & (P - 1)) == 0:
        return _deliver_loop(ct, jc, q0, n, tn, tp, st, slow, True, True)
    return _deliver_loop(ct, jc, q0, n, tn, tp, st, slow, True, False)


@njit(cache=True, inline="always")
def _deliver_loop(ct, jc, q0, n, tn, tp, st, slow, stepped, on_grid):  # pragma: no cover - compiled
    """The body of :func:`_deliver_all`; ``stepped`` and ``on_grid`` are constants at each (inlined) call."""
    c1, c2, c3, c4 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    sb = np.uint64(5 * P)
    d = tn - tp
    rr = np.uint64(5) * np.uint64(d & (P - 1))
    jj = sb + np.uint64(6) * np.uint64(min(d >> SHIFT_P, jc - 1))
    # the new anchor's first two grid samples (the same rows for every neuron: tn is shared)
    g1 = ((tn >> SHIFT_P) + 1) << SHIFT_P
    d1 = g1 - tn
    a = np.uint64(5) * np.uint64(d1 & (P - 1))
    b0 = sb + np.uint64(6) * np.uint64(d1 >> SHIFT_P)
    b = b0 + np.uint64(6)
    b5 = b0 + np.uint64(5)
    l1 = g1 - 1
    l2 = g1 + P - 1
    nslow = 0
    for q in range(n):
        c = q0 + q
        je = load_state(st, S_JE + q)
        ji = load_state(st, S_JI + q)
        ta = load_state(st, S_TA + q)
        u = load_state(st, S_U + q)
        ie = load_state(st, S_IE + q)
        ii = load_state(st, S_II + q)
        u2 = (load_table(ct, rr, c) * u + load_table(ct, rr + c1, c) * ie - load_table(ct, rr + c2, c) * ii) >> B30
        e2 = (load_table(ct, rr + c3, c) * ie) >> B30
        i2 = (load_table(ct, rr + c4, c) * ii) >> B30
        if stepped:
            u1, e1, i1 = u2, e2, i2
            u2 = (load_table(ct, jj, c) * u1 + load_table(ct, jj + c1, c) * e1 - load_table(ct, jj + c2, c) * i1)
            u2 = u2 >> B30
            e2 = (load_table(ct, jj + c3, c) * e1) >> B30
            i2 = (load_table(ct, jj + c4, c) * i1) >> B30
        rf = load_state(st, S_REFR + q)
        uc = min(max(u2, load_state(st, S_UMIN + q)), load_state(st, S_UMAX + q))
        un = u if rf != 0 else uc
        en = min(e2 + je, I_MAX)
        iN = min(i2 + ji, I_MAX)
        if on_grid:  # the tick part to the first grid sample is the identity, the sample is a whole step
            x1, y1, z1 = un, en, iN
            s1 = load_table(ct, b0, c) * un + load_table(ct, b0 + c1, c) * en - load_table(ct, b0 + c2, c) * iN
            s1 = s1 >> B30
        else:  # the first grid sample is the tick part's membrane
            x1 = (load_table(ct, a, c) * un + load_table(ct, a + c1, c) * en - load_table(ct, a + c2, c) * iN) >> B30
            y1 = (load_table(ct, a + c3, c) * en) >> B30
            z1 = (load_table(ct, a + c4, c) * iN) >> B30
            s1 = x1
        s2 = (load_table(ct, b, c) * x1 + load_table(ct, b + c1, c) * y1 - load_table(ct, b + c2, c) * z1) >> B30
        th = load_state(st, S_TH + q)
        lim = load_state(st, S_LIM + q)
        far = load_table(ct, b0, c) * max(x1, 0) + load_table(ct, b5, c) * y1 < (th << B30)
        ln = NEVER if far else (-1 if s1 >= th else (l1 if s2 >= th else l2))
        ln = lim if rf != 0 else ln
        act = load_state(st, S_W + q) != 0
        upd = act & (ta == tp) & (tn <= lim)
        sl = act != upd  # upd implies act
        store_state(st, S_TA + q, tn if upd else ta)
        store_state(st, S_U + q, un if upd else u)
        store_state(st, S_IE + q, en if upd else ie)
        store_state(st, S_II + q, iN if upd else ii)
        store_state(st, S_LIM + q, ln if upd else lim)
        store_state(slow, q, 1 if sl else 0)
        nslow += 1 if sl else 0
    return nslow


@njit(cache=True, inline="always")
def _jumps_of(lv, k, q0, n, st, add):  # pragma: no cover - compiled
    """Set (or, with ``add``, increase) the level's summed jumps ``st[S_JE]``, ``st[S_JI]`` by source ``k``'s row
    of the level routing matrices (:class:`Levels`, columns ``q0:q0+n``), and mark in ``st[S_W]`` the neurons the
    source is wired to (they get an anchor, whatever the jump). Through the alias-tagged loads so the loop reads
    the row contiguously and vectorises (numba's own indexing made it a gather)."""
    we_g, wi_g, wired_g = lv.we, lv.wi, lv.wired
    for q in range(n):
        je = load_table(we_g, k, q0 + q)
        ji = load_table(wi_g, k, q0 + q)
        w = np.int64(load_table(wired_g, k, q0 + q))
        if add:
            je += load_state(st, S_JE + q)
            ji += load_state(st, S_JI + q)
            w |= load_state(st, S_W + q)
        store_state(st, S_JE + q, je)
        store_state(st, S_JI + q, ji)
        store_state(st, S_W + q, w)


@njit(cache=True, inline="always")
def _any_wired(st, n):  # pragma: no cover - compiled
    """Whether the tick's events are wired to any of the level's ``n`` neurons (``st[S_W]``)."""
    acc = 0
    for q in range(n):
        acc |= load_state(st, S_W + q)
    return acc != 0


@njit(cache=True, inline="always", **NO_REFCOUNT)
def _advance(tab, t, ta, u, ie, ii, refr, rel, nth, th, rs, rt, tn, dur, spk, nsp, e, i):  # pragma: no cover - compiled
    """Releases and spikes of engine neuron ``i`` (table ``t``, threshold ``th``, reset ``rs``, refractory period
    ``rt``) from its anchor up to tick ``tn`` (its next delivery, or ``dur``); the crossing search is limited to
    ``tn`` exactly as right after the anchor. Spikes are appended to ``spk`` (the caller guarantees room). Returns
    the new state and ``nsp``. Inlined into the lockstep entry (a call with 21 arguments per crossing search cost
    7 % of an MNIST16 run)."""
    while True:
        if refr:
            if rel < dur and rel <= tn:  # release first (also at the tick of a delivery)
                ie, ii = _prop_i(tab, t, ie, ii, rel - ta)
                ta = rel
                u = rs
                refr = False
                continue
            break
        ts = _search(tab, t, ta, u, ie, ii, th, tn)
        if ts >= 0 and ts <= tn and ts < dur:
            nsp, nth, ta, u, ie, ii, refr, rel = _spike(spk, nsp, e, i, nth, ts, tab, t, ta, ie, ii, rs, rt)
            continue
        break
    return ta, u, ie, ii, refr, rel, nth, nsp


@njit(cache=True, **NO_REFCOUNT)
def _level_entry(m, g, e, src, theta, dur, spk, nsp, ls):  # pragma: no cover - compiled
    """Chunk entry ``e`` of the acyclic level ``g`` of :class:`Model` ``m`` in lockstep over the entry's events in
    ``src``, with thresholds ``theta`` (per engine neuron) and the level state ``ls``: per event tick, the summed
    jumps of all level neurons and which of them the tick's events are wired to (the level's contiguous columns of
    :class:`Levels`' matrices), the vector pass :func:`_deliver_all`, then the flagged neurons one by one: releases
    and spikes up to the delivery (the unchanged crossing search, :func:`_advance`), the delivery and the new
    ``lim``. ``lim`` is exact: the search after an anchor is deferred to the next delivery (it is limited to that
    tick anyway) and skipped when the first two grid samples show it cannot find a crossing (:func:`_lim`); a
    refractory neuron's ``lim`` is the tick before its release. No array is created here; ``spk`` has room for the
    entry."""
    tab, par, lv = m.tables, m.neurons, m.levels
    ct, jc = m.lock.coef, m.lock.jc
    grp_nrn = lv.nrn
    src_t, src_k = src.t, src.k
    lo, hi = src.ptr[e], src.ptr[e + 1]
    q0 = lv.ptr[g]
    n = lv.ptr[g + 1] - q0
    st, slow_w = ls.flat, ls.slow_words
    for q in range(n):
        st[S_TA + q] = 0
        st[S_U + q] = 0
        st[S_IE + q] = 0
        st[S_II + q] = 0
        st[S_REFR + q] = 0
        st[S_REL + q] = 0
        st[S_NTH + q] = 0
        st[S_TH + q] = theta[grp_nrn[q0 + q]]
        # _lim of the rest state at tick 0: every sample is 0, so never unless the threshold is <= 0
        st[S_LIM + q] = NEVER if st[S_TH + q] > 0 else -1
    idx = lo
    # the last event tick wired to the level (every neuron wired to it is anchored there); int64, not the literal 0,
    # which would make numba compile _deliver_all once more
    tp = np.int64(0)
    while idx < hi:
        tn = src_t[idx]
        _jumps_of(lv, src_k[idx], q0, n, st, False)
        idx += 1
        while idx < hi and src_t[idx] == tn:
            _jumps_of(lv, src_k[idx], q0, n, st, True)
            idx += 1
        if not _any_wired(st, n):
            # no neuron of the level is wired to tn's events (an input tick seen by a later level): no anchor moves, so
            # tp stays and the next tick's neurons still share it
            continue
        nslow = _deliver_all(ct, jc, q0, n, tn, tp, st, ls.slow)
        tp = tn
        # the flagged neurons in order, eight flag bytes per word (a flag byte is 0 or 1): one test per word and a
        # bit scan per flagged neuron instead of a hard-to-predict branch per neuron
        word = 0
        bits = np.uint64(0)
        while nslow > 0:
            while bits == 0:
                bits = slow_w[word]
                word += 1
            q = ((word - 1) << 3) + (trailing_zeros(bits) >> 3)
            bits &= bits - np.uint64(1)
            nslow -= 1
            i = grp_nrn[q0 + q]
            t = par.tid[i]
            th = st[S_TH + q]
            ta, u, ie, ii, refr, rel, nth = st[S_TA + q], st[S_U + q], st[S_IE + q], st[S_II + q], \
                st[S_REFR + q] != 0, st[S_REL + q], st[S_NTH + q]
            if tn > st[S_LIM + q]:  # else no release and no crossing before tn: only the other anchor tick
                ta, u, ie, ii, refr, rel, nth, nsp = _advance(
                    tab, t, ta, u, ie, ii, refr, rel, nth, th, par.reset[i], par.refr[i], tn, dur, spk, nsp, e, i,
                )
            if refr:
                ie, ii = _prop_i(tab, t, ie, ii, tn - ta)
            else:
                u, ie, ii = _prop(tab, t, u, ie, ii, tn - ta)
                u = min(max(u, st[S_UMIN + q]), st[S_UMAX + q])
            ie = min(ie + st[S_JE + q], I_MAX)
            ii = min(ii + st[S_JI + q], I_MAX)
            st[S_TA + q] = tn
            st[S_U + q] = u
            st[S_IE + q] = ie
            st[S_II + q] = ii
            st[S_REFR + q] = 1 if refr else 0
            st[S_REL + q] = rel
            st[S_NTH + q] = nth
            if refr:
                st[S_LIM + q] = rel - 1 if rel < dur else NEVER
            else:
                st[S_LIM + q] = _lim(ct, q0 + q, tn, u, ie, ii, th)
    emax = m.lock.emax[g]
    for q in range(n):
        if st[S_LIM + q] == NEVER:
            continue  # no release before the end and no crossing: the search would find nothing (see _lim)
        i = grp_nrn[q0 + q]
        if st[S_REFR + q] != 0:
            # released before the end (else lim is never): membrane at reset, the current decayed from the anchor.
            # The search's first test (membrane+ plus kb times the current below threshold: nothing, ever) with an
            # upper bound of that current from the level's largest decay coefficients (hot in cache) instead of
            # the neuron's own tables: when it holds, _advance finds nothing (its exact current is not larger)
            rs = par.reset[i]
            e_ub = _decay_bound(emax, st[S_IE + q], st[S_REL + q] - st[S_TA + q])
            if ((rs if rs > 0 else 0) << B30) + tab.kb[par.tid[i]] * e_ub < (st[S_TH + q] << B30):
                continue
        nsp = _advance(
            tab, par.tid[i], st[S_TA + q], st[S_U + q], st[S_IE + q], st[S_II + q], st[S_REFR + q] != 0,
            st[S_REL + q], st[S_NTH + q], st[S_TH + q], par.reset[i], par.refr[i], dur, dur, spk, nsp, e, i,
        )[7]
    return nsp


def _level_tables(tick: np.ndarray, step: np.ndarray, jlen: np.ndarray, tid: np.ndarray) -> tuple[np.ndarray, int]:
    """The propagator coefficients of every engine neuron ``tid`` refers to, one column per neuron (int32, every
    Q30 coefficient is in ``[0, 2^30]``; products stay int64), for :func:`_deliver_all`: rows ``5 r + c`` for
    r < P hold the tick table rows c = 0..4 at r; rows ``5 P + 6 j + c`` for j < jc hold the step table rows
    c = 0..5 at j (5: the suffix maximum of row 1; all zero from the table's length on). The tick part, read at
    every pass, is 5 P rows (it was 8 P, with the first grid sample's coefficients repeated; 0.97x CPU time on
    the realistic chip, 0.99x on the ideal one). Returns (table, jc)."""
    n_t, _, jcap = step.shape
    jc = max(jcap + 1, 3)  # >= 3: the second grid sample reads step column 1 or 2
    rows = tick.transpose(0, 2, 1)
    st = np.zeros((n_t, jc, 6), dtype=np.int64)
    for t in range(n_t):
        st[t, : jlen[t], :] = step[t, :6, : jlen[t]].T
    per_table = np.concatenate([rows.reshape(n_t, -1), st.reshape(n_t, -1)], axis=1)
    assert per_table.min(initial=0) >= 0 and per_table.max(initial=0) <= 1 << B30
    # row length padded off multiples of 4 KiB / 8 (rows a pass reads together must not share L1 sets)
    out = np.zeros((per_table.shape[1], (len(tid) + 15) // 16 * 16 + 16), dtype=np.int32)
    out[:, : len(tid)] = per_table[tid].T
    return out, jc


@njit(cache=True)
def _run_level(g, src, theta_be, b0, m, dur, spk, nsp):  # pragma: no cover - compiled
    """Run the acyclic level ``g`` of :class:`Model` ``m`` on every entry of ``src`` (see :func:`_level_entry`)."""
    lv = m.levels
    q0 = lv.ptr[g]
    ls = new_level_state()
    for q in range(lv.ptr[g + 1] - q0):
        ls.flat[S_UMIN + q] = m.neurons.umin[lv.nrn[q0 + q]]
        ls.flat[S_UMAX + q] = m.neurons.umax[lv.nrn[q0 + q]]
    most = 0  # spikes of one entry of the level
    for q in range(q0, lv.ptr[g + 1]):
        most += _spikes_at_most(dur, m.neurons.refr[lv.nrn[q]])
    for e in range(src.ptr.shape[0] - 1):
        spk = _with_room(spk, nsp, most)
        nsp = _level_entry(m, g, e, src, theta_be[b0 + e], dur, spk, nsp, ls)
    return spk, nsp


@njit(cache=True)
def _run_chunk(entries, run_, tab, par, wiring, fanout, levels, lock):  # pragma: no cover - compiled
    """Run the batch entries ``entries`` (a contiguous range) of :class:`Run` ``run`` on the :class:`Model` of the
    other arguments (all as :func:`plain` tuples, see :func:`_run_batch`), level by level: a level in lockstep over
    its events if ``m.lock`` says so and the chunk has enough events per entry, else neuron by neuron; then record,
    count and sample the readout."""
    run = Run(*run_)
    # ``lock`` is None when no level of this call can run in lockstep (:func:`_kernel_args_of`): numba then prunes
    # the lockstep branches before typing them, so a process that never needs them never compiles them
    m = Model(Tables(*tab), Neurons(*par), Wiring(*wiring), Fanout(*fanout), Levels(*levels), _lockstep(lock))
    n_e = entries.shape[0]
    b0 = entries[0]
    dur = run.dur
    lv = m.levels
    in_ptr = run.in_ptr
    src_ptr = np.empty(n_e + 1, dtype=np.int64)
    for e in range(n_e + 1):
        src_ptr[e] = in_ptr[b0 + e] - in_ptr[b0]
    lo, hi = in_ptr[b0], in_ptr[b0 + n_e]
    src = Sources(src_ptr, run.in_t[lo:hi].copy(), run.in_k[lo:hi].copy())
    spk = np.empty((max(16, 2 * n_e * m.neurons.reset.shape[0]), 4), dtype=np.int64)
    nsp = np.int64(0)  # not the literal 0: numba would compile every level kernel once more for it
    n_g = lv.ptr.shape[0] - 1
    level_rows = np.empty(n_g + 1, dtype=np.int64)  # the spike rows of level g: level_rows[g]:level_rows[g+1]
    for g in range(n_g):
        first = nsp
        level_rows[g] = first
        if not lv.iterate[g]:
            if lock is not None and m.lock.on[g] and src.ptr[n_e] >= m.lock.min_events * n_e:
                spk, nsp = _run_level(g, src, run.theta, b0, m, dur, spk, nsp)
            else:
                spk, nsp = _run_group(g, src, run.theta, b0, m, dur, spk, nsp)
            if g + 1 < lv.ptr.shape[0] - 1 or run.ro_idx.shape[0] > 0:  # the last level's are read by readout only
                src = _with_spikes(src, spk, first, nsp, m.fanout, dur)
            continue
        # recurrent routing: iterate to the fixed point (unique, see the spec); each pass runs every neuron of
        # the group on the base events plus the events of the previous pass's spikes
        base = Sources(src.ptr.copy(), src.t.copy(), src.k.copy())
        prev = np.empty((0, 4), dtype=np.int64)
        while True:
            nsp = first
            spk, nsp = _run_group(g, src, run.theta, b0, m, dur, spk, nsp)
            same = nsp - first == prev.shape[0]
            if same:
                for s in range(nsp - first):
                    for c in range(4):
                        if spk[first + s, c] != prev[s, c]:
                            same = False
                            break
                    if not same:
                        break
            if same:
                break
            prev = spk[first:nsp].copy()
            src = _with_spikes(base, spk, first, nsp, m.fanout, dur)
    level_rows[n_g] = nsp
    # record (first spike per neuron, or all), sorted by (tick, neuron id) inside each entry, and count
    out_t, out_n, out_cnt, stats = run.out_t, run.out_n, run.out_cnt, run.stats
    record_first = run.record_first
    cap = out_t.shape[1]
    rec = np.zeros(n_e + 1, dtype=np.int64)
    f_ptr, f_lag, f_syn = m.fanout.ptr, m.fanout.lag, m.fanout.synapses
    for s in range(nsp):
        b = b0 + spk[s, 0]
        stats[b, 0] += 1
        i = spk[s, 2]
        for f in range(f_ptr[i], f_ptr[i + 1]):
            if spk[s, 1] + f_lag[f] < dur:
                stats[b, 1] += f_syn[f]
        if not (record_first and spk[s, 3] > 0):
            rec[spk[s, 0] + 1] += 1
    for e in range(n_e):
        rec[e + 1] += rec[e]
    keys = np.empty(max(rec[n_e], 1), dtype=np.int64)
    fill = rec[:n_e].copy()
    # an entry's keys come level after level, each level's almost in time order: runs[e, g] is where level g's start
    # among entry e's keys
    runs = np.empty((n_e, n_g + 1), dtype=np.int64)
    most = 1
    for e in range(n_e):
        most = max(most, rec[e + 1] - rec[e])
    for g in range(n_g):
        for e in range(n_e):
            runs[e, g] = fill[e] - rec[e]
        for s in range(level_rows[g], level_rows[g + 1]):
            if not (record_first and spk[s, 3] > 0):
                e = spk[s, 0]
                keys[fill[e]] = spk[s, 1] * 1024 + m.fanout.neuron_id[spk[s, 2]]
                fill[e] += 1
    for e in range(n_e):
        runs[e, n_g] = fill[e] - rec[e]
    tmp = np.empty(most, dtype=np.int64)
    for e in range(n_e):
        b = b0 + e
        c0 = rec[e]
        c = rec[e + 1] - c0
        seg = keys[c0 : c0 + c]
        sort_runs(seg, runs[e], tmp)
        out_cnt[b] = c
        for q in range(min(c, cap)):
            out_t[b, q] = seg[q] >> 10
            out_n[b, q] = seg[q] & 1023
    for r in range(run.ro_idx.shape[0]):
        if run.ro_idx[r] < 0:
            continue
        one = run.ro_idx[r : r + 1]
        for e in range(n_e):
            _neurons(one, e, src, run.theta[b0 + e], m.tables, m.neurons, m.wiring, dur, spk, nsp, run.mem[b0 + e, r],
                     run.period)


@njit(cache=True, nogil=True)
def _run_batch(chunk_ptr, entries, run, tab, par, wiring, fanout, levels, lock):  # pragma: no cover - compiled
    """Chunk ``c`` = ``entries[chunk_ptr[c]:chunk_ptr[c+1]]`` of :class:`Run` ``run`` on the :class:`Model` of the
    other arguments, chunk after chunk, without the GIL (:func:`run_engine` runs disjoint ranges of chunks on
    several threads). The structures come as :func:`plain` tuples, the model's one by one: numba types a plain
    tuple of arrays in C, a namedtuple in Python (~3 us more per call, on the 0.15 ms of a one-sample run)."""
    for c in range(chunk_ptr.shape[0] - 1):
        _run_chunk(entries[chunk_ptr[c] : chunk_ptr[c + 1]], run, tab, par, wiring, fanout, levels, lock)


# ---- host side ----------------------------------------------------------------------------------------------

#: batch entries per work item: a thread runs a chunk neuron by neuron, so each neuron's tables stay in cache
CHUNK_ENTRIES = 32
#: an acyclic level runs in lockstep (:func:`_run_level`) when it has at least this many neurons (MNIST16's
#: 10 outputs over ~250 hidden spikes gain; yin-yang's 3 do not) ...
LOCKSTEP_MIN_NEURONS = 8
#: ... and its chunk at least this many source events per entry (yin-yang's 5 inputs per entry are not worth a
#: lockstep pass; MNIST16's ~80 are, see docs/device-spec.md section 9)
LOCKSTEP_MIN_EVENTS = 32


@dataclass(frozen=True, eq=False)
class EngineModel:
    """A :class:`DeviceModel` compiled into the engine's dense arrays (built once per configuration).

    A *delay line* is what the engine treats as one event source: the routes of one source (input channel or
    neuron) with one delay, on rows that are not OFF (without delays, every source has at most one line, of delay
    0). Lines are keyed ``source id * DELAY_KEYS + delay code`` (source id: channel, or 1024 + neuron) and sorted
    by that key; the lines whose events reach an active neuron are the compact sources of the kernels."""

    model: DeviceModel
    active: np.ndarray  # (A,) neuron ids of active logical neurons; engine index i <-> active[i]
    index_of: np.ndarray  # (512,) engine index of each logical neuron id, -1 if inactive
    line_key: np.ndarray  # (V,) sorted keys of the delay lines
    line_ptr: np.ndarray  # (1537,) the lines of source id s are line_ptr[s]:line_ptr[s+1]
    line_src: np.ndarray  # (V,) compact source index of each line, -1 if it reaches no active neuron
    line_delay: np.ndarray  # (V,) the line's delay in ticks
    line_count: np.ndarray  # (V,) synapses an event of each line activates
    fan_line: np.ndarray  # (F,) the line of each :class:`Fanout` entry
    input_delays: bool  # some input channel has a line with a delay (inputs are then expanded per line)
    tables: Tables  # int64, full length (a run uses int32 copies cut to its duration: :func:`_run_tables`)
    neurons: Neurons
    wiring: Wiring
    fanout: Fanout
    levels: Levels
    acyclic: bool
    #: per step-table cut (a run's duration): the cut tables and the lockstep tables, built on first use; they do
    #: not depend on the weights or delays, so :func:`update_weights` and :func:`rewire` share them
    run_tables: dict = field(default_factory=dict, repr=False)
    #: per (step-table cut, lockstep choice): the kernels' :class:`Model` as plain tuples (:func:`_kernel_model`);
    #: it holds the weights, so :func:`update_weights` starts a new one
    kernel_models: dict = field(default_factory=dict, repr=False)
    #: what each synapse feeds (:class:`SynapseHits`, built on the first :func:`update_weights`); it depends on the
    #: routing, row modes, labels and delay lines but not on the weights, so :func:`update_weights` shares it
    synapse_hits: dict = field(default_factory=dict, repr=False)

    @property
    def src_index(self) -> np.ndarray:
        """(1536,) compact source of each source id's delay-0 line (-1: none, or it reaches no active neuron)."""
        out = np.full(N_SOURCES, -1, dtype=np.int64)
        zero = self.line_key % DELAY_KEYS == 0
        out[self.line_key[zero] // DELAY_KEYS] = self.line_src[zero]
        return out


#: delay codes per source id in a delay line's key (``source id * DELAY_KEYS + code``)
DELAY_KEYS = chip.DELAY_CODE_MAX + 1


def _routes_on(cfg: ChipConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The routes of ``cfg`` on rows that are not OFF, in table order: their half, row, row mode,
    delay-line key (``source id * DELAY_KEYS + delay code``) and address, int64 each."""
    r = cfg.routing.routes
    half = r["half"].astype(np.int64)
    row = r["row"].astype(np.int64)
    mode = np.asarray(cfg.row_modes, dtype=np.int64)[half, row]
    on = mode != RowMode.OFF
    sid = r["source"].astype(np.int64)[on] + np.where(r["kind"][on] == SourceKind.NEURON, chip.N_INPUT_CHANNELS, 0)
    return half[on], row[on], mode[on], sid * DELAY_KEYS + r["delay"].astype(np.int64)[on], \
        r["address"].astype(np.int64)[on]


def _routing_matrices(
    model: DeviceModel, index_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The delay lines in use (sorted keys ``source id * DELAY_KEYS + delay code`` of the routes on rows that are
    not OFF), the (V, A) summed exc/inh jumps per line and active neuron, (V,) activated synapses per event of a
    line, and the (V, A) bool wiring: the line reaches the neuron through a routed row and a synapse with a
    matching label, whatever its weight. The wiring, not the weights, defines the engine's structure (used
    lines, neuron graph) and which neurons an event anchors (spec 1.1, section 5.1: a weight of 0 delivers a jump
    of 0 and still anchors), so a weight-only change never changes either. All routes at once: a (routes x 256
    columns) hit mask, then one histogram per sign over the hits (integer sums, so the order does not matter)."""
    cfg = model.config
    a = int((index_of >= 0).sum())
    half, row, mode, line_of_route, addr = _routes_on(cfg)
    key, line = np.unique(line_of_route, return_inverse=True)
    line = line.reshape(-1)
    v = len(key)
    we = np.zeros((v, a), dtype=np.int64)
    wi = np.zeros((v, a), dtype=np.int64)
    count = np.zeros(v, dtype=np.int64)
    linked = np.zeros((v, a), dtype=bool)
    if v == 0:
        return key.astype(np.int64), we, wi, count, linked
    wired = cfg.synapses.labels[half, row] == addr[:, None]
    hit = wired & (cfg.synapses.weights[half, row] > 0)
    np.add.at(count, line, hit.sum(axis=1))
    target_of = index_of[model.logical].reshape(chip.N_HALVES, chip.COLUMNS_PER_HALF)
    wr, wc = np.nonzero(wired)
    wt = target_of[half[wr], wc]
    linked[line[wr[wt >= 0]], wt[wt >= 0]] = True
    rr, cc = np.nonzero(hit)
    tgt = target_of[half[rr], cc]
    ok = tgt >= 0
    rr, cc, tgt = rr[ok], cc[ok], tgt[ok]
    jump = model.jump[half[rr], row[rr], cc]
    for target, m in ((we, RowMode.EXCITATORY), (wi, RowMode.INHIBITORY)):
        sel = mode[rr] == m
        # float64 sums are exact here: each of the <= 512 terms is < 2^27, every sum < 2^53
        sums = np.bincount(line[rr[sel]] * a + tgt[sel], weights=jump[sel], minlength=v * a)
        target[:] = sums.reshape(v, a).astype(np.int64)
    return key.astype(np.int64), we, wi, count, linked


def _level_jumps(w: np.ndarray, grp_nrn: np.ndarray) -> np.ndarray:
    """The routing matrix ``w`` (neuron x source, int64) in level order and transposed (source x neuron) for
    :func:`_level_entry`, as int32 clipped at ``I_MAX``: half the bytes to stream per event. Exact: jumps are
    non-negative and a current is clamped to ``I_MAX`` after adding the summed jumps, so a sum with an entry
    clipped at ``I_MAX`` clamps to the same value."""
    return np.ascontiguousarray(np.minimum(w[grp_nrn].T, I_MAX), dtype=np.int32)


def _groups(adj: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Topological levels of the active-neuron graph (adj[i, j]: i's spikes reach j), or one iterated group."""
    a = adj.shape[0]
    indeg = adj.sum(axis=0).astype(np.int64)
    level_of = np.full(a, -1, dtype=np.int64)
    frontier = np.flatnonzero(indeg == 0)
    lvl = 0
    done = 0
    while len(frontier):
        level_of[frontier] = lvl
        done += len(frontier)
        indeg = indeg - adj[frontier].sum(axis=0)
        indeg[level_of >= 0] = -1
        frontier = np.flatnonzero(indeg == 0)
        lvl += 1
    if done < a:
        return np.array([0, a], dtype=np.int64), np.arange(a, dtype=np.int64), np.array([True]), False
    order = np.argsort(level_of, kind="stable").astype(np.int64)
    counts = np.bincount(level_of, minlength=lvl)
    ptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    return ptr, order, np.zeros(lvl, dtype=np.bool_), True


def _tables(model: DeviceModel, active: np.ndarray) -> tuple[Tables, np.ndarray]:
    """The propagator tables, shared by neurons with equal time constants, and each engine neuron's table."""
    keys = [tuple(int(x) for x in model.tau_q[:, n]) for n in active]
    uniq = sorted(set(keys))
    table_of = {k: t for t, k in enumerate(uniq)}
    tid = np.array([table_of[k] for k in keys], dtype=np.int64)
    props = [model.props[int(active[keys.index(k)])] for k in uniq]
    jmax = max([p.length for p in props], default=1)
    tick = np.zeros((max(len(props), 1), 5, P), dtype=np.int64)
    step = np.zeros((max(len(props), 1), 6, jmax), dtype=np.int64)
    jlen = np.ones(max(len(props), 1), dtype=np.int64)
    kb = np.zeros(max(len(props), 1), dtype=np.int64)
    for t, pr in enumerate(props):
        tick[t] = pr.tick
        step[t, :, : pr.length] = pr.step
        jlen[t] = pr.length
        kb[t] = int(pr.tick[1].max()) + int(pr.step[1].max())
    return Tables(tick=tick, step=step, jlen=jlen, kb=kb), tid


def _structure(model: DeviceModel, active: np.ndarray, index_of: np.ndarray) -> dict[str, Any]:
    """Everything of an :class:`EngineModel` that follows the routing: the delay lines, the wiring, each neuron's
    fanout, the processing order and the level-ordered routing matrices (as keyword arguments)."""
    a = len(active)
    line_key, we_full, wi_full, count, linked = _routing_matrices(model, index_of)
    used = np.flatnonzero(linked.any(axis=1))
    line_src = np.full(len(line_key), -1, dtype=np.int64)
    line_src[used] = np.arange(len(used))
    line_ptr = np.searchsorted(line_key // DELAY_KEYS, np.arange(N_SOURCES + 1)).astype(np.int64)
    line_delay = (line_key % DELAY_KEYS) * chip.DELAY_STEP_TICKS
    # a neuron's fanout: its lines, in key order (delay 0 first)
    lo = line_ptr[chip.N_INPUT_CHANNELS + active]
    n = line_ptr[chip.N_INPUT_CHANNELS + active + 1] - lo
    f_ptr = np.r_[0, np.cumsum(n)].astype(np.int64)
    fan_line = (np.repeat(lo - f_ptr[:-1], n) + np.arange(f_ptr[-1])).astype(np.int64)
    # neuron i's spikes reach neuron j if one of i's lines is wired to j (delays never change this graph)
    adj = np.zeros((a, a), dtype=np.int64)
    np.add.at(adj, np.repeat(np.arange(a), n), linked[fan_line].astype(np.int64))
    grp_ptr, grp_nrn, grp_iter, acyclic = _groups(np.minimum(adj, 1))
    we = np.ascontiguousarray(we_full[used].T)
    wi = np.ascontiguousarray(wi_full[used].T)
    return {
        "line_key": line_key,
        "line_ptr": line_ptr,
        "line_src": line_src,
        "line_delay": line_delay.astype(np.int64),
        "line_count": count,
        "fan_line": fan_line,
        "input_delays": bool((line_delay[: line_ptr[chip.N_INPUT_CHANNELS]] > 0).any()),
        "wiring": Wiring(we=we, wi=wi, wired=np.ascontiguousarray(linked[used].T)),
        "fanout": Fanout(
            ptr=f_ptr,
            source=np.ascontiguousarray(line_src[fan_line], dtype=np.int64),
            lag=np.ascontiguousarray(ROUTE_DELAY_TICKS + line_delay[fan_line], dtype=np.int64),
            synapses=np.ascontiguousarray(count[fan_line], dtype=np.int64),
            neuron_id=np.ascontiguousarray(active, dtype=np.int64),
        ),
        "levels": Levels(
            ptr=grp_ptr,
            nrn=grp_nrn,
            iterate=grp_iter,
            we=_level_jumps(we, grp_nrn),
            wi=_level_jumps(wi, grp_nrn),
            wired=np.ascontiguousarray(linked[used][:, grp_nrn], dtype=np.int8),
        ),
        "acyclic": acyclic,
    }


def compile_model(model: DeviceModel) -> EngineModel:
    """Dense arrays, shared propagator tables and processing order for the engine."""
    active = model.active
    index_of = np.full(chip.N_NEURONS, -1, dtype=np.int64)
    index_of[active] = np.arange(len(active))
    tables, tid = _tables(model, active)
    return EngineModel(
        model=model,
        active=active,
        index_of=index_of,
        tables=tables,
        neurons=Neurons(
            tid=tid,
            reset=model.reset[active].astype(np.int64),
            umin=model.u_min[active].astype(np.int64),
            umax=model.u_max[active].astype(np.int64),
            refr=model.refractory[active].astype(np.int64),
            leak=model.leak[active].astype(np.int64),
        ),
        **_structure(model, active, index_of),
    )


def rewire(em: EngineModel, model: DeviceModel) -> EngineModel:
    """The engine model of ``model``, which MUST differ from ``em.model`` in synapse weights and route delays only
    (the caller checks :func:`firstspike.sim_device.model.only_weights_and_delays_differ`; ``model`` as
    :func:`firstspike.sim_device.model.with_weights` makes it): the propagator tables and neuron parameters stay,
    the delay lines, routing matrices and fanout are built anew. The processing order follows the wiring, which
    delays do not change, so the per-duration tables are shared as well. Equal to ``compile_model(model)``
    (tested)."""
    parts = _structure(model, em.active, em.index_of)
    lv, old = parts["levels"], em.levels
    same_order = np.array_equal(lv.ptr, old.ptr) and np.array_equal(lv.nrn, old.nrn)
    return replace(em, model=model, run_tables=em.run_tables if same_order else {}, kernel_models={},
                   synapse_hits={}, **parts)


class SynapseHits(NamedTuple):
    """Per synapse (flat index into the (2, 256, 256) synapse arrays), the routes its events take: entries
    ``ptr[s]:ptr[s+1]``, each the delay line it sits on, whether its row is inhibitory, the engine index of its
    target (-1: inactive) and the line's compact source. Routes on OFF rows carry nothing and are left out."""

    ptr: np.ndarray  # (2 * 256 * 256 + 1,) int64
    line: np.ndarray  # (H,) int64
    inhibitory: np.ndarray  # (H,) bool
    target: np.ndarray  # (H,) int64
    column: np.ndarray  # (H,) int64, the compact source (valid where target >= 0)
    level_pos: np.ndarray  # (A,) position of each engine neuron in the level order (the level matrices' columns)


def _synapse_hits(em: EngineModel) -> SynapseHits:
    """:class:`SynapseHits` of ``em`` (cached in ``em.synapse_hits``): the route lookup :func:`update_weights`
    needs, done once for every synapse instead of once per changed synapse and step."""
    hits = em.synapse_hits.get("hits")
    if hits is not None:
        return hits
    cfg = em.model.config
    rh, rr, rmode, line_of_route, addr = _routes_on(cfg)
    # routes keyed by (half, row, address), sorted for a range lookup per synapse (half, row, label)
    rkey = (rh * chip.ROWS_PER_HALF + rr) * chip.N_LABELS + addr
    rline = np.searchsorted(em.line_key, line_of_route)
    order = np.argsort(rkey, kind="stable")
    rkey, rline, rmode = rkey[order], rline[order], rmode[order]
    h, r, c = np.unravel_index(np.arange(cfg.synapses.labels.size), cfg.synapses.labels.shape)
    skey = (h * chip.ROWS_PER_HALF + r) * chip.N_LABELS + cfg.synapses.labels.reshape(-1).astype(np.int64)
    lo = np.searchsorted(rkey, skey, side="left")
    n = np.searchsorted(rkey, skey, side="right") - lo
    syn = np.repeat(np.arange(len(skey)), n)
    route = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
    line = rline[route]
    target = em.index_of[em.model.logical.reshape(chip.N_HALVES, chip.COLUMNS_PER_HALF)[h, c]][syn]
    level_pos = np.empty_like(em.levels.nrn)
    level_pos[em.levels.nrn] = np.arange(len(em.levels.nrn))
    hits = SynapseHits(
        ptr=np.concatenate([[0], np.cumsum(n)]).astype(np.int64),
        line=np.ascontiguousarray(line, dtype=np.int64),
        inhibitory=np.ascontiguousarray(rmode[route] == RowMode.INHIBITORY),
        target=np.ascontiguousarray(target, dtype=np.int64),
        column=np.ascontiguousarray(em.line_src[line], dtype=np.int64),
        level_pos=level_pos,
    )
    em.synapse_hits["hits"] = hits
    return hits


@njit(cache=True, nogil=True)
def _patch_jumps(changed, dj, dc, ptr, line, inhibitory, target, column, level_pos, count, we, wi, lwe, lwi
                 ):  # pragma: no cover - compiled
    """Add each changed synapse's jump change ``dj`` to the summed jumps of every (line, active target) it sits on
    (and the clipped level-ordered copy), and its activated-synapse change ``dc`` to each of its lines' counts."""
    for k in range(changed.shape[0]):
        s = changed[k]
        for p in range(ptr[s], ptr[s + 1]):
            count[line[p]] += dc[k]
            t = target[p]
            if t < 0:
                continue
            col = column[p]
            if inhibitory[p]:
                wi[t, col] += dj[k]
                lwi[col, level_pos[t]] = np.int32(min(wi[t, col], I_MAX))
            else:
                we[t, col] += dj[k]
                lwe[col, level_pos[t]] = np.int32(min(we[t, col], I_MAX))


def update_weights(em: EngineModel, model: DeviceModel, changed: np.ndarray | None = None, *,
                   in_place: bool = False) -> EngineModel:
    """The engine model of ``model``, which MUST differ from ``em.model`` in synapse weights only (the caller checks
    :func:`firstspike.sim_device.model.only_weights_differ`; ``model.jump`` as
    :func:`firstspike.sim_device.model.with_weights` makes it). ``changed``: the flat indices of the synapses whose
    weight changed, if the caller knows them (unique; an unchanged one among them changes nothing), else found here.
    ``in_place``: patch ``em``'s routing matrices and counts themselves instead of copies (3 MB for MNIST16, most
    of a warm in-the-loop step's patch), for a caller that owns ``em`` and drops it for the result (a backend
    swapping its model); ``em`` is then stale. Everything that can fail happens before the first write.
    The wiring, and so the structure (delay lines, used sources, neuron graph, propagator tables, processing order),
    stays; instead of rebuilding the routing matrices (:func:`_routing_matrices`), every changed synapse adds its
    jump change to the summed jumps of each (routed line, active target) it sits on and its hit change to the
    line's activated-synapse count: integer sums, so the arrays equal those of ``compile_model(model)``
    (tested)."""
    old = em.model
    w_old, w_new = old.config.synapses.weights.reshape(-1), model.config.synapses.weights.reshape(-1)
    if changed is None:
        changed = np.flatnonzero(w_old != w_new)
    if not len(changed):
        return replace(em, model=model)
    changed = np.ascontiguousarray(changed, dtype=np.int64)
    if changed.min() < 0 or changed.max() >= w_new.size:  # the compiled patch does not check bounds
        raise IndexError(f"changed synapse indices must be in [0, {w_new.size}); got {changed.min()}..{changed.max()}")
    dj = model.jump.reshape(-1)[changed] - old.jump.reshape(-1)[changed]
    dc = (w_new[changed] > 0).astype(np.int64) - (w_old[changed] > 0)
    hits = _synapse_hits(em)
    # the level-ordered copies (_level_jumps) change only where a summed jump did: patched, not rebuilt
    count, we, wi, lwe, lwi = em.line_count, em.wiring.we, em.wiring.wi, em.levels.we, em.levels.wi
    if not in_place:
        count, we, wi, lwe, lwi = count.copy(), we.copy(), wi.copy(), lwe.copy(), lwi.copy()
    _patch_jumps(changed, dj, dc, hits.ptr, hits.line, hits.inhibitory, hits.target, hits.column, hits.level_pos,
                 count, we, wi, lwe, lwi)
    return replace(
        em,
        model=model,
        line_count=count,
        wiring=em.wiring._replace(we=we, wi=wi),
        fanout=em.fanout._replace(synapses=np.ascontiguousarray(count[em.fan_line], dtype=np.int64)),
        levels=em.levels._replace(we=lwe, wi=lwi),
        kernel_models={},
    )


def input_lines(em: EngineModel, batch: np.ndarray, time: np.ndarray, channel: np.ndarray, duration: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Input events (sorted by batch, then time) as the arrivals of their delay lines: (batch, tick, compact
    source) sorted by (batch, tick), for the lines that reach an active neuron and arrive before ``duration``, and
    the synapses all arriving events activate (the inputs' share of ``stats["synaptic_events"]``)."""
    if not len(channel) or not len(em.line_src):  # no events, or no lines (a configuration without routes)
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, 0
    lo = em.line_ptr[channel]
    n = em.line_ptr[channel + 1] - lo
    if not em.input_delays:  # at most one line per channel, of delay 0: the events as they are
        has = n > 0
        k = np.where(has, em.line_src[np.where(has, lo, 0)], -1)
        syn = int(em.line_count[lo[has]].sum())
        keep = k >= 0
        return batch[keep], time[keep], k[keep], syn
    ev = np.repeat(np.arange(len(channel)), n)
    line = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
    t = time[ev] + em.line_delay[line]
    arrives = t < duration
    syn = int(em.line_count[line[arrives]].sum())
    keep = arrives & (em.line_src[line] >= 0)
    b, t, k = batch[ev[keep]], t[keep], em.line_src[line[keep]]
    order = np.argsort((b << 32) | t, kind="stable")  # batch < 2^16, ticks < 2^25
    return b[order], t[order], k[order], syn


def _step_cut(em: EngineModel, duration: int) -> int:
    """The step-table columns a run of ``duration`` ticks can reach (j <= (duration + P) / P + 1)."""
    return min(em.tables.step.shape[2], duration // P + 3)


def _run_tables(em: EngineModel, duration: int) -> tuple[Tables, np.ndarray, int]:
    """The tick table and the part of the step tables a run of this duration can reach (j <= (duration + P) / P +
    1) as int32 (every Q30 coefficient is in ``[0, 2^30]``; products stay int64), and the lockstep tables of them
    (coefficients, step columns); cached on the model (one entry per cut, so repeated runs pay nothing). int32
    halves what the scalar search reads: on the realistic chip every neuron has its own tables, 1.7 MB as int64
    for MNIST16 (0.96x CPU time there, 1.01x on the ideal chip, paired)."""
    tab = em.tables
    jcap = _step_cut(em, duration)
    got = em.run_tables.get(jcap)
    if got is None:
        step = np.ascontiguousarray(tab.step[:, :, :jcap])
        jlen = np.minimum(tab.jlen, jcap)
        ct, jc = _level_tables(tab.tick, step, jlen, em.neurons.tid[em.levels.nrn])
        for table in (tab.tick, step):
            assert table.min(initial=0) >= 0 and table.max(initial=0) <= 1 << B30
        cut = Tables(tick=tab.tick.astype(np.int32), step=step.astype(np.int32), jlen=jlen, kb=tab.kb)
        got = em.run_tables[jcap] = (cut, ct, jc)
    return got


def _decay_max(ct: np.ndarray, jc: int, ptr: np.ndarray) -> np.ndarray:
    """Per level (engine neurons ``ptr[g]:ptr[g+1]``, the columns of the level table ``ct``), the largest ``I_e <-
    I_e`` coefficient of its neurons at each tick ``r < P`` and each step ``j < jc`` (rows ``5 r + 3`` and ``5 P + 6 j
    + 3`` of ``ct``; zero past every neuron's table): (G, P + jc) int64, for :func:`_decay_bound`."""
    rows = np.r_[5 * np.arange(P) + 3, 5 * P + 6 * np.arange(jc) + 3]
    out = np.zeros((len(ptr) - 1, len(rows)), dtype=np.int64)
    for g in range(len(ptr) - 1):
        if ptr[g + 1] > ptr[g]:
            out[g] = ct[rows, ptr[g] : ptr[g + 1]].max(axis=1)
    return out


def _kernel_model(em: EngineModel, duration: int, lockstep: bool | None) -> tuple:
    """The :class:`Model` the kernels read for a run of ``duration`` ticks (``lockstep`` as :func:`run_engine`
    takes it), as :func:`plain` tuples; cached on the model (building it takes longer than the dispatch of a
    one-sample run). See :func:`_without_lockstep` for the form without the lockstep tables."""
    key = (_step_cut(em, duration), lockstep)
    got = em.kernel_models.get(key)
    if got is None:
        tables, ct, jc = _run_tables(em, duration)
        ptr = em.levels.ptr
        if lockstep is None:  # levels wide enough, with enough events per entry
            on, min_events = np.diff(ptr) >= LOCKSTEP_MIN_NEURONS, LOCKSTEP_MIN_EVENTS
        else:
            on, min_events = np.full(len(ptr) - 1, bool(lockstep)), 0
        lock = Lockstep(on, min_events, ct, jc, _decay_max(ct, jc, ptr))
        got = em.kernel_models[key] = plain(Model(tables, em.neurons, em.wiring, em.fanout, em.levels, lock))
    return got


def _without_lockstep(m: tuple, in_ptr: np.ndarray, chunk_ptr: np.ndarray, entries: np.ndarray) -> tuple:
    """The kernel model ``m`` with ``None`` for its lockstep part if no level of this call can run in lockstep:
    :func:`_run_chunk` then has no lockstep branch at all (numba prunes it by the argument's type), so a process
    that never needs the lockstep kernels never compiles them (yin-yang: about half of a cold start). Exact: the
    kernel takes the lockstep path for level ``g`` of a chunk only if ``lock.on[g]`` and the chunk's events for
    that level reach ``lock.min_events`` per entry; the first level's events are the inputs (``in_ptr``: the
    entries' input ranges, chunk ``c`` = ``entries[chunk_ptr[c]:chunk_ptr[c+1]]``), a later level's are known only
    in the kernel, so a later level that may run in lockstep keeps the tables."""
    need = _lockstep_need(m)
    if need <= 0:
        return m if need else (*m[:5], None)
    if len(chunk_ptr) == 2:  # one chunk (a small batch): scalars, no array operations
        b0, n_e = int(entries[chunk_ptr[0]]), int(chunk_ptr[1] - chunk_ptr[0])
        return m if int(in_ptr[b0 + n_e] - in_ptr[b0]) >= need * n_e else (*m[:5], None)
    sizes = np.diff(chunk_ptr)
    starts = entries[chunk_ptr[:-1]]
    events = in_ptr[starts + sizes] - in_ptr[starts]
    return m if bool((events >= need * sizes).any()) else (*m[:5], None)


#: per kernel model (by identity: they are cached on the engine model): see :func:`_lockstep_need`
_NEED: dict[int, tuple[tuple, int]] = {}


def _lockstep_need(m: tuple) -> int:
    """0: no level of kernel model ``m`` can run in lockstep; -1: the lockstep tables are always needed (a later
    level may run in lockstep, or the first one does whatever its events); else the input events per entry from
    which the first level runs in lockstep."""
    got = _NEED.get(id(m))
    if got is not None and got[0] is m:
        return got[1]
    on, min_events = m[5][0], m[5][1]
    need = 0 if not on.any() else (-1 if on[1:].any() or min_events <= 0 else int(min_events))
    if len(_NEED) > 256:
        _NEED.clear()
    _NEED[id(m)] = (m, need)
    return need


def _call_threads(chunk_ptr: np.ndarray, entries: np.ndarray, args: tuple, threads: int) -> None:
    """:func:`_run_batch` over the chunks of ``chunk_ptr`` on up to ``threads`` threads (the caller's and pool
    threads; the caller passes :func:`_thread_count`), each taking the next chunk not yet taken: a thread the OS
    leaves waiting on a busy machine delays only the chunk it holds (a static split waits for its whole share).
    Chunks write disjoint entries, so the order does not change any result."""
    n_chunks = len(chunk_ptr) - 1
    threads = min(threads, n_chunks) if n_chunks > 1 else 1
    if threads <= 1:
        _run_batch(chunk_ptr, entries, *args)
        return
    run_items(lambda c: _run_batch(chunk_ptr[c : c + 2], entries, *args), n_chunks, threads)


@dataclass(frozen=True, eq=False)
class EngineOutput:
    """Raw result of a batch: the recorded spikes as columns (per entry, sorted by tick and neuron id), as
    :meth:`firstspike.hal.events.SpikeEvents.from_columns` takes them, and per-entry counters."""

    counts: np.ndarray  # (B,) uint32 recorded spikes per entry
    time: np.ndarray  # uint32 ticks, entry after entry
    neuron: np.ndarray  # uint16 neuron ids
    spikes: np.ndarray  # (B,) spikes emitted per entry (recorded or not)
    synaptic_from_neurons: np.ndarray  # (B,) synapse activations caused by neuron spikes
    synaptic_from_inputs: int  # synapse activations caused by input events (all entries)
    membrane: np.ndarray | None  # (B, R, S) int32


@njit(cache=True)
def _compact_rows(out_t, out_n, counts, time, neuron):  # pragma: no cover - compiled
    """The first ``counts[b]`` entries of each row ``b`` of ``out_t`` / ``out_n``, row after row, into the columns
    ``time`` and ``neuron`` (allocated by the caller: numpy owns them, so ``SpikeEvents`` keeps them without a
    copy). Rows are entries and each row is sorted, so the columns are sorted by (entry, time, neuron). (A boolean
    mask over the rows took 5 ms for 1000 MNIST16 entries; int64 columns with an entry column were 6 MB of fresh
    memory per such batch, these 1.5 MB.)"""
    k = 0
    for b in range(out_t.shape[0]):
        for q in range(counts[b]):
            time[k] = out_t[b, q]
            neuron[k] = out_n[b, q]
            k += 1


def run_engine(
    em: EngineModel,
    batch_size: int,
    in_batch: np.ndarray,
    in_time: np.ndarray,
    in_channel: np.ndarray,
    theta_be: np.ndarray,
    duration: int,
    record_first: bool,
    readout: tuple[int, ...] = (),
    readout_period: int = 1,
    lockstep: bool | None = None,
) -> EngineOutput:
    """Run ``batch_size`` entries. Inputs are sorted by (batch, time) (ticks at which they enter their routes; each
    delay line delivers them its delay later, :func:`input_lines`); ``theta_be`` is (B, A) thresholds.

    ``lockstep`` picks how acyclic levels run (same results either way): ``None`` lockstep for levels of at
    least :data:`LOCKSTEP_MIN_NEURONS` neurons when a chunk has at least :data:`LOCKSTEP_MIN_EVENTS` events per
    entry, ``True`` always, ``False`` never (neuron by neuron)."""
    b_in, t_in, k_in, syn_inputs = input_lines(em, in_batch, in_time, in_channel, duration)
    in_t = np.ascontiguousarray(t_in, dtype=np.int64)
    in_k = np.ascontiguousarray(k_in, dtype=np.int64)
    in_ptr = np.searchsorted(b_in, np.arange(batch_size + 1)).astype(np.int64)
    a = len(em.active)
    ro_idx = np.array([em.index_of[em.model.logical[p]] for p in readout], dtype=np.int64)
    n_samples = (duration - 1) // readout_period + 1 if readout else 0
    mem = np.zeros((batch_size, len(readout), n_samples), dtype=np.int32)
    cap = max(4, a) if record_first else max(8, 2 * a)
    out_cnt = np.zeros(batch_size, dtype=np.int64)
    stats = np.zeros((batch_size, 2), dtype=np.int64)
    theta_be = np.ascontiguousarray(theta_be, dtype=np.int64)
    m = _kernel_model(em, duration, lockstep)
    # row b is read only up to out_cnt[b]; ticks < 2^24 and neuron ids < 2^10 (hal limits) fit the column dtypes
    out_t = np.empty((batch_size, cap), dtype=np.uint32)
    out_n = np.empty((batch_size, cap), dtype=np.uint16)
    run = Run(in_ptr, in_t, in_k, theta_be, int(duration), bool(record_first), ro_idx, int(readout_period), out_t,
              out_n, out_cnt, stats, mem)

    # numba.set_num_threads and NUMBA_NUM_THREADS apply; read once, for the chunking and the dispatch alike
    threads = _thread_count()

    def call(chunk_ptr: np.ndarray, entries: np.ndarray, run: Run) -> None:
        _call_threads(chunk_ptr, entries, (tuple(run), *_without_lockstep(m, run.in_ptr, chunk_ptr, entries)),
                      threads)

    if a and batch_size:
        entries = np.arange(batch_size, dtype=np.int64)
        # chunks of at most CHUNK_ENTRIES, as equal as possible, so that a static split gives the threads equal
        # shares (1000 entries: 32 chunks of 31 or 32, 500 entries per thread instead of 512 and 488), and as many
        # as a multiple of the threads (yin-yang's 150 entries: 6 chunks of 25, not 5 of 30 taken 3 + 2)
        n_chunks = -(-batch_size // CHUNK_ENTRIES)
        if n_chunks > 1 and threads > 1:
            n_chunks = min(batch_size, -(-n_chunks // threads) * threads)
        chunk_ptr = (np.arange(n_chunks + 1, dtype=np.int64) * batch_size) // n_chunks
        call(chunk_ptr, entries, run)
    over = np.flatnonzero(out_cnt > cap)
    if len(over):  # entries that recorded more than the first guess: run them again with enough room
        extra = int(out_cnt.max()) - cap
        out_t = np.concatenate([out_t, np.zeros((batch_size, extra), dtype=out_t.dtype)], axis=1)
        out_n = np.concatenate([out_n, np.zeros((batch_size, extra), dtype=out_n.dtype)], axis=1)
        cap = out_t.shape[1]
        stats[over] = 0
        call(np.arange(len(over) + 1, dtype=np.int64), over.astype(np.int64), run._replace(out_t=out_t, out_n=out_n))
    counts = np.minimum(out_cnt, cap).astype(np.uint32)
    total = int(counts.sum(dtype=np.int64))
    time, neuron = np.empty(total, dtype=np.uint32), np.empty(total, dtype=np.uint16)
    _compact_rows(out_t, out_n, counts, time, neuron)
    for r, p in enumerate(readout):
        if ro_idx[r] < 0:
            n = int(em.model.logical[p])
            mem[:, r, :] = min(max(int(em.model.leak[n]) >> V_FRAC_BITS, 0), V_MAX_LSB)
    return EngineOutput(
        counts=counts,
        time=time,
        neuron=neuron,
        spikes=stats[:, 0].copy(),
        synaptic_from_neurons=stats[:, 1].copy(),
        synaptic_from_inputs=syn_inputs,
        membrane=mem if readout else None,
    )
