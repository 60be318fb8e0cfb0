"""Principal branch of the Lambert W function in pure torch (float64).

``W0(z)`` solves ``w * exp(w) = z`` with ``w >= -1`` for real ``z >= -1/e``. The TTFS spike time for
``tau_m = tau_s`` is ``t = B/A - W0(z)`` (see :mod:`runtime.ttfs.spiketime`).

Method: an initial guess from the branch-point series near ``-1/e`` and from Winitzki's log-based
approximation elsewhere, refined by Halley's iteration (cubic convergence, typically 2-3 steps, at most
``max_iter``). The iteration is written in a form scaled by ``exp(-w)`` so that large ``z`` do not overflow.
Very close to the branch point the truncated series itself is exact to double precision and is used as is;
``z == -1/e`` (the double nearest to it) gives exactly ``-1``.

Out of domain: ``z < -1/e`` gives NaN, ``z = +inf`` gives ``+inf``, NaN stays NaN.
"""

from __future__ import annotations

import math

import torch

__all__ = ["INV_E", "lambertw0"]

#: ``1/e`` split into the nearest double and the remainder (double-double), for an exact branch-point test.
INV_E = 0.36787944117144233
_INV_E_LO = -1.2428753672788363e-17

# Series of W0 around the branch point in p = sqrt(2 (e z + 1)), coefficients of p^0 .. p^9.
_BRANCH_SERIES = (
    -1.0,
    1.0,
    -1.0 / 3.0,
    11.0 / 72.0,
    -43.0 / 540.0,
    769.0 / 17280.0,
    -221.0 / 8505.0,
    680863.0 / 43545600.0,
    -1963.0 / 204120.0,
    226287557.0 / 37623398400.0,
)

# Below this p the 10-term series is exact to ~1e-19 and Halley's step (ill-conditioned at w = -1) is skipped.
_P_SERIES_ONLY = 1e-3
# Initial guess: branch-point series for p < 1 (z < -0.184, error < 2.4e-3), Pade [3/3] of the Taylor series
# at 0 for -0.184 <= z <= 1 (error < 7.4e-4), Winitzki's log approximation above (error < 2.1e-2).
_P_SERIES_GUESS = 1.0
_PADE_MAX = 1.0
_PADE_NUM = (0.0, 1.0, 2.6823529411764704, 1.326470588235294)
_PADE_DEN = (1.0, 3.6823529411764704, 3.5088235294117647, 0.6519607843137255)
# Halley converges cubically with error constant ~ 1/(1+w)^2: after a step |dw| <= _STEP_TOL |1+w|
# the remaining error is below 1e-12 |dw|, so the iteration stops there.
_STEP_TOL = 1e-6


def _poly(x: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:
    out = torch.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        out = out * x + c
    return out


def _initial_guess(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    series = _poly(p.clamp_max(_P_SERIES_GUESS), _BRANCH_SERIES)
    zp = z.clamp(-0.2, _PADE_MAX)
    pade = _poly(zp, _PADE_NUM) / _poly(zp, _PADE_DEN)
    l1 = torch.log1p(z.clamp_min(_PADE_MAX))
    winitzki = l1 * (1.0 - torch.log1p(l1) / (2.0 + l1))
    return torch.where(p < _P_SERIES_GUESS, series, torch.where(z <= _PADE_MAX, pade, winitzki))


def lambertw0(z: torch.Tensor, max_iter: int = 8) -> torch.Tensor:
    """Principal branch ``W0(z)`` elementwise, computed in float64 (result is float64).

    At most ``max_iter`` Halley steps (2 suffice for ``z <= 1``, 3 above); the iteration stops once every
    element has converged to double precision. Domain: ``z >= -1/e``; smaller ``z`` give NaN. Relative
    accuracy ~1e-15 away from the branch point; within ``d = z + 1/e`` of it the problem itself is
    ill-conditioned (``dW/dz ~ 1/sqrt(d)``) and the error grows like ``1e-16 / sqrt(d)``.
    """
    z = torch.as_tensor(z).to(torch.float64)
    if z.numel() == 0:
        return z.clone()
    # distance to the branch point in double-double: q = z + 1/e
    q = (z + INV_E) + _INV_E_LO
    below = z < -INV_E
    p = torch.sqrt((2.0 * math.e) * q.clamp_min(0.0))
    w = _initial_guess(z, p)

    iterate = torch.isfinite(z) & ~below & (p >= _P_SERIES_ONLY) & (z != 0.0)
    idx = iterate.nonzero().squeeze(1) if not bool(iterate.all()) else None
    zi = z.reshape(-1) if idx is None else z.reshape(-1)[idx]
    wi = w.reshape(-1) if idx is None else w.reshape(-1)[idx]
    for _ in range(max_iter if zi.numel() else 0):
        # f/e^w = w - z e^-w ; Halley: dw = (f/e^w) / ((w+1) - (w+2)(f/e^w)/(2w+2))
        r = wi - zi * torch.exp(-wi)
        wp1 = wi + 1.0
        step = r / (wp1 - (wi + 2.0) * r / (2.0 * wp1))
        wi = wi - step
        if not bool((step.abs() > _STEP_TOL * wp1.abs()).any()):
            break
    if idx is None:
        w = wi.reshape(z.shape)
    else:
        w = w.reshape(-1).index_copy(0, idx, wi).reshape(z.shape)
    w = torch.where(z == 0.0, torch.zeros_like(w), w)
    w = torch.where(below | torch.isnan(z), torch.full_like(w, math.nan), w)
    w = torch.where(z == math.inf, torch.full_like(w, math.inf), w)
    return w
