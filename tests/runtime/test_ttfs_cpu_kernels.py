"""The fused numba kernels (default on CPU) against the batched torch formulation of the same TTFS math.

The other TTFS tests (ODE integration, finite differences) run with the default ("auto" = numba on CPU);
here both implementations are run on the same random layers and must agree to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.runtime.training.perf import configure_threads
from firstspike.runtime.ttfs import cpu_kernels, row_split, spiketime
from firstspike.runtime.ttfs.spiketime import first_spike_times, set_kernels, spike_times

INF = math.inf


@pytest.fixture(autouse=True)
def _restore_kernels() -> Iterator[None]:
    previous = set_kernels("auto")
    yield
    set_kernels(previous)


def _layer(seed: int, n_batch: int, n_in: int, n_out: int, tau_ratio: int, sparsity: float, grid: float, spread: float):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, spread, (n_batch, n_in))
    if grid > 0:  # coarse time grid: many tied inputs
        t = np.round(t / grid) * grid
    t[rng.random((n_batch, n_in)) < sparsity] = INF
    if n_batch > 1:
        t[-1] = INF  # a sample without any input spike
    mean = 1.5 / max(1.0, math.sqrt(n_in)) if tau_ratio == 1 else 3.0 / max(1.0, math.sqrt(n_in))
    w = rng.normal(mean, 2.0 * mean, (n_in, n_out))
    return torch.from_numpy(t), torch.from_numpy(w)


def _run(kernels: str, t: torch.Tensor, w: torch.Tensor, tau_ratio: int, g: torch.Tensor, max_dw_norm: float | None):
    set_kernels(kernels)
    t_req = t.clone().requires_grad_()
    w_req = w.clone().requires_grad_()
    out = spike_times(t_req, w_req, tau_ratio, max_dw_norm=max_dw_norm)
    (torch.where(out < INF, out, 0.0) * g).sum().backward()
    return out.detach(), t_req.grad, w_req.grad


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_batch=st.integers(1, 12),
    n_in=st.integers(1, 40),
    n_out=st.integers(1, 40),
    tau_ratio=st.sampled_from([1, 2]),
    sparsity=st.sampled_from([0.0, 0.3, 0.8]),
    grid=st.sampled_from([0.0, 0.25]),
    spread=st.sampled_from([2.0, 10.0, 300.0]),
    max_dw_norm=st.sampled_from([None, 0.2]),
)
def test_numba_and_torch_agree(
    seed: int, n_batch: int, n_in: int, n_out: int, tau_ratio: int, sparsity: float, grid: float, spread: float,
    max_dw_norm: float | None,
) -> None:
    t, w = _layer(seed, n_batch, n_in, n_out, tau_ratio, sparsity, grid, spread)
    g = torch.from_numpy(np.random.default_rng(seed + 1).normal(size=(n_batch, n_out)))
    t_a, gt_a, gw_a = _run("torch", t, w, tau_ratio, g, max_dw_norm)
    t_b, gt_b, gw_b = _run("numba", t, w, tau_ratio, g, max_dw_norm)
    fired_a, fired_b = t_a < INF, t_b < INF
    assert torch.equal(fired_a, fired_b)
    assert not torch.isnan(t_b).any() and not torch.isnan(gt_b).any() and not torch.isnan(gw_b).any()
    torch.testing.assert_close(t_b[fired_b], t_a[fired_a], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gt_b, gt_a, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(gw_b, gw_a, rtol=1e-7, atol=1e-9)


def test_mnist_sized_layer_agrees_and_most_neurons_fire() -> None:
    """A layer of MNIST16's size (256 -> 128, ~40 % of inputs spiking): the case the kernels exist for."""
    t, w = _layer(7, 50, 256, 128, 1, 0.6, 0.0, 1.85)
    w = w.abs() * 0.3  # mostly excitatory, so that most neurons fire and causal sets are long
    g = torch.ones(50, 128, dtype=torch.float64)
    t_a, gt_a, gw_a = _run("torch", t, w, 1, g, 0.2)
    t_b, gt_b, gw_b = _run("numba", t, w, 1, g, 0.2)
    assert (t_b < INF).double().mean() > 0.5
    torch.testing.assert_close(t_b, t_a, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gt_b, gt_a, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(gw_b, gw_a, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("tau_ratio", [1, 2])
def test_late_inputs_after_a_huge_gap_still_spike(tau_ratio: int) -> None:
    """Inputs 2000 tau_s after the first one: the numba path re-anchors (exp(2000) would overflow) and gives
    the same time as the late inputs alone (the early one has decayed to nothing), shifted by 2000."""
    set_kernels("numba")
    strong = 2.0 if tau_ratio == 1 else 5.0
    w = torch.tensor([[0.1], [strong], [strong]], dtype=torch.float64)
    t = torch.tensor([[0.0, 2000.0, 2000.5]], dtype=torch.float64)
    late_alone = torch.tensor([[INF, 0.0, 0.5]], dtype=torch.float64)
    t_late = first_spike_times(t, w, tau_ratio)
    t_ref = first_spike_times(late_alone, w, tau_ratio)
    assert t_ref.isfinite().all()
    torch.testing.assert_close(t_late, t_ref + 2000.0, rtol=0, atol=1e-9)
    g_t = t.clone().requires_grad_()
    g_w = w.clone().requires_grad_()
    spike_times(g_t, g_w, tau_ratio).sum().backward()
    assert g_t.grad.isfinite().all() and g_w.grad.isfinite().all()
    assert g_t.grad[0, 0] == 0.0 and g_w.grad[0, 0] == 0.0  # exp(-2000) underflows: no influence left
    assert g_w.grad[1, 0] < 0.0  # a stronger late input makes the spike earlier


def test_only_weight_or_only_input_gradient() -> None:
    t, w = _layer(3, 8, 20, 6, 1, 0.2, 0.0, 2.0)
    set_kernels("numba")
    w_req = w.clone().requires_grad_()
    spike_times(t, w_req, 1).nan_to_num(posinf=0.0).sum().backward()
    t_req = t.clone().requires_grad_()
    spike_times(t_req, w, 1).nan_to_num(posinf=0.0).sum().backward()
    _, gt, gw = _run("torch", t, w, 1, torch.ones(8, 6, dtype=torch.float64), None)
    torch.testing.assert_close(w_req.grad, gw, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(t_req.grad, gt, rtol=1e-8, atol=1e-12)


def test_default_uses_numba_on_cpu_and_choice_is_validated() -> None:
    assert spiketime._use_cpu_kernels(torch.zeros(1, dtype=torch.float64))
    set_kernels("torch")
    assert not spiketime._use_cpu_kernels(torch.zeros(1, dtype=torch.float64))
    with pytest.raises(ValueError, match="kernels must be one of"):
        set_kernels("cuda")
    assert first_spike_times(torch.full((2, 3), INF), torch.ones(3, 4)).isinf().all()


@pytest.fixture
def _split_small_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the kernels split even a tiny batch into row blocks (the default keeps small work on one thread)."""
    monkeypatch.setattr(row_split, "MIN_WORK_PER_BLOCK", 1)


@pytest.mark.usefixtures("_split_small_work")
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_batch=st.integers(1, 9),
    n_in=st.integers(1, 30),
    n_out=st.integers(1, 30),
    tau_ratio=st.sampled_from([1, 2]),
    sparsity=st.sampled_from([0.0, 0.5]),
    grid=st.sampled_from([0.0, 0.25, 1e-9]),
    spread=st.sampled_from([2.0, 700.0]),
    threshold=st.floats(0.05, 3.0),
    threads=st.integers(2, 4),
)
def test_screen_and_row_blocks_change_no_bit(
    seed: int, n_batch: int, n_in: int, n_out: int, tau_ratio: int, sparsity: float, grid: float, spread: float,
    threshold: float, threads: int,
) -> None:
    """The prefix kernel's membrane screen and the split of a batch (and of the weight gradient's rows) over
    threads leave every output bit as the plain one-thread kernel gives it, near-ties and re-anchoring included."""
    t, w = _layer(seed, n_batch, n_in, n_out, tau_ratio, sparsity, grid, spread)
    sorted_inputs = spiketime._sorted_inputs(t.numpy())
    if sorted_inputs is None:
        return
    idx, ts, _ = sorted_inputs
    plain = cpu_kernels.causal_prefix_sums(idx, ts, w.numpy(), tau_ratio, threshold, threads=1, screen=False)
    for screen, n in ((True, 1), (True, threads), (False, threads)):
        got = cpu_kernels.causal_prefix_sums(idx, ts, w.numpy(), tau_ratio, threshold, threads=n, screen=screen)
        for a, b in zip(plain, got, strict=True):
            np.testing.assert_array_equal(a, b)
    t_out = first_spike_times(t, w, tau_ratio, threshold).numpy()
    g = np.random.default_rng(seed + 1).normal(size=t_out.shape)
    one = cpu_kernels.implicit_grads(t.numpy(), w.numpy(), t_out, g, tau_ratio, 0.2, 1e-8, True, True, threads=1)
    split = cpu_kernels.implicit_grads(t.numpy(), w.numpy(), t_out, g, tau_ratio, 0.2, 1e-8, True, True,
                                       threads=threads)
    for a, b in zip(one, split, strict=True):
        np.testing.assert_array_equal(a, b)


def test_configure_threads_sets_the_kernels_threads_and_keeps_torch_at_one() -> None:
    before_torch, before = torch.get_num_threads(), row_split.set_threads(None)
    try:
        assert configure_threads(3) == 3
        assert row_split.get_threads() == 3 and torch.get_num_threads() == 1
        assert [b - a for a, b in row_split.blocks(10, 1e9)] == [3, 3, 4]
        assert row_split.blocks(10, 1.0) == [(0, 10)]  # too little work to hand to another thread
        with pytest.raises(ValueError, match="at least 1"):
            row_split.set_threads(0)
    finally:
        row_split.set_threads(before)
        torch.set_num_threads(before_torch)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_batch=st.integers(0, 20),
    n_in=st.integers(0, 50),
    silent=st.sampled_from([0.0, 0.5, 1.0]),
    grid=st.sampled_from([0.0, 0.5]),
    transposed=st.booleans(),
)
def test_sorted_rows_gives_the_numpy_sort(
    seed: int, n_batch: int, n_in: int, silent: float, grid: float, transposed: bool
) -> None:
    """Same indices (ties included), times and shifts, bit for bit, as the numpy formulation (argsort and
    take_along_axis, what runs without numba), for any layout."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(-5.0, 20.0, (n_in, n_batch) if transposed else (n_batch, n_in))
    if grid > 0:
        t = np.round(t / grid) * grid  # many ties
    t[rng.random(t.shape) < silent] = INF
    if transposed:
        t = t.T  # a strided view, as a transposed tensor's numpy() is
    want, got = spiketime._sorted_inputs_numpy(t), cpu_kernels.sorted_rows(t)
    if want is None:
        assert got is None
        return
    assert got is not None
    for a, b in zip(want, got, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))
