"""Principal branch of the Lambert W function in pure torch (float64).

``W0(z)`` solves ``w * exp(w) = z`` with ``w >= -1`` for real ``z >= -1/e``. The TTFS spike time for
``tau_m = tau_s`` is ``t = B/A - W0(z)`` (see :mod:`firstspike.runtime.ttfs.spiketime`).

Method: an initial guess from a Pade approximant of the branch-point series (in ``p = sqrt(2(e z + 1))``)
for ``z <= 1`` and from Winitzki's log-based approximation above, refined by Halley's iteration (cubic
convergence: one step for ``z <= 0``, at most ``max_iter``). The iteration is scaled by ``exp(-w)`` so
that large ``z`` do not overflow. Very close to the branch point (``p < 1e-3``) the approximant is exact to
double precision and is used as is; ``z == -1/e`` (the double nearest to it) gives exactly ``-1``.

Out of domain: ``z < -1/e`` gives NaN, ``z = +inf`` gives ``+inf``, NaN stays NaN.
"""

from __future__ import annotations

import math

import torch

__all__ = ["INV_E", "lambertw0"]

#: ``1/e`` split into the nearest double and the remainder (double-double), for an exact branch-point test.
INV_E = 0.36787944117144233
_INV_E_LO = -1.2428753672788363e-17

# Series of W0 around the branch point in p = sqrt(2 (e z + 1)), coefficients of p^0 .. p^9 (the Pade
# approximant below was derived from it).
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

# Below this p the approximant is exact to ~1e-19 and Halley's step (ill-conditioned at w = -1) is skipped.
_P_SERIES_ONLY = 1e-3
# Initial guess for z <= 1: the [4/4] Pade approximant (in p) of the branch-point series; its error is
# < 1.2e-6 for z <= 0 and < 5.2e-5 for z <= 1, so one Halley step (two for 0 < z <= 1) reaches double
# precision. Above z = 1: Winitzki's log-based approximation (error < 2.1e-2, three steps).
_PADE_NUM = (-1.0, -0.39676588142927594, 0.43909557783461484, 0.2158446416433197, 0.018103667123975507)
_PADE_DEN = (1.0, 1.396765881429276, 0.6243369702613278, 0.09568147925269395, 0.0032306465192300554)
_PADE_MAX_Z = 1.0
# Halley converges cubically with error constant ~ 1/(1+w)^2: after a step |dw| <= _STEP_TOL |1+w| the
# remaining error is below ~_STEP_TOL^2 |dw| < 1e-17, so the iteration stops there.
_STEP_TOL = 2e-6


def _poly(x: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:
    out = torch.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        out = out * x + c
    return out


def _initial_guess(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    guess = _poly(p, _PADE_NUM) / _poly(p, _PADE_DEN)
    if bool((z > _PADE_MAX_Z).any()):
        l1 = torch.log1p(z.clamp_min(_PADE_MAX_Z))
        winitzki = l1 * (1.0 - torch.log1p(l1) / (2.0 + l1))
        guess = torch.where(z > _PADE_MAX_Z, winitzki, guess)
    return guess


def lambertw0(z: torch.Tensor, max_iter: int = 8) -> torch.Tensor:
    """Principal branch ``W0(z)`` elementwise, computed in float64 (result is float64).

    At most ``max_iter`` Halley steps (1 suffices for ``z <= 0``, the range spike times use, 2-3 above);
    the iteration stops once every element has converged to double precision. Domain: ``z >= -1/e``;
    smaller ``z`` give NaN. Relative accuracy ~1e-15 away from the branch point; within ``d = z + 1/e``
    of it the problem itself is ill-conditioned (``dW/dz ~ 1/sqrt(d)``) and the error grows like
    ``1e-16 / sqrt(d)``.
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
    idx = iterate.reshape(-1).nonzero().squeeze(1) if not bool(iterate.all()) else None
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
    w = wi.reshape(z.shape) if idx is None else w.reshape(-1).index_copy(0, idx, wi).reshape(z.shape)
    w = torch.where(z == 0.0, torch.zeros_like(w), w)
    w = torch.where(below | torch.isnan(z), torch.full_like(w, math.nan), w)
    w = torch.where(z == math.inf, torch.full_like(w, math.inf), w)
    return w


def lambertw0_branch(z: torch.Tensor) -> torch.Tensor:
    """Fast ``W0(z)`` for float64 ``z`` in ``[-1/e, 0]`` only (values outside are clamped into it).

    The range TTFS spike times need (``z = -(theta/A) exp(B/A)``). Pade guess + exactly one Halley step
    (the guess error < 1.2e-6 makes one step enough), no data-dependent control flow.
    """
    zc = z.clamp(-INV_E, 0.0)
    p = torch.add(zc, INV_E).add_(_INV_E_LO).clamp_min_(0.0).mul_(2.0 * math.e).sqrt_()
    # numerator and denominator of the Pade approximant evaluated together (Horner on a (2, ...) stack)
    coeffs = torch.tensor([_PADE_NUM, _PADE_DEN], dtype=p.dtype, device=p.device)
    coeffs = coeffs.view((2, 5) + (1,) * p.dim())
    nd = coeffs[:, 4].expand((2, *p.shape)).clone()
    for i in range(3, -1, -1):
        nd.mul_(p).add_(coeffs[:, i])
    w = nd[0].div_(nd[1])
    # Halley: r = w - z e^-w ; dw = r / ((w+1) - (w+2) r / (2(w+1)))
    r = torch.exp(w.neg()).mul_(zc).neg_().add_(w)
    wp1 = w + 1.0
    den = (w + 2.0).mul_(r).div_(wp1 * 2.0).neg_().add_(wp1)
    w_new = w - r.div_(den)
    # at the branch point the step is 0/0; there the approximant is exact already
    return torch.where(p >= _P_SERIES_ONLY, w_new, w)
