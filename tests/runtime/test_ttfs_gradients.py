"""Exact gradients: implicit-function backward vs. central finite differences, measured-time robustness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firstspike.runtime.ttfs.loss import ttfs_loss
from firstspike.runtime.ttfs.spiketime import (
    SpikeTimeFn,
    first_spike_times,
    membrane_slope,
    spike_time_jacobians,
    spike_times,
)

H = 1e-6  # finite-difference step


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fd_jacobians(t_in: torch.Tensor, w: torch.Tensor, tau_ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of the forward times: (dt/dw (B, n, m), dt/dt_in (B, n, m)).

    Output j depends only on column j of w and samples are independent, so a whole row of w (or a whole
    column of t_in) is perturbed at once.
    """
    B, n = t_in.shape
    m = w.shape[1]
    dw = torch.empty((B, n, m), dtype=torch.float64)
    dt = torch.empty((B, n, m), dtype=torch.float64)
    for i in range(n):
        wp, wm = w.clone(), w.clone()
        wp[i, :] += H
        wm[i, :] -= H
        fwd_p, fwd_m = first_spike_times(t_in, wp, tau_ratio), first_spike_times(t_in, wm, tau_ratio)
        dw[:, i, :] = (fwd_p - fwd_m) / (2 * H)
        tp, tm = t_in.clone(), t_in.clone()
        tp[:, i] += H
        tm[:, i] -= H
        dt[:, i, :] = (first_spike_times(tp, w, tau_ratio) - first_spike_times(tm, w, tau_ratio)) / (2 * H)
    return dw, dt


def well_conditioned(
    t_in: torch.Tensor, w: torch.Tensor, t_out: torch.Tensor, tau_ratio: int
) -> torch.Tensor:
    """(B, m) mask of outputs whose time is a smooth function of the parameters within +-H.

    Excludes silent outputs, shallow crossings (slope < 0.05, near threshold-grazing) and outputs within
    1e-3 of an input spike (the causal set changes there and the derivative is discontinuous).
    """
    spikes = torch.isfinite(t_out)
    slope = membrane_slope(t_out, t_in, w, tau_ratio)
    gap = (t_out.unsqueeze(1) - t_in.unsqueeze(2)).abs().nan_to_num(math.inf).amin(1)
    return spikes & (slope > 0.05) & (gap > 1e-3)


@st.composite
def layer_case(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    tau_ratio = draw(st.sampled_from([1, 2]))
    seed = draw(st.integers(0, 2**31 - 1))
    B, n, m = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 4))
    rng = np.random.default_rng(seed)
    t_in = rng.uniform(0.0, 2.5, size=(B, n))
    t_in[rng.random(t_in.shape) < 0.15] = np.inf
    w = rng.normal(draw(st.floats(0.3, 1.5)) * tau_ratio, 1.2, size=(n, m))
    return torch.from_numpy(t_in), torch.from_numpy(w), tau_ratio


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_case())
def test_jacobians_match_finite_differences(case: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    t_in, w, tau_ratio = case
    t_out = first_spike_times(t_in, w, tau_ratio)
    good = well_conditioned(t_in, w, t_out, tau_ratio)
    assume(bool(good.any()))
    jw, jt = spike_time_jacobians(t_in, w, t_out, tau_ratio)
    fw, ft = fd_jacobians(t_in, w, tau_ratio)
    assert torch.isfinite(jw).all() and torch.isfinite(jt).all()
    mask = good.unsqueeze(1).expand_as(jw)
    torch.testing.assert_close(jw[mask], fw[mask], rtol=1e-5, atol=1e-7)
    mask_t = mask & torch.isfinite(t_in).unsqueeze(2)
    torch.testing.assert_close(jt[mask_t], ft[mask_t], rtol=1e-5, atol=1e-7)
    # silent inputs and silent outputs have zero derivatives
    assert (jt[~torch.isfinite(t_in)] == 0).all()
    assert (jw[~torch.isfinite(t_out).unsqueeze(1).expand_as(jw)] == 0).all()


@pytest.mark.parametrize("tau_ratio", [1, 2])
def test_autograd_vjp_matches_jacobians(tau_ratio: int) -> None:
    g = torch.Generator().manual_seed(21 + tau_ratio)
    t_in = (torch.rand(16, 9, generator=g, dtype=torch.float64) * 2).requires_grad_()
    w = (torch.randn(9, 7, generator=g, dtype=torch.float64) + 0.6 * tau_ratio).requires_grad_()
    out = spike_times(t_in, w, tau_ratio)
    upstream = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (torch.where(torch.isfinite(out), out, 0.0) * upstream).sum().backward()
    jw, jt = spike_time_jacobians(t_in.detach(), w.detach(), out.detach(), tau_ratio)
    up = torch.where(torch.isfinite(out.detach()), upstream, 0.0)
    torch.testing.assert_close(w.grad, torch.einsum("bij,bj->ij", jw, up), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t_in.grad, torch.einsum("bij,bj->bi", jt, up), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tau_ratio", [1, 2])
def test_two_layer_chain_matches_finite_differences(tau_ratio: int) -> None:
    g = torch.Generator().manual_seed(5 + tau_ratio)
    x = torch.rand(6, 4, generator=g, dtype=torch.float64) * 2
    w1 = torch.randn(4, 10, generator=g, dtype=torch.float64) * 0.8 + 1.5 * tau_ratio
    w2 = torch.randn(10, 3, generator=g, dtype=torch.float64) * 0.8 + 0.6 * tau_ratio

    def net(w1_: torch.Tensor) -> torch.Tensor:
        out = first_spike_times(first_spike_times(x, w1_, tau_ratio), w2, tau_ratio)
        return torch.where(torch.isfinite(out), out, 0.0)

    w1r = w1.clone().requires_grad_()
    out = spike_times(spike_times(x, w1r, tau_ratio), w2, tau_ratio)
    assert torch.isfinite(out).double().mean() > 0.5
    torch.where(torch.isfinite(out), out, 0.0).sum().backward()
    num = torch.zeros_like(w1)
    for i in range(4):
        for j in range(10):
            wp, wm = w1.clone(), w1.clone()
            wp[i, j] += H
            wm[i, j] -= H
            num[i, j] = ((net(wp) - net(wm)) / (2 * H)).sum()
    torch.testing.assert_close(w1r.grad, num, rtol=1e-5, atol=1e-7)


def test_measured_times_equal_to_computed_give_identical_gradients() -> None:
    g = torch.Generator().manual_seed(2)
    t_in = torch.rand(12, 6, generator=g, dtype=torch.float64) * 2
    w = torch.randn(6, 5, generator=g, dtype=torch.float64) + 1.0
    computed = first_spike_times(t_in, w)
    grads = []
    for measured in (None, computed.clone()):
        wr, tr = w.clone().requires_grad_(), t_in.clone().requires_grad_()
        out = spike_times(tr, wr, output_times=measured)
        torch.testing.assert_close(out, computed, rtol=0, atol=0)
        torch.where(torch.isfinite(out), out, 0.0).sum().backward()
        grads.append((wr.grad, tr.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=0, atol=0)


def test_measured_times_with_noise_use_the_slope_at_those_times() -> None:
    # dt/dw_i = -K(t - t_i) / u'(t) evaluated at the given (noisy) times, not at the exact ones
    g = torch.Generator().manual_seed(4)
    t_in = torch.rand(8, 5, generator=g, dtype=torch.float64) * 2
    w = torch.randn(5, 4, generator=g, dtype=torch.float64) + 1.2
    exact = first_spike_times(t_in, w)
    measured = exact + 0.01 * torch.randn(exact.shape, generator=g, dtype=torch.float64)
    wr = w.clone().requires_grad_()
    out = spike_times(t_in, wr, output_times=measured)
    torch.testing.assert_close(out[torch.isfinite(out)], measured[torch.isfinite(measured)])
    torch.where(torch.isfinite(out), out, 0.0).sum().backward()
    jw, _ = spike_time_jacobians(t_in, w, measured)
    torch.testing.assert_close(wr.grad, jw.sum(0))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([-5.0, -0.5, 0.0, 0.3, 1.0, 2.5, 50.0, 800.0, math.inf, -math.inf, math.nan]),
                min_size=12, max_size=12))
def test_arbitrary_measured_times_never_give_nan_or_inf(values: list[float]) -> None:
    g = torch.Generator().manual_seed(1)
    t_in = torch.rand(4, 5, generator=g, dtype=torch.float64) * 2
    t_in[0, 1] = math.inf
    w = (torch.randn(5, 3, generator=g, dtype=torch.float64)).requires_grad_()
    tr = t_in.clone().requires_grad_()
    measured = torch.tensor(values, dtype=torch.float64).view(4, 3)
    out = spike_times(tr, w, output_times=measured, max_dw_norm=0.2)
    assert not torch.isnan(out).any()
    upstream = torch.randn(4, 3, generator=g, dtype=torch.float64)
    out.backward(upstream)
    assert torch.isfinite(w.grad).all()
    assert torch.isfinite(tr.grad).all()
    # silent (inf / NaN / -inf) measured outputs contribute nothing
    silent = ~torch.isfinite(measured)
    jw, jt = spike_time_jacobians(t_in, w.detach(), measured)
    assert (jw.permute(0, 2, 1)[silent] == 0).all() and (jt.permute(0, 2, 1)[silent] == 0).all()


def test_non_positive_slope_gives_zero_gradient() -> None:
    # a "measured" time on the falling flank of the membrane (slope < 0) is not a valid crossing
    t_in = torch.zeros(1, 1, dtype=torch.float64)
    w = torch.tensor([[3.0]], dtype=torch.float64, requires_grad=True)
    out = spike_times(t_in, w, output_times=torch.tensor([[2.0]], dtype=torch.float64))  # peak is at t=1
    out.sum().backward()
    assert w.grad.item() == 0.0


def test_max_dw_norm_drops_the_column_of_a_grazing_spike() -> None:
    # weight e: the membrane w t e^-t peaks exactly at threshold (t = 1): slope ~ 0, huge gradient
    t_in = torch.zeros(2, 1, dtype=torch.float64)
    w = torch.tensor([[math.e * (1 + 1e-9)]], dtype=torch.float64, requires_grad=True)
    out = spike_times(t_in, w, max_dw_norm=0.2)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert w.grad.item() == 0.0
    w2 = w.detach().clone().requires_grad_()
    spike_times(t_in, w2, max_dw_norm=None).sum().backward()
    assert abs(w2.grad.item()) > 1.0  # would have been a huge step


def test_loss_gradients_are_never_nan() -> None:
    t = torch.tensor([[math.inf, math.inf, math.inf],   # all silent
                      [1.0, math.inf, math.inf],         # correct silent? label 1 -> fixed loss
                      [1.0, 2.0, math.inf],              # wrong neuron silent
                      [600.0, 700.0, 800.0]],            # very late
                     dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 0, 0])
    loss = ttfs_loss(t, y)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(t.grad).all()
    assert (t.grad[0] == 0).all() and (t.grad[1] == 0).all()
    # the fixed loss of a silent correct neuron is 100 (mean over the batch)
    assert ttfs_loss(t.detach()[:2], y[:2]).item() == pytest.approx(100.0)


def test_loss_value_matches_formula() -> None:
    t = torch.tensor([[0.8, 1.3, 2.0]], dtype=torch.float64)
    y = torch.tensor([1])
    xi, alpha, beta = 0.2, 0.005, 1.0
    expected = (math.log(sum(math.exp(-v / xi) for v in (0.8, 1.3, 2.0))) + 1.3 / xi
                + alpha * (math.exp(1.3 / beta) - 1.0))
    assert ttfs_loss(t, y).item() == pytest.approx(expected, rel=1e-14)


def test_spike_time_fn_rejects_wrong_measured_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        SpikeTimeFn.apply(torch.zeros(2, 3, dtype=torch.float64), torch.ones(3, 4, dtype=torch.float64), 1,
                          torch.zeros(2, 5, dtype=torch.float64), None, 1.0)
