"""Agreement with the reference device (default the ideal simulator) on the reference networks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from firstspike.hal.backend import Backend
from firstspike.runtime.conformance.harness import Profile, run_case
from firstspike.runtime.conformance.networks import reference_cases
from firstspike.runtime.conformance.tolerance import compare, describe_difference

CASES = {c.name: c for c in reference_cases()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_agrees_with_reference(
    device: Backend, semantic: Profile, request: pytest.FixtureRequest, name: str, measure: Callable[[str, Any], None]
) -> None:
    reference: Backend = request.getfixturevalue("reference")  # after the mock skip: its reason comes first
    case = CASES[name]
    ref = run_case(reference, case)
    got = run_case(device, case)
    c = compare(got, ref, case.neurons)
    measure(f"agreement[{name}]", {**c.as_dict(), "exact": got == ref})
    assert c.fired_b >= c.pairs // 4, f"{name}: the reference fired only {c.fired_b} of {c.pairs}: a weak test"
    want = semantic.claims["agreement"]
    if want == "exact":
        assert got == ref, f"{name}: events differ from the reference (claim: exact); {describe_difference(got, ref)}"
        return
    assert c.agreement >= want, f"{name}: fired/silent agreement {c.agreement:.3f} < claimed {want} ({c})"
    limit = semantic.claims["mean_abs_dt_ticks"]
    assert c.mean_abs_dt <= limit, f"{name}: mean |dt| {c.mean_abs_dt:.2f} ticks > claimed {limit} ({c})"
