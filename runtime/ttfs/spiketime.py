"""Exact first-spike times of a layer of current-based LIF neurons, and their exact gradients.

Model (all times in units of the synaptic time constant ``tau_s = 1``; ``g_l = 1``, ``E_l = 0``)::

    tau_m du/dt = -u + I(t),     dI/dt = -I,     I jumps by w_i when input i spikes at t_i,

so a neuron's membrane is ``u(t) = sum_{i: t_i < t} w_i K(t - t_i)`` with the kernel

    tau_m = tau_s   (tau_ratio 1):  K(s) = s exp(-s)
    tau_m = 2 tau_s (tau_ratio 2):  K(s) = exp(-s/2) - exp(-s)

and it spikes (once) when ``u`` first reaches the threshold ``theta`` (default 1). Input and output times are
float64 tensors; ``+inf`` means "no spike" (never NaN).

Forward: inputs are sorted per sample; for every prefix ("causal set") of the first ``k`` inputs the
membrane is ``exp(-t) (A_k t - B_k)`` (ratio 1) or ``a2_k y - a1_k y^2`` with ``y = exp(-t/2)`` (ratio 2),
where ``A, B, a1, a2`` are prefix sums (``cumsum``) over the sorted inputs -- O(n_in n_out) per sample, no
n_in x n_in mask. Each prefix's membrane is unimodal, so whether it crosses threshold inside its interval
``[t_k, t_{k+1})`` is decided by the membrane value at ``min(t_peak, t_{k+1})``; the first such prefix is the
causal set and only there the closed form is evaluated (Lambert W for ratio 1, a quadratic for ratio 2).
Times are shifted per sample (earliest input at 0) so that ``exp(t)`` cannot overflow for late inputs.

Backward (:class:`SpikeTimeFn`): implicit-function theorem on ``F = u(t_out) - theta = 0``::

    dt_out/dw_i = -K(t_out - t_i) / u'(t_out),      dt_out/dt_i = w_i K'(t_out - t_i) / u'(t_out),

evaluated at the output times held by the function -- computed here or *measured* (e.g. on a chip). Output
times that are silent, not finite, or where the slope ``u'(t_out)`` is not positive and finite contribute
zero gradient. As in the reference implementation, a (sample, neuron) weight-gradient column whose largest
entry exceeds ``max_dw_norm`` in magnitude is dropped (threshold-grazing spikes have exploding gradients).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from runtime.ttfs.lambertw import INV_E, lambertw0

__all__ = [
    "SLOPE_EPS",
    "SpikeTimeFn",
    "first_spike_times",
    "membrane_potential",
    "membrane_slope",
    "spike_time_jacobians",
    "spike_times",
]

#: slopes at or below this value (in threshold units per tau_s) are treated as "no valid crossing": zero gradient
SLOPE_EPS = 1e-12

# Upper bound on batch * n_in * n_out elements per chunk in the forward pass (memory bound, ~32 MB per tensor).
_MAX_CHUNK_ELEMENTS = 1 << 22


def _check(input_times: torch.Tensor, weights: torch.Tensor, tau_ratio: int) -> None:
    if tau_ratio not in (1, 2):
        raise ValueError(f"tau_ratio must be 1 (tau_m = tau_s) or 2 (tau_m = 2 tau_s), got {tau_ratio!r}")
    if input_times.dim() != 2 or weights.dim() != 2:
        raise ValueError(
            f"expected input_times (batch, n_in) and weights (n_in, n_out), got shapes "
            f"{tuple(input_times.shape)} and {tuple(weights.shape)}"
        )
    if input_times.shape[1] != weights.shape[0]:
        raise ValueError(
            f"input_times has {input_times.shape[1]} inputs but weights has {weights.shape[0]} rows"
        )


def _sanitize_times(t: torch.Tensor) -> torch.Tensor:
    """float64 copy-free view of ``t`` with NaN and -inf... mapped: NaN -> +inf (no spike)."""
    t = t.to(torch.float64)
    return torch.where(torch.isnan(t), torch.full_like(t, math.inf), t)


def _forward_chunk(t_in: torch.Tensor, w: torch.Tensor, tau_ratio: int, threshold: float) -> torch.Tensor:
    n_batch = t_in.shape[0]
    n_out = w.shape[1]
    out = torch.full((n_batch, n_out), math.inf, dtype=torch.float64, device=t_in.device)
    t_sorted, idx = torch.sort(t_in, dim=1)
    finite = torch.isfinite(t_sorted)
    kmax = int(finite.sum(1).max()) if n_batch else 0
    if kmax == 0:
        return out
    # silent inputs sort last: only the first kmax columns can be part of any causal set
    t_sorted, idx, finite = t_sorted[:, :kmax], idx[:, :kmax], finite[:, :kmax]
    shift = torch.where(finite[:, :1], t_sorted[:, :1], torch.zeros_like(t_sorted[:, :1]))
    ts = torch.where(finite, t_sorted - shift, torch.zeros_like(t_sorted))  # (B, k), >= 0
    inf_col = torch.full_like(ts[:, :1], math.inf)
    t_next = torch.cat([torch.where(finite[:, 1:], ts[:, 1:], inf_col), inf_col], dim=1)
    w_sorted = w.index_select(0, idx.reshape(-1)).reshape(n_batch, kmax, n_out)
    ts3, t_next3, finite3 = ts.unsqueeze(2), t_next.unsqueeze(2), finite.unsqueeze(2)
    # interval of prefix k is non-empty only if t_next > t_k (ties: several inputs at the same time)
    open_interval = (t_next > ts) & finite

    if tau_ratio == 1:
        e = torch.where(finite, torch.exp(ts), torch.zeros_like(ts))
        we = w_sorted * e.unsqueeze(2)
        A = torch.cumsum(we, dim=1)
        Bs = torch.cumsum(we * ts3, dim=1)
        t_peak = 1.0 + Bs / A  # membrane exp(-t)(A t - B) peaks here when A > 0
        t_eval = torch.minimum(t_peak, t_next3)
        u_max = (A * t_eval - Bs) * torch.exp(-t_eval)
        cross = (u_max >= threshold) & (t_peak > ts3) & (A > 0) & open_interval.unsqueeze(2)
    else:
        e1 = torch.where(finite, torch.exp(ts), torch.zeros_like(ts))
        e2 = torch.where(finite, torch.exp(0.5 * ts), torch.zeros_like(ts))
        a1 = torch.cumsum(w_sorted * e1.unsqueeze(2), dim=1)
        a2 = torch.cumsum(w_sorted * e2.unsqueeze(2), dim=1)
        # membrane a2 y - a1 y^2 with y = exp(-t/2) peaks at y = a2 / (2 a1) when a1, a2 > 0
        t_peak = 2.0 * torch.log(2.0 * a1 / a2)
        t_eval = torch.minimum(t_peak, t_next3)
        y = torch.exp(-0.5 * t_eval)
        u_max = (a2 - a1 * y) * y
        cross = (u_max >= threshold) & (t_peak > ts3) & (a1 > 0) & (a2 > 0) & open_interval.unsqueeze(2)
    del finite3

    spikes = cross.any(dim=1)  # (B, n_out)
    k = cross.to(torch.uint8).argmax(dim=1, keepdim=True)  # first crossing prefix
    if tau_ratio == 1:
        A_k = A.gather(1, k).squeeze(1)
        B_k = Bs.gather(1, k).squeeze(1)
        A_k = torch.where(spikes, A_k, torch.ones_like(A_k))
        B_k = torch.where(spikes, B_k, torch.zeros_like(B_k))
        ratio = B_k / A_k
        z = (-threshold / A_k) * torch.exp(ratio)
        z = torch.where(spikes, z.clamp(-INV_E, 0.0), torch.full_like(z, -0.1))
        t = ratio - lambertw0(z)
    else:
        a1_k = a1.gather(1, k).squeeze(1)
        a2_k = a2.gather(1, k).squeeze(1)
        a1_k = torch.where(spikes, a1_k, torch.ones_like(a1_k))
        a2_k = torch.where(spikes, a2_k, torch.full_like(a2_k, 3.0 * math.sqrt(threshold)))
        disc = (a2_k * a2_k - 4.0 * threshold * a1_k).clamp_min(0.0)
        t = 2.0 * torch.log(2.0 * a1_k / (a2_k + torch.sqrt(disc)))
    t = t + shift
    return torch.where(spikes & torch.isfinite(t), t, out)


@torch.no_grad()
def first_spike_times(
    input_times: torch.Tensor, weights: torch.Tensor, tau_ratio: int = 1, threshold: float = 1.0
) -> torch.Tensor:
    """First spike times (batch, n_out) of a layer, float64, ``+inf`` for neurons that stay silent.

    ``input_times``: (batch, n_in) in units of tau_s, ``+inf`` (or NaN) = input does not spike.
    ``weights``: (n_in, n_out) in model units (threshold ``theta`` = ``threshold``, default 1).
    ``tau_ratio``: tau_m / tau_s, 1 or 2. Not differentiable; see :func:`spike_times` for autograd.
    """
    _check(input_times, weights, tau_ratio)
    t_in = _sanitize_times(input_times)
    w = weights.detach().to(torch.float64)
    n_batch, n_in = t_in.shape
    per_sample = max(1, n_in * w.shape[1])
    chunk = max(1, _MAX_CHUNK_ELEMENTS // per_sample)
    if n_batch <= chunk:
        return _forward_chunk(t_in, w, tau_ratio, threshold)
    return torch.cat(
        [_forward_chunk(t_in[i : i + chunk], w, tau_ratio, threshold) for i in range(0, n_batch, chunk)]
    )


def _kernels(
    t_in: torch.Tensor, t_out: torch.Tensor, tau_ratio: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel K and its derivative K' at s = t_out - t_in, (batch, n_in, n_out), zero where s <= 0 or not finite."""
    s = t_out.unsqueeze(1) - t_in.unsqueeze(2)
    causal = (s > 0) & (s < math.inf)
    s = torch.where(causal, s, torch.zeros_like(s))
    zero = torch.zeros_like(s)
    if tau_ratio == 1:
        e = torch.exp(-s)
        K = s * e  # 0 where s was masked to 0
        Kp = torch.where(causal, e - K, zero)
    else:
        e1 = torch.exp(-0.5 * s)
        e2 = e1 * e1
        K = e1 - e2  # 0 where s was masked to 0
        Kp = torch.where(causal, e2 - 0.5 * e1, zero)
    return K, Kp


def membrane_potential(
    t: torch.Tensor, input_times: torch.Tensor, weights: torch.Tensor, tau_ratio: int = 1
) -> torch.Tensor:
    """Membrane ``u(t)`` (batch, n_out) at times ``t`` (batch, n_out), counting only inputs with ``t_i < t``."""
    _check(input_times, weights, tau_ratio)
    t_in = _sanitize_times(input_times)
    t = t.to(torch.float64)
    K, _ = _kernels(t_in, torch.where(torch.isfinite(t), t, torch.zeros_like(t)), tau_ratio)
    return torch.einsum("bij,ij->bj", K, weights.to(torch.float64))


def membrane_slope(
    t: torch.Tensor, input_times: torch.Tensor, weights: torch.Tensor, tau_ratio: int = 1
) -> torch.Tensor:
    """Membrane slope ``du/dt`` (batch, n_out) at times ``t`` (batch, n_out); 0 where ``t`` is not finite."""
    _check(input_times, weights, tau_ratio)
    t_in = _sanitize_times(input_times)
    t = _sanitize_times(t)
    _, Kp = _kernels(t_in, t, tau_ratio)
    return torch.einsum("bij,ij->bj", Kp, weights.to(torch.float64))


def spike_time_jacobians(
    input_times: torch.Tensor, weights: torch.Tensor, output_times: torch.Tensor, tau_ratio: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample derivatives ``(dt_out/dw, dt_out/dt_in)``, both (batch, n_in, n_out), at given output times.

    Entry ``[b, i, j]`` is the derivative of output ``j`` of sample ``b`` with respect to ``w[i, j]`` or to
    ``t_in[b, i]``. Zero for silent outputs and where the slope is not positive and finite.
    """
    _check(input_times, weights, tau_ratio)
    t_in = _sanitize_times(input_times)
    t_out = _sanitize_times(output_times)
    w = weights.detach().to(torch.float64)
    K, Kp = _kernels(t_in, t_out, tau_ratio)
    Kpw = Kp * w
    slope = Kpw.sum(1)
    ok = torch.isfinite(t_out) & (slope > SLOPE_EPS) & torch.isfinite(slope)
    inv = torch.where(ok, 1.0 / torch.where(ok, slope, torch.ones_like(slope)), torch.zeros_like(slope))
    inv = inv.unsqueeze(1)
    return -K * inv, Kpw * inv


class SpikeTimeFn(torch.autograd.Function):
    """Autograd function ``(input_times, weights) -> output_times`` with the exact implicit-function backward.

    ``apply(input_times, weights, tau_ratio, output_times, max_dw_norm, threshold)``:
    if ``output_times`` is None they are computed by :func:`first_spike_times`; otherwise the given
    (e.g. measured on a device) times are used as the forward result (NaN -> +inf) and the backward pass
    is evaluated at them with the given weights. ``max_dw_norm`` (None = off) drops the weight gradient of a
    (sample, output) pair whose largest |dL/dw| entry exceeds it, as the reference does.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input_times: torch.Tensor,
        weights: torch.Tensor,
        tau_ratio: int = 1,
        output_times: torch.Tensor | None = None,
        max_dw_norm: float | None = None,
        threshold: float = 1.0,
    ) -> torch.Tensor:
        _check(input_times, weights, tau_ratio)
        t_in = _sanitize_times(input_times.detach())
        if output_times is None:
            t_out = first_spike_times(t_in, weights.detach(), tau_ratio, threshold)
        else:
            t_out = _sanitize_times(output_times.detach())
            if t_out.shape != (t_in.shape[0], weights.shape[1]):
                raise ValueError(
                    f"output_times must have shape {(t_in.shape[0], weights.shape[1])}, "
                    f"got {tuple(t_out.shape)}"
                )
            t_out = t_out.clone()
        ctx.tau_ratio = tau_ratio
        ctx.max_dw_norm = max_dw_norm
        ctx.save_for_backward(t_in, weights.detach().to(torch.float64), t_out)
        ctx.mark_non_differentiable  # noqa: B018 (outputs are differentiable; kept for clarity)
        return t_out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        t_in, w, t_out = ctx.saved_tensors
        need_t, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_t or need_w):
            return None, None, None, None, None, None
        K, Kp = _kernels(t_in, t_out, ctx.tau_ratio)
        Kpw = Kp * w
        slope = Kpw.sum(1)  # (B, n_out)
        g = grad_out.to(torch.float64)
        ok = torch.isfinite(t_out) & (slope > SLOPE_EPS) & torch.isfinite(slope) & torch.isfinite(g)
        coef = torch.where(ok, g / torch.where(ok, slope, torch.ones_like(slope)), torch.zeros_like(slope))
        grad_t = (Kpw * coef.unsqueeze(1)).sum(2) if need_t else None
        grad_w = None
        if need_w:
            coef_w = coef
            if ctx.max_dw_norm is not None:
                # |dL/dw_ij| for pair (b, j) is K_bij |coef_bj| (K >= 0): drop columns exceeding the bound
                too_large = K.amax(dim=1) * coef.abs() > ctx.max_dw_norm
                coef_w = torch.where(too_large, torch.zeros_like(coef), coef)
            grad_w = -(K * coef_w.unsqueeze(1)).sum(0)
        return grad_t, grad_w, None, None, None, None


def spike_times(
    input_times: torch.Tensor,
    weights: torch.Tensor,
    tau_ratio: int = 1,
    *,
    output_times: torch.Tensor | None = None,
    max_dw_norm: float | None = None,
    threshold: float = 1.0,
) -> torch.Tensor:
    """Differentiable first spike times (batch, n_out), float64, ``+inf`` = silent; see :class:`SpikeTimeFn`.

    Pass ``output_times`` to use externally measured times in the forward result and in the gradient.
    """
    return SpikeTimeFn.apply(input_times, weights, tau_ratio, output_times, max_dw_norm, threshold)
