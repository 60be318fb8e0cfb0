"""Exact integer propagators of the neuron dynamics (spec sections 2 and 3).

Between events a neuron obeys the linear system (all quantities in membrane LSB, time in ticks)::

    tau_m du/dt = -u + I_e - I_i,     tau_e dI_e/dt = -I_e,     tau_i dI_i/dt = -I_i

whose exact solution over ``d`` ticks is a 3x3 matrix ``M(d)``. This module turns the three effective time
constants of a neuron (integers in 1/256 tick) into integer tables of ``M``:

* per-tick coefficients in Q62 from integer Taylor series (:func:`exp_neg_q`, :func:`cross_q`);
* the *tick table* ``M(r)``, r = 0 .. P-1, by an exact Q62 recurrence rounded to Q30;
* the *step table* ``M(jP)``, j = 0 .. J-1, by a Q30 floor recurrence until every entry is zero.

Everything is integer arithmetic with stated rounding, so any implementation reproduces it bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from firstspike.sim_device.spec import COEF_BITS, COEF_ONE, FINE_BITS, TAU_FRAC_BITS, UPDATE_PERIOD_TICKS

_GUARD = 64  # guard bits of the series


def exp_neg_q(num: int, den: int, bits: int) -> int:
    """``round(2^bits * exp(-num/den))`` by the spec's integer series (num >= 0, den > 0, num/den <= ~1).

    ``T_0 = 2^(bits+64)``, ``T_k = floor(T_{k-1} * num / (den * k))`` until ``T_k = 0``;
    ``S = sum (-1)^k T_k``; result ``(S + 2^63) >> 64``.
    """
    if num < 0 or den <= 0:
        raise ValueError(f"exp_neg_q needs num >= 0 and den > 0, got {num}/{den}")
    t = 1 << (bits + _GUARD)
    s = t
    k = 1
    while t:
        t = (t * num) // (den * k)
        s += -t if k & 1 else t
        k += 1
    return (s + (1 << (_GUARD - 1))) >> _GUARD


def phi_q(num: int, den: int, bits: int) -> int:
    """``round(2^bits * phi(x))`` with ``phi(x) = (1 - exp(-x)) / x = sum_k (-x)^k / (k+1)!``, x = num/den.

    ``P_0 = 2^(bits+64)``, ``P_k = floor(P_{k-1} * |num| / (den * (k+1)))`` until 0; the terms alternate in
    sign when x > 0 and are all positive when x < 0; result ``(S + 2^63) >> 64``.
    """
    if den <= 0:
        raise ValueError(f"phi_q needs den > 0, got {den}")
    a = abs(num)
    p = 1 << (bits + _GUARD)
    s = p
    k = 1
    while p:
        p = (p * a) // (den * (k + 1))
        s += -p if (num > 0 and k & 1) else p
        k += 1
    return (s + (1 << (_GUARD - 1))) >> _GUARD


def cross_q(tau_m_q: int, tau_s_q: int, bits: int) -> int:
    """Membrane response after one tick to a unit current of time constant ``tau_s`` (Q``bits``).

    Exactly ``c = alpha exp(-alpha) phi(beta - alpha)`` with ``alpha = 1/tau_m``, ``beta = 1/tau_s`` (per tick),
    which equals ``tau_s/(tau_s - tau_m) (exp(-1/tau_s) - exp(-1/tau_m))`` without its cancellation. Integer
    form: ``A = floor(2^(bits+64) * 256 / tau_m_q)``, ``E = exp_neg_q(256, tau_m_q, bits+64)``,
    ``F = phi_q(256 (tau_m_q - tau_s_q), tau_m_q tau_s_q, bits+64)``,
    ``c = (((A * E) >> (bits+64)) * F + 2^(bits+127)) >> (bits+128)``.
    """
    one = 1 << TAU_FRAC_BITS
    g = bits + _GUARD
    a = ((1 << g) * one) // tau_m_q
    e = exp_neg_q(one, tau_m_q, g)
    f = phi_q(one * (tau_m_q - tau_s_q), tau_m_q * tau_s_q, g)
    return (((a * e) >> g) * f + (1 << (g + _GUARD - 1))) >> (g + _GUARD)


@dataclass(frozen=True, eq=False)
class Propagator:
    """Integer tables of ``M(d)`` for one neuron (all int64, Q30).

    ``tick[k, r]`` for r = 0..P-1 and ``step[k, j]`` for j = 0..J-1, with k indexing the coefficient:
    0 ``u<-u``, 1 ``u<-I_e``, 2 ``u<-I_i``, 3 ``I_e<-I_e``, 4 ``I_i<-I_i``. ``step`` has a sixth row, the
    suffix maximum of row 1 (``max_{j' >= j} step[1, j']``), used only to skip threshold checks that cannot
    succeed. Entries for ``j >= J`` are zero.
    """

    tick: np.ndarray  # (5, P)
    step: np.ndarray  # (6, J)

    @property
    def length(self) -> int:
        return int(self.step.shape[1])


def _tick_table(tau_m_q: int, tau_e_q: int, tau_i_q: int) -> tuple[np.ndarray, tuple[int, ...]]:
    one = 1 << TAU_FRAC_BITS
    fb = FINE_BITS
    a_m = exp_neg_q(one, tau_m_q, fb)
    a_e = exp_neg_q(one, tau_e_q, fb)
    a_i = exp_neg_q(one, tau_i_q, fb)
    c_e = cross_q(tau_m_q, tau_e_q, fb)
    c_i = cross_q(tau_m_q, tau_i_q, fb)
    dm, de, di, ke, ki = 1 << fb, 1 << fb, 1 << fb, 0, 0
    p = UPDATE_PERIOD_TICKS
    out = np.zeros((5, p), dtype=np.int64)
    shift = fb - COEF_BITS
    half = 1 << (shift - 1)
    for r in range(p + 1):
        vals = (dm, ke, ki, de, di)
        if r < p:
            for k, v in enumerate(vals):
                out[k, r] = (v + half) >> shift
        else:
            per_step = tuple((v + half) >> shift for v in vals)
        # M(r+1) = M(r) M(1): the upper-right entries pick up u<-u(r) * c and I(r) decay.
        dm, ke, ki, de, di = (
            (dm * a_m) >> fb,
            (dm * c_e + ke * a_e) >> fb,
            (dm * c_i + ki * a_i) >> fb,
            (de * a_e) >> fb,
            (di * a_i) >> fb,
        )
    return out, per_step


def _step_table(per_step: tuple[int, ...]) -> np.ndarray:
    am, ce, ci, ae, ai = (int(x) for x in per_step)
    rows: list[tuple[int, int, int, int, int]] = []
    dm, ke, ki, de, di = COEF_ONE, 0, 0, COEF_ONE, COEF_ONE
    while dm or ke or ki or de or di:
        rows.append((dm, ke, ki, de, di))
        dm, ke, ki, de, di = (
            (dm * am) >> COEF_BITS,
            (dm * ce + ke * ae) >> COEF_BITS,
            (dm * ci + ki * ai) >> COEF_BITS,
            (de * ae) >> COEF_BITS,
            (di * ai) >> COEF_BITS,
        )
    tab = np.zeros((6, len(rows)), dtype=np.int64)
    tab[:5] = np.asarray(rows, dtype=np.int64).T
    tab[5] = np.maximum.accumulate(tab[1][::-1])[::-1]
    return tab


@lru_cache(maxsize=4096)
def propagator(tau_m_q: int, tau_e_q: int, tau_i_q: int) -> Propagator:
    """The integer tables for effective time constants given in 1/256 tick (each >= 256, i.e. 1 tick)."""
    for name, t in (("tau_m", tau_m_q), ("tau_e", tau_e_q), ("tau_i", tau_i_q)):
        if int(t) < (1 << TAU_FRAC_BITS):
            raise ValueError(f"{name} = {t}/256 ticks is below the minimum of 1 tick")
    tick, per_step = _tick_table(int(tau_m_q), int(tau_e_q), int(tau_i_q))
    step = _step_table(per_step)
    tick.setflags(write=False)
    step.setflags(write=False)
    return Propagator(tick, step)


def propagate(prop: Propagator, u: int, ie: int, ii: int, d: int) -> tuple[int, int, int]:
    """State after ``d >= 0`` ticks without events (spec: tick part ``d mod P`` first, then ``d div P`` steps).

    All arithmetic on Python integers; ``>>`` is floor division by a power of two.
    """
    r, j = d % UPDATE_PERIOD_TICKS, d // UPDATE_PERIOD_TICKS
    t = prop.tick
    b = COEF_BITS
    u1 = (int(t[0, r]) * u + int(t[1, r]) * ie - int(t[2, r]) * ii) >> b
    e1 = (int(t[3, r]) * ie) >> b
    i1 = (int(t[4, r]) * ii) >> b
    if j >= prop.length:
        return 0, 0, 0
    s = prop.step
    u2 = (int(s[0, j]) * u1 + int(s[1, j]) * e1 - int(s[2, j]) * i1) >> b
    return u2, (int(s[3, j]) * e1) >> b, (int(s[4, j]) * i1) >> b
