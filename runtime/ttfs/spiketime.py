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
``[t_k, t_{k+1})`` is decided by its value at ``clamp(t_peak, t_k, t_{k+1})``; the first such prefix is the
causal set and only there the closed form is evaluated (Lambert W for ratio 1, a quadratic for ratio 2).
Times are shifted per sample (earliest input at 0) so that ``exp(t)`` cannot overflow for late inputs (the
torch path assumes a sample's input times span less than ~700 tau_s; the numba path re-anchors its sums and
has no such limit). The per-sample sort and the small (batch, n_in) prefix quantities are computed with numpy
on the host (much faster than ``torch.sort`` for many short rows on CPU); everything of size
batch x n_in x n_out is torch.

Two implementations compute the same forward and backward (:func:`set_kernels`): fused numba kernels
(:mod:`firstspike.runtime.ttfs.cpu_kernels`, the default for CPU tensors: no batch x n_in x n_out intermediates, ~5x
faster for MNIST16-sized layers) and the batched torch formulation described here (any device).

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

import numpy as np
import torch

from firstspike.runtime.ttfs import cpu_kernels, cpu_times
from firstspike.runtime.ttfs.lambertw import lambertw0_branch

__all__ = [
    "SLOPE_EPS",
    "SpikeTimeFn",
    "first_spike_times",
    "membrane_potential",
    "membrane_slope",
    "set_kernels",
    "spike_time_jacobians",
    "spike_times",
]

#: membrane slopes (threshold units per tau_s) at or below this count as "no valid crossing": zero gradient
SLOPE_EPS = 1e-12

#: which implementation runs the forward pass and the backward VJP: "auto" (fused numba kernels for CPU
#: tensors, torch otherwise), "torch" (the batched torch formulation everywhere) or "numba" (CPU only)
KERNELS_CHOICES = ("auto", "torch", "numba")
_kernels_choice = "auto"


def set_kernels(name: str) -> str:
    """Select the implementation ("auto", "torch" or "numba"; see :data:`KERNELS_CHOICES`); returns the previous one.

    Both give the same spike times and gradients up to floating-point rounding (tests compare them).
    """
    global _kernels_choice
    if name not in KERNELS_CHOICES:
        raise ValueError(f"kernels must be one of {KERNELS_CHOICES}, got {name!r}")
    if name == "numba" and not cpu_kernels.AVAILABLE:
        raise RuntimeError("kernels='numba' needs the numba package, which is not importable here")
    previous, _kernels_choice = _kernels_choice, name
    return previous


def _use_cpu_kernels(t: torch.Tensor) -> bool:
    if _kernels_choice == "torch" or not cpu_kernels.AVAILABLE:
        return False
    if t.device.type != "cpu":
        if _kernels_choice == "numba":
            raise RuntimeError(f"kernels='numba' runs on CPU tensors only, got a tensor on {t.device}")
        return False
    return True


# Upper bound on batch * n_in * n_out elements per chunk in the forward pass (~32 MB per tensor).
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
    """``t`` as float64 with NaN and -inf mapped to +inf (no spike): afterwards "spikes" == ``t < inf``."""
    # one elementwise pass; finite values, -0.0 included, are kept as they are
    return torch.nan_to_num(t.to(torch.float64), nan=math.inf, posinf=math.inf, neginf=math.inf)


def _given_output_times(output_times: torch.Tensor, n_batch: int, n_out: int) -> torch.Tensor:
    """Given (e.g. measured) output times as a private float64 copy with NaN and -inf -> +inf, checked to be
    (n_batch, n_out)."""
    t_out = _sanitize_times(output_times.detach())
    if t_out.shape != (n_batch, n_out):
        raise ValueError(f"output_times must have shape {(n_batch, n_out)}, got {tuple(t_out.shape)}")
    return t_out.clone()


def _sorted_inputs(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per sample: input indices sorted by time, the sorted times shifted so that the earliest is 0 (silent
    inputs stay ``+inf``, sorted last) and the shift (B, 1); cut to the most spiking inputs of any sample.
    None when no sample has any input spike."""
    if cpu_kernels.AVAILABLE:
        return cpu_kernels.sorted_rows(t)
    return _sorted_inputs_numpy(t)


def _sorted_inputs_numpy(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`_sorted_inputs` in numpy alone (where numba is missing); the same arrays, bit for bit (tested)."""
    if t.shape[0] == 0 or t.shape[1] == 0:
        return None
    idx = np.argsort(t, axis=1)
    ts = np.take_along_axis(t, idx, axis=1)
    kmax = int((ts < np.inf).sum(axis=1).max())
    if kmax == 0:
        return None
    # silent inputs sort last: only the first kmax columns can be part of any causal set
    idx, ts = idx[:, :kmax], ts[:, :kmax]
    shift = np.where(ts[:, :1] < np.inf, ts[:, :1], 0.0)
    return idx, ts - shift, shift


def _prologue(t_in: torch.Tensor, tau_ratio: int, threshold: float) -> tuple[np.ndarray, ...] | None:
    """Sort the inputs of every sample and build the per-prefix quantities (small (B, k) arrays, numpy).

    Returns ``(idx, shift, per_prefix)`` or None when no sample has any input spike. ``per_prefix`` stacks
    the (B, k) operands of the (B, k, n_out) stage: ratio 1: ``[e^t, -t e^t, -t_next, -t_k, thr]``,
    ratio 2: ``[e^t, e^(t/2), e^(-t_next/2), e^(-t_k/2), thr]`` (times shifted so that each sample's
    earliest input is at 0, so that no exp overflows).
    """
    sorted_inputs = _sorted_inputs(t_in.detach().cpu().numpy())
    if sorted_inputs is None:
        return None
    idx, ts, shift = sorted_inputs
    finite = ts < np.inf
    ts = np.where(finite, ts, 0.0)
    t_next = np.full_like(ts, np.inf)
    t_next[:, :-1] = np.where(finite[:, 1:], ts[:, 1:], np.inf)
    # a prefix's interval [t_k, t_next) is empty for tied inputs and meaningless past the last finite
    # input: there the threshold is +inf so that no crossing is attributed to it
    thr = np.where((t_next > ts) & finite, threshold, np.inf)
    e = np.where(finite, np.exp(ts), 0.0)
    if tau_ratio == 1:
        per_prefix = np.stack([e, -ts * e, -t_next, -ts, thr])
    else:
        e_half = np.where(finite, np.exp(0.5 * ts), 0.0)
        per_prefix = np.stack([e, e_half, np.exp(-0.5 * t_next), np.exp(-0.5 * ts), thr])
    return idx, shift, per_prefix


def _forward_chunk(t_in: torch.Tensor, w: torch.Tensor, tau_ratio: int, threshold: float) -> torch.Tensor:
    n_batch, n_out = t_in.shape[0], w.shape[1]
    if n_batch == 0 or n_out == 0:
        return torch.full((n_batch, n_out), math.inf, dtype=torch.float64, device=t_in.device)
    pro = _prologue(t_in, tau_ratio, threshold)
    if pro is None:
        return torch.full((n_batch, n_out), math.inf, dtype=torch.float64, device=t_in.device)
    idx_np, shift_np, pp_np = pro
    kmax = idx_np.shape[1]
    dev = t_in.device
    idx = torch.from_numpy(idx_np).to(dev)
    shift = torch.from_numpy(shift_np).to(dev)
    pp = torch.from_numpy(pp_np).to(dev)

    # Layout of the (batch, prefix, neuron) tensors: the larger of the two axes innermost, so that the
    # elementwise ops with per-prefix operands vectorise (kdim = axis of the prefixes).
    kdim = 1 if n_out >= kmax else 2
    pk = pp.unsqueeze(3) if kdim == 1 else pp.unsqueeze(2)  # (5, B, k, 1) or (5, B, 1, k)
    if kdim == 1:
        w_sorted = w.index_select(0, idx.reshape(-1)).view(n_batch, kmax, n_out)
    else:
        w_sorted = w.t().contiguous().index_select(1, idx.reshape(-1)).view(n_out, n_batch, kmax)
        w_sorted = w_sorted.permute(1, 0, 2)  # (B, n_out, k), innermost axis contiguous

    if tau_ratio == 1:
        # membrane of prefix k: exp(-t) (A t + N) with A = sum w e^t_i, N = -sum w t_i e^t_i, unimodal with
        # its peak at t = 1 - N/A (A > 0); its maximum on [t_k, t_next] is at clamp(t_peak, t_k, t_next),
        # where u < theta before the first crossing. Negated times (nt = -t) avoid negating big tensors.
        A = torch.mul(w_sorted, pk[0]).cumsum_(kdim)
        N = torch.mul(w_sorted, pk[1]).cumsum_(kdim)
        nt = torch.div(N, A).sub_(1.0)
        torch.maximum(nt, pk[2], out=nt)
        torch.minimum(nt, pk[3], out=nt)
        u = torch.addcmul(N, A, nt, value=-1.0).mul_(nt.exp_())
    else:
        # membrane of prefix k: (a2 - a1 y) y with y = exp(-t/2), a1 = sum w e^t_i, a2 = sum w e^(t_i/2),
        # peak at y = a2 / (2 a1); later times are smaller y.
        a1 = torch.mul(w_sorted, pk[0]).cumsum_(kdim)
        a2 = torch.mul(w_sorted, pk[1]).cumsum_(kdim)
        y = torch.div(a2, a1).mul_(0.5)
        torch.maximum(y, pk[2], out=y)
        torch.minimum(y, pk[3], out=y)
        u = torch.addcmul(a2, a1, y, value=-1.0).mul_(y)
    cross = u >= pk[4]
    # first crossing prefix per (sample, neuron); max over bool returns the first maximal index
    spikes, k = cross.max(dim=kdim, keepdim=True)
    spikes = spikes.squeeze(kdim)
    if tau_ratio == 1:
        p_k, q_k = A.gather(kdim, k).squeeze(kdim), N.gather(kdim, k).squeeze(kdim)
    else:
        p_k, q_k = a1.gather(kdim, k).squeeze(kdim), a2.gather(kdim, k).squeeze(kdim)
    return _times_from_sums(spikes, p_k, q_k, shift, tau_ratio, threshold)


def _times_from_sums(
    spikes: torch.Tensor, p_k: torch.Tensor, q_k: torch.Tensor, shift: torch.Tensor, tau_ratio: int, threshold: float
) -> torch.Tensor:
    """Spike times (B, n_out) from the causal set's prefix sums (see :func:`cpu_kernels.causal_prefix_sums`).

    ratio 1: ``t = -Q/P - W0(-theta exp(-Q/P) / P)``; ratio 2: the larger root of ``(Q - P y) y = theta`` in
    ``y = exp(-t/2)``. ``shift`` ((B, 1) or (B, n_out)) undoes the time shift of the sums; silent -> ``+inf``.
    """
    if tau_ratio == 1:
        A_k = torch.where(spikes, p_k, 1.0)
        ratio = torch.where(spikes, q_k, 0.0).div_(A_k).neg_()  # B/A
        z = torch.exp(ratio).mul_(-threshold).div_(A_k)
        t = ratio.sub_(lambertw0_branch(torch.where(spikes, z, -0.1)))
    else:
        a1_k = torch.where(spikes, p_k, 1.0)
        a2_k = torch.where(spikes, q_k, 3.0 * math.sqrt(threshold))
        disc = torch.addcmul(a2_k * a2_k, a1_k, a1_k.new_tensor(-4.0 * threshold)).clamp_min_(0.0)
        t = torch.log(a1_k.mul(2.0).div_(disc.sqrt_().add_(a2_k))).mul_(2.0)
    t.add_(shift)
    return torch.where(spikes & (t.abs() < math.inf), t, math.inf)


def _forward_cpu_kernel(t_in: torch.Tensor, w: torch.Tensor, tau_ratio: int, threshold: float) -> torch.Tensor:
    """The forward pass with the fused numba kernel (CPU tensors only); same results as :func:`_forward_chunk`."""
    n_batch, n_out = t_in.shape[0], w.shape[1]
    sorted_inputs = _sorted_inputs(t_in.numpy())
    if sorted_inputs is None or n_out == 0:
        return torch.full((n_batch, n_out), math.inf, dtype=torch.float64)
    idx, ts, shift = sorted_inputs
    spikes, p_k, q_k, anchor = cpu_kernels.causal_prefix_sums(idx, ts, w.numpy(), tau_ratio, threshold)
    if tau_ratio == 1:
        return cpu_times.times_from_sums_ratio1(spikes, p_k, q_k, anchor + shift, threshold)
    return _times_from_sums(
        torch.from_numpy(spikes), torch.from_numpy(p_k), torch.from_numpy(q_k), torch.from_numpy(anchor + shift),
        tau_ratio, threshold,
    )


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
    w = weights.detach().to(torch.float64)
    return _first_spike_times(_sanitize_times(input_times), w, tau_ratio, threshold)


def _first_spike_times(t_in: torch.Tensor, w: torch.Tensor, tau_ratio: int, threshold: float) -> torch.Tensor:
    """:func:`first_spike_times` for already checked, sanitised float64 inputs (batched in memory chunks)."""
    if _use_cpu_kernels(t_in):
        return _forward_cpu_kernel(t_in, w, tau_ratio, threshold)
    n_batch, n_in = t_in.shape
    per_sample = max(1, n_in * w.shape[1])
    chunk = max(1, _MAX_CHUNK_ELEMENTS // per_sample)
    if n_batch <= chunk:
        return _forward_chunk(t_in, w, tau_ratio, threshold)
    return torch.cat(
        [_forward_chunk(t_in[i : i + chunk], w, tau_ratio, threshold) for i in range(0, n_batch, chunk)]
    )


def _kernels(
    t_in: torch.Tensor, t_out: torch.Tensor, tau_ratio: int, out_dim: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(-K, K')`` at s = t_out - t_in, zero where s <= 0 (non-causal or silent input).

    Shape (batch, n_in, n_out) for ``out_dim`` 2, (batch, n_out, n_in) for ``out_dim`` 1. ``t_out`` must be
    finite (callers replace silent outputs by a dummy and discard those).
    """
    # d = -s = t_in - t_out; +inf for silent inputs
    d = t_in.unsqueeze(2) - t_out.unsqueeze(1) if out_dim == 2 else t_in.unsqueeze(1) - t_out.unsqueeze(2)
    return _kernel_values(d, tau_ratio)


def _kernel_values(d: torch.Tensor, tau_ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(-K, K')`` at ``s = -d`` for ``d = t_in - t_out`` (any shape; overwritten), 0 where ``d >= 0``."""
    causal = d < 0
    d.clamp_(max=0.0)
    if tau_ratio == 1:
        e = torch.exp(d).mul_(causal)  # exp(-s) for causal pairs, else 0
        Kneg = d.mul_(e)  # -s exp(-s)
        Kp = e.add_(Kneg)  # (1 - s) exp(-s)
    else:
        e1 = torch.exp(d.mul_(0.5)).mul_(causal)  # exp(-s/2)
        e2 = e1 * e1
        Kneg = torch.sub(e2, e1)  # -(exp(-s/2) - exp(-s))
        Kp = e2.add_(e1, alpha=-0.5)  # exp(-s) - exp(-s/2) / 2
    return Kneg, Kp


def _implicit_grads(
    t_in: torch.Tensor,
    w: torch.Tensor,
    t_out: torch.Tensor,
    g: torch.Tensor,
    tau_ratio: int,
    max_dw_norm: float | None,
    need_t: bool,
    need_w: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Vector-Jacobian products ``(dL/dt_in, dL/dw)`` for the upstream gradient ``g = dL/dt_out``."""
    if _use_cpu_kernels(t_in):
        gt, gw = cpu_kernels.implicit_grads(
            t_in.numpy(), w.numpy(), t_out.numpy(), g.numpy(), tau_ratio, max_dw_norm, SLOPE_EPS, need_t, need_w
        )
        return (None if gt is None else torch.from_numpy(gt)), (None if gw is None else torch.from_numpy(gw))
    n_in, n_out = w.shape
    spikes = t_out < math.inf
    # layout: the larger of n_in, n_out innermost (see _forward_chunk)
    out_dim = 2 if n_out >= n_in else 1
    in_dim = 3 - out_dim
    Kneg, Kp = _kernels(t_in, torch.where(spikes, t_out, 0.0), tau_ratio, out_dim)
    Kpw = Kp.mul_(w if out_dim == 2 else w.t().contiguous())
    slope = Kpw.sum(in_dim)  # du/dt at t_out, (B, n_out)
    ok = spikes & (slope > SLOPE_EPS) & (slope < math.inf) & (g.abs() < math.inf)
    coef = torch.where(ok, g / slope, 0.0)  # dL/dt_out / u'(t_out)
    grad_t = grad_w = None
    if need_t:
        grad_t = Kpw.mul_(coef.unsqueeze(in_dim)).sum(out_dim)
    if need_w:
        if max_dw_norm is not None:
            # |dL/dw_ij| of pair (b, j) is |K_bij coef_bj|: drop the pair's column if its max is too large
            too_large = Kneg.amin(in_dim).mul_(coef.abs()) < -max_dw_norm
            coef = torch.where(too_large, 0.0, coef)
        grad_w = Kneg.mul_(coef.unsqueeze(in_dim)).sum(0)
        if out_dim == 1:
            grad_w = grad_w.t()
    return grad_t, grad_w


def membrane_potential(
    t: torch.Tensor, input_times: torch.Tensor, weights: torch.Tensor, tau_ratio: int = 1
) -> torch.Tensor:
    """Membrane ``u(t)`` (batch, n_out) at times ``t`` (batch, n_out), counting only inputs with ``t_i < t``.

    0 where ``t`` is not finite. Times in units of tau_s, ``u`` in units of the threshold (theta = 1).
    """
    _check(input_times, weights, tau_ratio)
    t_in = _sanitize_times(input_times)
    t = _sanitize_times(t)
    valid = t < math.inf
    Kneg, _ = _kernels(t_in, torch.where(valid, t, 0.0), tau_ratio)
    u = -torch.einsum("bij,ij->bj", Kneg, weights.to(torch.float64))
    return torch.where(valid, u, 0.0)


def membrane_slope(
    t: torch.Tensor, input_times: torch.Tensor, weights: torch.Tensor, tau_ratio: int = 1
) -> torch.Tensor:
    """Membrane slope ``du/dt`` (batch, n_out) at times ``t`` (batch, n_out); 0 where ``t`` is not finite."""
    _check(input_times, weights, tau_ratio)
    t_in = _sanitize_times(input_times)
    t = _sanitize_times(t)
    valid = t < math.inf
    _, Kp = _kernels(t_in, torch.where(valid, t, 0.0), tau_ratio)
    slope = torch.einsum("bij,ij->bj", Kp, weights.to(torch.float64))
    return torch.where(valid, slope, 0.0)


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
    spikes = t_out < math.inf
    Kneg, Kp = _kernels(t_in, torch.where(spikes, t_out, 0.0), tau_ratio)
    Kpw = Kp.mul_(w)
    slope = Kpw.sum(1)
    ok = spikes & (slope > SLOPE_EPS) & (slope < math.inf)
    inv = torch.where(ok, 1.0 / slope, 0.0).unsqueeze(1)
    return Kneg * inv, Kpw * inv


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
        w = weights.detach().to(torch.float64)
        if output_times is None:
            with torch.no_grad():
                t_out = _first_spike_times(t_in, w, tau_ratio, threshold)
        else:
            t_out = _given_output_times(output_times, t_in.shape[0], weights.shape[1])
        ctx.tau_ratio = tau_ratio
        ctx.max_dw_norm = max_dw_norm
        ctx.weight_dtype = weights.dtype
        ctx.save_for_backward(t_in, w, t_out)
        return t_out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        t_in, w, t_out = ctx.saved_tensors
        need_t, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_t or need_w):
            return None, None, None, None, None, None
        grad_t, grad_w = _implicit_grads(
            t_in, w, t_out, grad_out.to(torch.float64), ctx.tau_ratio, ctx.max_dw_norm, need_t, need_w
        )
        if grad_w is not None and ctx.weight_dtype != torch.float64:
            grad_w = grad_w.to(ctx.weight_dtype)
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
