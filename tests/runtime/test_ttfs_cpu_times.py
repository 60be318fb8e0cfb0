"""The fused numba spike-time formula (:mod:`firstspike.runtime.ttfs.cpu_times`) gives the torch formula's bits."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.runtime.ttfs import cpu_kernels, spiketime
from firstspike.runtime.ttfs.cpu_times import times_from_sums_ratio1


def _torch_times(spikes: np.ndarray, p: np.ndarray, q: np.ndarray, shift: np.ndarray, threshold: float) -> np.ndarray:
    return spiketime._times_from_sums(torch.from_numpy(spikes), torch.from_numpy(p), torch.from_numpy(q),
                                      torch.from_numpy(shift), 1, threshold).numpy()


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == np.float64
    differ = a.view(np.int64) != b.view(np.int64)  # -0.0 vs 0.0 and NaN payloads count as different
    assert not differ.any(), f"{int(differ.sum())} of {a.size} differ, e.g. {a[differ][:3]} vs {b[differ][:3]}"


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_batch=st.integers(1, 40),
    n_out=st.integers(1, 70),  # odd and even widths: torch's vector loop and its scalar tail
    log_spread=st.floats(0.0, 8.0),
    threshold=st.floats(0.05, 3.0),
    specials=st.booleans(),
    per_neuron_shift=st.booleans(),
)
def test_fused_formula_has_the_torch_formulas_bits(
    seed: int, n_batch: int, n_out: int, log_spread: float, threshold: float, specials: bool, per_neuron_shift: bool
) -> None:
    """Arbitrary prefix sums, including P of 0, inf and NaN, arguments at and beyond the branch point 1/e."""
    rng = np.random.default_rng(seed)
    spikes = rng.random((n_batch, n_out)) < 0.8
    p = np.exp(rng.normal(0.0, log_spread, (n_batch, n_out)))
    q = rng.normal(0.0, 1.0, (n_batch, n_out)) * p * rng.uniform(0.0, 5.0)
    if specials:
        flat = rng.integers(0, p.size, 6)
        p.flat[flat[:3]] = [0.0, math.inf, math.nan]
        # P = theta e, Q = 0: z = -theta / P = -1/e up to rounding, at the branch point or just beyond it
        p.flat[flat[3:]] = threshold * math.e
        q.flat[flat[3:]] = 0.0
    shift = rng.uniform(0.0, 50.0, (n_batch, n_out if per_neuron_shift else 1))
    _same_bits(times_from_sums_ratio1(spikes, p, q, shift, threshold).numpy(),
               _torch_times(spikes, p, q, np.broadcast_to(shift, p.shape).copy(), threshold))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_batch=st.integers(1, 30), n_in=st.integers(1, 60),
       n_out=st.integers(1, 60), threshold=st.floats(0.2, 2.0))
def test_fused_formula_on_real_causal_sets(seed: int, n_batch: int, n_in: int, n_out: int, threshold: float) -> None:
    """The sums the forward kernel really produces (grazing crossings included) give the same bits both ways,
    and the layer's forward pass is the fused formula's."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 3.0, (n_batch, n_in))
    t[rng.random(t.shape) < 0.2] = math.inf
    w = rng.normal(1.5 / math.sqrt(n_in), 3.0 / math.sqrt(n_in), (n_in, n_out))
    sorted_inputs = spiketime._sorted_inputs(t)
    if sorted_inputs is None:
        return
    idx, ts, shift = sorted_inputs
    spikes, p, q, anchor = cpu_kernels.causal_prefix_sums(idx, ts, w, 1, threshold)
    fused = times_from_sums_ratio1(spikes, p, q, anchor + shift, threshold).numpy()
    _same_bits(fused, _torch_times(spikes, p, q, anchor + shift, threshold))
    _same_bits(spiketime.first_spike_times(torch.from_numpy(t), torch.from_numpy(w), 1, threshold).numpy(), fused)
    assert not np.isnan(fused).any()
