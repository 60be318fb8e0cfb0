"""Pure-torch Lambert W (principal branch)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.runtime.ttfs.lambertw import INV_E, lambertw0, lambertw0_branch

mpmath = pytest.importorskip("mpmath")  # reference values (mpmath ships with torch's sympy dependency)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference(z: torch.Tensor) -> torch.Tensor:
    mpmath.mp.dps = 40
    return torch.tensor([float(mpmath.lambertw(mpmath.mpf(float(v))).real) for v in z], dtype=torch.float64)


def test_special_values() -> None:
    z = torch.tensor([-INV_E, 0.0, 1.0, math.e, -math.log(2) / 2, math.inf], dtype=torch.float64)
    w = lambertw0(z)
    assert w[0].item() == -1.0  # exactly at the branch point (scipy gives NaN there)
    assert w[1].item() == 0.0
    assert w[2].item() == pytest.approx(0.5671432904097838, rel=1e-15)  # omega constant
    assert w[3].item() == pytest.approx(1.0, rel=1e-15)
    assert w[4].item() == pytest.approx(-math.log(2), rel=1e-15)
    assert w[5].item() == math.inf
    assert lambertw0_branch(torch.tensor([-INV_E], dtype=torch.float64)).item() == -1.0


def test_out_of_domain_is_nan() -> None:
    z = torch.tensor([-0.5, -INV_E - 1e-12, math.nan, -math.inf], dtype=torch.float64)
    assert torch.isnan(lambertw0(z)).all()


def test_matches_mpmath_across_the_domain() -> None:
    z = torch.cat([
        -INV_E + INV_E * torch.logspace(-15, 0, 300, dtype=torch.float64),  # approach to the branch point
        torch.linspace(-0.36, 10.0, 400, dtype=torch.float64),
        torch.logspace(-300, 300, 200, dtype=torch.float64),
        -torch.logspace(-300, -0.44, 200, dtype=torch.float64),
    ])
    w = lambertw0(z)
    ref = reference(z)
    err = (w - ref).abs() / (1.0 + ref.abs())
    far = (z + INV_E) > 1e-3
    assert err[far].max() < 2e-15
    # near the branch point W is ill-conditioned (dW/dz ~ 1/sqrt(z + 1/e)); the error follows that
    assert (err[~far] < 1e-16 / (z[~far] + INV_E).clamp_min(1e-300).sqrt() + 1e-15).all()


def test_branch_variant_matches_general_on_its_domain() -> None:
    z = torch.cat([torch.linspace(-INV_E, 0.0, 5001, dtype=torch.float64),
                   -INV_E + INV_E * torch.logspace(-16, -1, 200, dtype=torch.float64)])
    torch.testing.assert_close(lambertw0_branch(z), lambertw0(z), rtol=0, atol=1e-15)
    ref = reference(z[::25])
    assert ((lambertw0_branch(z[::25]) - ref).abs() < 1e-13).all()


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=-INV_E, max_value=1e300, allow_nan=False))
def test_defining_identity(z: float) -> None:
    w = lambertw0(torch.tensor([z], dtype=torch.float64)).item()
    assert w >= -1.0
    assert math.isfinite(w)
    # w e^w = z, checked in a form that does not overflow: log form for large z
    if z > 1.0:
        assert w + math.log(w) == pytest.approx(math.log(z), rel=1e-14, abs=1e-14)
    else:
        assert w * math.exp(w) == pytest.approx(z, rel=1e-13, abs=2e-16)


def test_shape_dtype_and_monotonicity() -> None:
    z = torch.linspace(-INV_E, 3.0, 1000, dtype=torch.float64).view(10, 100)
    w = lambertw0(z)
    assert w.shape == (10, 100)
    flat = w.flatten()
    assert (flat[1:] >= flat[:-1]).all()
    # float32 input is computed in float64 (note: float32(-1/e) lies below the branch point -> NaN)
    w32 = lambertw0(torch.tensor([-0.3, 0.5, 2.0], dtype=torch.float32))
    assert w32.dtype == torch.float64 and torch.isfinite(w32).all()
    assert lambertw0(torch.empty(0)).shape == (0,)
