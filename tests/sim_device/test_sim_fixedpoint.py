"""The integer propagators (spec sections 2-3) against the real-valued dynamics."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.sim_device.fixedpoint import cross_q, exp_neg_q, phi_q, propagate, propagator
from firstspike.sim_device.spec import COEF_ONE, UPDATE_PERIOD_TICKS


@given(num=st.integers(0, 512), den=st.integers(256, 10**6))
def test_exp_neg_is_correctly_rounded_to_q30(num: int, den: int) -> None:
    exact = math.exp(-num / den) * 2**30
    assert abs(exp_neg_q(num, den, 30) - exact) <= 0.5 + 1e-6


@given(num=st.integers(-2000, 2000), den=st.integers(10**4, 10**7))
def test_phi_matches_its_definition(num: int, den: int) -> None:
    x = num / den
    # expm1: 1 - exp(-x) in floats loses ~1e-16 / |x| to cancellation, 2e-9 at |x| = 1e-7 (a reference error the
    # tolerance below cannot absorb; hypothesis found it)
    want = 1.0 if x == 0 else -math.expm1(-x) / x
    assert abs(phi_q(num, den, 40) / 2**40 - want) < 1e-9


def test_cross_term_has_no_cancellation_at_equal_taus() -> None:
    a = cross_q(752 * 256, 752 * 256, 62) / 2**62
    assert abs(a - (1 / 752) * math.exp(-1 / 752)) < 1e-15
    b = cross_q(1504 * 256, 752 * 256, 62) / 2**62
    want = 752 / (752 - 1504) * (math.exp(-1 / 752) - math.exp(-1 / 1504))
    assert abs(b - want) < 1e-14


@settings(max_examples=25, deadline=None)
@given(
    tm=st.integers(300, 4000 * 256),
    te=st.integers(300, 4000 * 256),
    ti=st.integers(300, 4000 * 256),
    d=st.integers(0, 20000),
)
def test_propagator_matches_the_linear_system(tm: int, te: int, ti: int, d: int) -> None:
    p = propagator(tm, te, ti)
    u0, e0, i0 = 1_000_000, 30_000_000, 10_000_000
    u, e, _ = propagate(p, u0, e0, i0, d)
    tm_, te_, ti_ = tm / 256, te / 256, ti / 256

    def kern(ts: float) -> float:
        if abs(ts - tm_) < 1e-9:
            return d / tm_ * math.exp(-d / tm_)
        return ts / (ts - tm_) * (math.exp(-d / ts) - math.exp(-d / tm_))

    want_u = u0 * math.exp(-d / tm_) + e0 * kern(te_) - i0 * kern(ti_)
    assert abs(e - e0 * math.exp(-d / te_)) <= 2 + 2e-6 * e0
    assert abs(u - want_u) <= 4 + 2e-6 * (u0 + e0 + i0)


def test_tables_are_monotone_with_a_zero_tail_and_suffix_maxima() -> None:
    p = propagator(752 * 256, 700 * 256, 800 * 256)
    assert p.tick.shape == (5, UPDATE_PERIOD_TICKS)
    assert p.tick[0, 0] == COEF_ONE and p.tick[1, 0] == 0
    assert np.all(np.diff(p.step[0]) <= 0) and np.all(np.diff(p.step[3]) <= 0)
    assert np.all(p.step[:5, -1] >= 0) and np.any(p.step[:5, -1] > 0)
    assert np.array_equal(p.step[5], np.maximum.accumulate(p.step[1][::-1])[::-1])
    assert propagate(p, 10**6, 10**7, 10**7, 64 * p.length) == (0, 0, 0)
