"""Transmission delays in the exact TTFS math (DelGrad: Göltz, Weber, Kriener et al., Nat. Commun. 16, 2025).

A delay ``d`` moves an input's arrival at a neuron: ``t_i -> t_i + d``. Three kinds, by what one delay moves:

* ``axonal``: one delay per presynaptic source, shape (n_in,): every target of source ``i`` sees ``t_i + d_i``
  (the same as delaying the source's spike);
* ``synaptic``: one delay per connection, shape (n_in, n_out): neuron ``j`` sees ``t_i + d_ij``, so each neuron
  has its own arrival order and causal set;
* ``dendritic``: one delay per postsynaptic neuron, shape (n_out,): every input of neuron ``j`` arrives ``d_j``
  later, which delays its output by exactly ``d_j`` (the membrane is a sum of input kernels).

Delays are in units of tau_s (like all times here), float64; the math accepts any finite delay (negative ones
too: they move an arrival earlier); layers keep them in ``[0, delay_max]``.

Gradients come from the same implicit-function backward as without delays (:mod:`.spiketime`), evaluated at the
given output times (computed or measured): with ``G[b, i, j] = dL/da_bij`` the gradient with respect to the
arrival of input ``i`` at neuron ``j``, ``dL/dt_in[b, i] = sum_j G``, and ``dL/dd`` is ``G`` summed over what the
delay moves: ``sum_b G`` (synaptic), ``sum_b,j G`` (axonal), ``sum_b,i G`` (dendritic; this is ``sum_b dL/dt_out``
wherever the output's threshold condition holds). Output times at which the membrane does not cross threshold
with a positive slope give zero gradient, as without delays; the weight-gradient guard ``max_dw_norm`` drops
weight gradients only (as the reference does), never delay gradients.

Forward: axonal delays shift the inputs and reuse the kernels without delays, dendritic delays shift the outputs;
synaptic delays need per-neuron causal sets (:mod:`.cpu_delay_kernels` on CPU, a batched torch formulation
otherwise). Zero delays give exactly the results without delays, bit for bit, for every kind.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from firstspike.runtime.ttfs import cpu_delay_kernels
from firstspike.runtime.ttfs.spiketime import (
    _MAX_CHUNK_ELEMENTS,
    SLOPE_EPS,
    _check,
    _first_spike_times,
    _given_output_times,
    _implicit_grads,
    _kernel_values,
    _sanitize_times,
    _sorted_inputs,
    _times_from_sums,
    _use_cpu_kernels,
)

__all__ = [
    "DELAY_KINDS",
    "DelayedSpikeTimeFn",
    "delay_matrix",
    "delay_shape",
    "delayed_first_spike_times",
    "delayed_spike_time_jacobians",
    "delayed_spike_times",
]

#: the kinds of delay a layer can have ("none" = no delay parameters at all)
DELAY_KINDS = ("none", "axonal", "synaptic", "dendritic")


def delay_shape(kind: str, n_in: int, n_out: int) -> tuple[int, ...]:
    """Shape of a layer's delay tensor: (n_in,) axonal, (n_in, n_out) synaptic, (n_out,) dendritic."""
    if kind == "axonal":
        return (n_in,)
    if kind == "synaptic":
        return (n_in, n_out)
    if kind == "dendritic":
        return (n_out,)
    raise ValueError(f"delay kind must be one of {DELAY_KINDS[1:]} here, got {kind!r}")


def delay_matrix(delays: torch.Tensor, kind: str, n_in: int, n_out: int) -> torch.Tensor:
    """The (n_in, n_out) delay of every connection (a broadcast view for axonal and dendritic delays)."""
    d = delays.to(torch.float64)
    if kind == "axonal":
        return d.unsqueeze(1).expand(n_in, n_out)
    if kind == "dendritic":
        return d.unsqueeze(0).expand(n_in, n_out)
    return d


def _check_delays(delays: torch.Tensor, kind: str, n_in: int, n_out: int) -> None:
    shape = delay_shape(kind, n_in, n_out)
    if tuple(delays.shape) != shape:
        raise ValueError(f"{kind} delays of a layer with {n_in} inputs and {n_out} neurons must have shape {shape}, "
                         f"got {tuple(delays.shape)}")
    if delays.numel() and not bool(torch.isfinite(delays.detach()).all()):
        raise ValueError("delays must be finite numbers (units of tau_s)")


# --- forward -------------------------------------------------------------------------------------------------------


def _synaptic_forward_cpu(t_in: torch.Tensor, w: torch.Tensor, d: torch.Tensor, tau_ratio: int,
                          threshold: float) -> torch.Tensor:
    """Per-neuron causal sets with the fused numba kernel (CPU tensors)."""
    n_batch, n_out = t_in.shape[0], w.shape[1]
    sorted_inputs = _sorted_inputs(t_in.numpy())
    if sorted_inputs is None or n_out == 0:
        return torch.full((n_batch, n_out), math.inf, dtype=torch.float64)
    idx, ts, shift = sorted_inputs
    spikes, p_k, q_k, anchor = cpu_delay_kernels.arrival_prefix_sums(idx, ts, d.numpy(), w.numpy(), tau_ratio,
                                                                     threshold)
    return _times_from_sums(
        torch.from_numpy(spikes), torch.from_numpy(p_k), torch.from_numpy(q_k), torch.from_numpy(anchor + shift),
        tau_ratio, threshold,
    )


def _synaptic_forward_chunk(t_in: torch.Tensor, w: torch.Tensor, d: torch.Tensor, tau_ratio: int,
                            threshold: float) -> torch.Tensor:
    """Per-neuron causal sets in batched torch: arrivals (B, n_in, n_out) sorted along the inputs, prefix sums."""
    n_batch, n_out = t_in.shape[0], w.shape[1]
    inf = torch.full((n_batch, n_out), math.inf, dtype=torch.float64, device=t_in.device)
    if n_batch == 0 or n_out == 0 or t_in.shape[1] == 0:
        return inf
    arrival = t_in.unsqueeze(2) + d.unsqueeze(0)  # +inf for silent inputs
    a_sorted, order = torch.sort(arrival, dim=1, stable=True)
    finite = a_sorted < math.inf
    kmax = int(finite.sum(1).max())
    if kmax == 0:
        return inf
    a_sorted, order, finite = a_sorted[:, :kmax], order[:, :kmax], finite[:, :kmax]
    shift = torch.where(finite[:, :1], a_sorted[:, :1], 0.0)  # (B, 1, n_out): earliest arrival per neuron
    ts = torch.where(finite, a_sorted - shift, 0.0)
    t_next = torch.full_like(ts, math.inf)
    t_next[:, :-1] = torch.where(finite[:, 1:], ts[:, 1:], math.inf)
    thr = torch.where((t_next > ts) & finite, threshold, math.inf)
    w_sorted = torch.gather(w.unsqueeze(0).expand(n_batch, -1, -1), 1, order)
    e = torch.where(finite, torch.exp(ts), 0.0)
    if tau_ratio == 1:
        # membrane of prefix k: exp(-t) (A t + N) (see spiketime._forward_chunk), maximum on [t_k, t_next] at
        # clamp(t_peak, t_k, t_next); negated times nt = -t
        A = (w_sorted * e).cumsum(1)
        N = (w_sorted * (-ts * e)).cumsum(1)
        nt = torch.minimum(torch.maximum(N / A - 1.0, -t_next), -ts)
        u = (N - A * nt) * torch.exp(nt)
        p, q = A, N
    else:
        a1 = (w_sorted * e).cumsum(1)
        a2 = (w_sorted * torch.where(finite, torch.exp(0.5 * ts), 0.0)).cumsum(1)
        y = torch.minimum(torch.maximum(0.5 * a2 / a1, torch.exp(-0.5 * t_next)), torch.exp(-0.5 * ts))
        u = (a2 - a1 * y) * y
        p, q = a1, a2
    cross = u >= thr
    spikes, k = cross.max(dim=1, keepdim=True)
    return _times_from_sums(spikes.squeeze(1), p.gather(1, k).squeeze(1), q.gather(1, k).squeeze(1),
                            shift.squeeze(1), tau_ratio, threshold)


def _synaptic_forward(t_in: torch.Tensor, w: torch.Tensor, d: torch.Tensor, tau_ratio: int,
                      threshold: float) -> torch.Tensor:
    if _use_cpu_kernels(t_in):
        return _synaptic_forward_cpu(t_in, w, d, tau_ratio, threshold)
    n_batch, n_in = t_in.shape
    chunk = max(1, _MAX_CHUNK_ELEMENTS // max(1, n_in * w.shape[1]))
    return torch.cat([_synaptic_forward_chunk(t_in[i : i + chunk], w, d, tau_ratio, threshold)
                      for i in range(0, n_batch, chunk)]) if n_batch > chunk else \
        _synaptic_forward_chunk(t_in, w, d, tau_ratio, threshold)


def _forward(t_in: torch.Tensor, w: torch.Tensor, d: torch.Tensor, kind: str, tau_ratio: int,
             threshold: float) -> torch.Tensor:
    """First spike times for checked, sanitised float64 inputs and delays of ``kind``."""
    if kind == "axonal":
        return _first_spike_times(t_in + d, w, tau_ratio, threshold)
    if kind == "dendritic":
        return _first_spike_times(t_in, w, tau_ratio, threshold) + d  # inf + d = inf
    return _synaptic_forward(t_in, w, d, tau_ratio, threshold)


@torch.no_grad()
def delayed_first_spike_times(
    input_times: torch.Tensor,
    weights: torch.Tensor,
    delays: torch.Tensor,
    kind: str,
    tau_ratio: int = 1,
    threshold: float = 1.0,
) -> torch.Tensor:
    """First spike times (batch, n_out) of a layer whose inputs arrive delayed, float64, ``+inf`` = silent.

    ``input_times`` (batch, n_in) and ``delays`` in units of tau_s (``delays`` shaped as :func:`delay_shape` says
    for ``kind``: ``axonal``, ``synaptic`` or ``dendritic``); ``weights`` (n_in, n_out) in threshold units.
    Not differentiable; see :func:`delayed_spike_times`.
    """
    _check(input_times, weights, tau_ratio)
    _check_delays(delays, kind, *weights.shape)
    return _forward(_sanitize_times(input_times), weights.detach().to(torch.float64),
                    delays.detach().to(torch.float64), kind, tau_ratio, threshold)


# --- backward ------------------------------------------------------------------------------------------------------


def _arrival_grads_torch(
    t_in: torch.Tensor, w: torch.Tensor, d: torch.Tensor, t_out: torch.Tensor, g: torch.Tensor, tau_ratio: int,
    max_dw_norm: float | None, need_t: bool, need_w: bool, need_d: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Batched torch version of :func:`cpu_delay_kernels.arrival_grads` (any device)."""
    spikes = t_out < math.inf
    # s = t_out - arrival; kernels of non-causal and silent pairs are 0
    neg_s = (t_in.unsqueeze(2) + d.unsqueeze(0)) - torch.where(spikes, t_out, 0.0).unsqueeze(1)
    Kneg, Kp = _kernel_values(neg_s, tau_ratio)
    Kpw = Kp.mul_(w)
    slope = Kpw.sum(1)
    ok = spikes & (slope > SLOPE_EPS) & (slope < math.inf) & (g.abs() < math.inf)
    coef = torch.where(ok, g / slope, 0.0)
    ga = Kpw.mul_(coef.unsqueeze(1))  # dL/d(arrival) per (b, i, j)
    grad_t = ga.sum(2) if need_t else None
    grad_d = ga.sum(0) if need_d else None
    grad_w = None
    if need_w:
        if max_dw_norm is not None:
            too_large = Kneg.amin(1).mul_(coef.abs()) < -max_dw_norm
            coef = torch.where(too_large, 0.0, coef)
        grad_w = Kneg.mul_(coef.unsqueeze(1)).sum(0)
    return grad_t, grad_w, grad_d


def _arrival_grads(
    t_in: torch.Tensor, w: torch.Tensor, d: torch.Tensor, t_out: torch.Tensor, g: torch.Tensor, tau_ratio: int,
    max_dw_norm: float | None, need_t: bool, need_w: bool, need_d: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    if _use_cpu_kernels(t_in):
        grads = cpu_delay_kernels.arrival_grads(
            t_in.numpy(), w.numpy(), d.contiguous().numpy(), t_out.numpy(), g.numpy(), tau_ratio, max_dw_norm,
            SLOPE_EPS, need_t, need_w, need_d,
        )
        gt, gw, gd = (None if x is None else torch.from_numpy(x) for x in grads)
        return gt, gw, gd
    n_batch = t_in.shape[0]
    chunk = max(1, _MAX_CHUNK_ELEMENTS // max(1, t_in.shape[1] * w.shape[1]))
    if n_batch <= chunk:
        return _arrival_grads_torch(t_in, w, d, t_out, g, tau_ratio, max_dw_norm, need_t, need_w, need_d)
    parts = [_arrival_grads_torch(t_in[i : i + chunk], w, d, t_out[i : i + chunk], g[i : i + chunk], tau_ratio,
                                  max_dw_norm, need_t, need_w, need_d) for i in range(0, n_batch, chunk)]

    def joined(k: int, cat: bool) -> torch.Tensor | None:
        xs = [x for x in (p[k] for p in parts) if x is not None]
        if not xs:
            return None
        return torch.cat(xs) if cat else torch.stack(xs).sum(0)

    return joined(0, True), joined(1, False), joined(2, False)


def _backward(
    t_in: torch.Tensor, w: torch.Tensor, d: torch.Tensor, kind: str, t_out: torch.Tensor, g: torch.Tensor,
    tau_ratio: int, max_dw_norm: float | None, need_t: bool, need_w: bool, need_d: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dL/dt_in, dL/dw, dL/dd)`` for delays of ``kind`` at the output times ``t_out``."""
    if kind == "axonal":
        # the delay moves the source's spike for all its targets: its gradient is that of the input time
        gt, gw = _implicit_grads(t_in + d, w, t_out, g, tau_ratio, max_dw_norm, need_t or need_d, need_w)
        gd = gt.sum(0) if need_d and gt is not None else None
        return (gt if need_t else None), gw, gd
    n_in, n_out = w.shape
    gt, gw, gD = _arrival_grads(t_in, w, delay_matrix(d, kind, n_in, n_out), t_out, g, tau_ratio, max_dw_norm,
                                need_t, need_w, need_d)
    if gD is not None and kind == "dendritic":
        gD = gD.sum(0)
    return gt, gw, gD


class DelayedSpikeTimeFn(torch.autograd.Function):
    """Autograd function ``(input_times, weights, delays) -> output_times`` with the exact implicit-function backward.

    ``apply(input_times, weights, delays, kind, tau_ratio, output_times, max_dw_norm, threshold)``: as
    :class:`~firstspike.runtime.ttfs.spiketime.SpikeTimeFn`, with ``delays`` of ``kind`` (see the module docstring).
    Given ``output_times`` (measured) are the forward result (NaN -> +inf) and the point where the gradient is
    evaluated; they are the neurons' output times *including* a dendritic delay.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input_times: torch.Tensor,
        weights: torch.Tensor,
        delays: torch.Tensor,
        kind: str,
        tau_ratio: int = 1,
        output_times: torch.Tensor | None = None,
        max_dw_norm: float | None = None,
        threshold: float = 1.0,
    ) -> torch.Tensor:
        _check(input_times, weights, tau_ratio)
        _check_delays(delays, kind, *weights.shape)
        t_in = _sanitize_times(input_times.detach())
        w = weights.detach().to(torch.float64)
        d = delays.detach().to(torch.float64)
        if output_times is None:
            with torch.no_grad():
                t_out = _forward(t_in, w, d, kind, tau_ratio, threshold)
        else:
            t_out = _given_output_times(output_times, t_in.shape[0], weights.shape[1])
        ctx.kind, ctx.tau_ratio, ctx.max_dw_norm = kind, tau_ratio, max_dw_norm
        ctx.dtypes = (weights.dtype, delays.dtype)
        ctx.save_for_backward(t_in, w, d, t_out)
        return t_out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        t_in, w, d, t_out = ctx.saved_tensors
        need_t, need_w, need_d = ctx.needs_input_grad[:3]
        none = (None,) * 5
        if not (need_t or need_w or need_d):
            return (None, None, None, *none)
        gt, gw, gd = _backward(t_in, w, d, ctx.kind, t_out, grad_out.to(torch.float64), ctx.tau_ratio,
                               ctx.max_dw_norm, need_t, need_w, need_d)
        if gw is not None and ctx.dtypes[0] != torch.float64:
            gw = gw.to(ctx.dtypes[0])
        if gd is not None and ctx.dtypes[1] != torch.float64:
            gd = gd.to(ctx.dtypes[1])
        return (gt, gw, gd, *none)


def delayed_spike_times(
    input_times: torch.Tensor,
    weights: torch.Tensor,
    delays: torch.Tensor,
    kind: str,
    tau_ratio: int = 1,
    *,
    output_times: torch.Tensor | None = None,
    max_dw_norm: float | None = None,
    threshold: float = 1.0,
) -> torch.Tensor:
    """Differentiable first spike times (batch, n_out) with delays of ``kind``, float64, ``+inf`` = silent.

    Gradients flow to ``input_times``, ``weights`` and ``delays`` (see :class:`DelayedSpikeTimeFn`); pass
    ``output_times`` to use measured times in the forward result and in the gradient.
    """
    return DelayedSpikeTimeFn.apply(input_times, weights, delays, kind, tau_ratio, output_times, max_dw_norm,
                                    threshold)


def delayed_spike_time_jacobians(
    input_times: torch.Tensor,
    weights: torch.Tensor,
    delays: torch.Tensor,
    kind: str,
    output_times: torch.Tensor,
    tau_ratio: int = 1,
) -> torch.Tensor:
    """Per-sample derivatives ``dt_out/da`` (batch, n_in, n_out) of every output with respect to the arrival of each
    input at it (``a = t_in + d``), at given output times: the derivative with respect to a synaptic delay; sum it
    over ``j`` for an axonal delay (or the input time), over ``i`` for a dendritic one. Zero for silent outputs,
    non-causal pairs and where the slope is not positive and finite."""
    _check(input_times, weights, tau_ratio)
    _check_delays(delays, kind, *weights.shape)
    t_in = _sanitize_times(input_times)
    t_out = _sanitize_times(output_times)
    w = weights.detach().to(torch.float64)
    d = delay_matrix(delays.detach(), kind, *w.shape)
    spikes = t_out < math.inf
    neg_s = (t_in.unsqueeze(2) + d.unsqueeze(0)) - torch.where(spikes, t_out, 0.0).unsqueeze(1)
    _, Kp = _kernel_values(neg_s, tau_ratio)
    Kpw = Kp.mul_(w)
    slope = Kpw.sum(1)
    ok = spikes & (slope > SLOPE_EPS) & (slope < math.inf)
    return Kpw * torch.where(ok, 1.0 / slope, 0.0).unsqueeze(1)
