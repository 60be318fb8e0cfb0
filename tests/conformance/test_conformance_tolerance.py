"""Unit and property tests of the suite's tolerance claims parser and spike comparison."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from firstspike.hal.events import SPIKE_DTYPE, SpikeEvents
from firstspike.runtime.conformance.tolerance import DEFAULTS, ClaimError, compare, resolve_claims


def test_claims_defaults_device_and_overrides() -> None:
    assert resolve_claims({}) == DEFAULTS
    got = resolve_claims({"conformance": {"agreement": 0.9, "noise_free": True}}, ["agreement=exact", "jitter_ticks=4"])
    assert got["agreement"] == "exact" and got["noise_free"] is True and got["jitter_ticks"] == 4.0
    assert resolve_claims({}, ["noise_free=no"])["noise_free"] is False
    with pytest.raises(ClaimError, match="unknown conformance claim 'agreemnt'"):
        resolve_claims({}, ["agreemnt=exact"])
    with pytest.raises(ClaimError, match=r"agreement=1.5: allowed 'exact' or a fraction in \(0, 1\]"):
        resolve_claims({"conformance": {"agreement": 1.5}})
    with pytest.raises(ClaimError, match="expected KEY=VALUE"):
        resolve_claims({}, ["agreement"])
    with pytest.raises(ClaimError, match="must be a dict"):
        resolve_claims({"conformance": [1]})
    with pytest.raises(ClaimError, match="not a number"):
        resolve_claims({}, ["mean_abs_dt_ticks=fast"])
    with pytest.raises(ClaimError, match="finite number of ticks"):
        resolve_claims({}, ["jitter_ticks=inf"])


@given(st.text(max_size=40))
def test_claim_parser_accepts_or_names_the_problem(text: str) -> None:
    try:
        claims = resolve_claims({}, [text])
    except ClaimError as e:
        assert "claim" in str(e)
    else:
        assert set(claims) == set(DEFAULTS)


@given(st.sampled_from(["mean_abs_dt_ticks", "jitter_ticks"]), st.floats(0, 1e6, allow_nan=False))
def test_numeric_claims_round_trip(key: str, value: float) -> None:
    assert resolve_claims({}, [f"{key}={value!r}"])[key] == value


def _events(rows: list[tuple[int, int, int]], batch: int) -> SpikeEvents:
    ev = np.array(rows, dtype=SPIKE_DTYPE) if rows else np.empty(0, SPIKE_DTYPE)
    return SpikeEvents(ev, batch)


def test_compare_counts_agreement_and_time_differences() -> None:
    a = _events([(0, 10, 1), (0, 20, 2), (1, 5, 1), (1, 7, 1)], 2)
    b = _events([(0, 13, 1), (1, 5, 1), (1, 9, 3)], 2)
    c = compare(a, b, np.array([1, 2, 3]))
    # pairs: (0,1) both, (0,2) a only, (0,3) neither, (1,1) both, (1,2) neither, (1,3) b only
    assert (c.pairs, c.fired_a, c.fired_b, c.both) == (6, 3, 3, 2)
    assert c.agreement == pytest.approx(4 / 6) and c.mean_abs_dt == 1.5 and c.max_abs_dt == 3
    with pytest.raises(ValueError, match="batch sizes differ"):
        compare(a, _events([], 3), np.array([1]))


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5000), st.integers(0, 511)), max_size=40),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5000), st.integers(0, 511)), max_size=40),
)
def test_compare_is_symmetric_and_reflexive(ra: list, rb: list) -> None:
    a, b = _events(ra, 4), _events(rb, 4)
    neurons = np.arange(512)
    same = compare(a, a, neurons)
    assert same.agreement == 1.0 and same.mean_abs_dt == 0.0
    ab, ba = compare(a, b, neurons), compare(b, a, neurons)
    assert (ab.agreement, ab.both, ab.mean_abs_dt, ab.max_abs_dt) == (
        ba.agreement,
        ba.both,
        ba.mean_abs_dt,
        ba.max_abs_dt,
    )
    assert (ab.fired_a, ab.fired_b) == (ba.fired_b, ba.fired_a)
