"""The compiled weight writer equals numpy's digitize and fancy-index writes, byte for byte."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.compiler._weight_writer import write_layer_weights
from firstspike.compiler.placement import synapse_indices
from firstspike.compiler.quantize import digitize
from firstspike.hal import chip


def _numpy_write(flat: np.ndarray, w: np.ndarray, q: float, gain: np.ndarray | None,
                 exc: np.ndarray, inh: np.ndarray) -> None:
    if gain is None:
        d, neg = digitize(w, q)
    else:
        neg = w < 0
        factor = np.where(neg, gain[1], gain[0])
        d = np.minimum(np.rint(np.abs(w) / (q * factor)), chip.WEIGHT_MAX).astype(np.uint8)
    flat[exc] = np.where(neg, 0, d)
    flat[inh] = np.where(neg, d, 0)


@st.composite
def _layers(draw: st.DrawFn) -> tuple[np.ndarray, float, np.ndarray | None, np.ndarray, np.ndarray]:
    n_src = draw(st.integers(1, 12))
    n_out = draw(st.integers(1, 12))
    q = draw(st.sampled_from([0.01, 0.043198529411764705, 0.1, 0.25]))
    # weights on and between half steps (ties round to even), zeros of both signs, beyond 63 steps
    steps = draw(st.lists(st.one_of(st.integers(-80, 80).map(lambda k: k / 2),
                                    st.floats(-70, 70, allow_nan=False, allow_infinity=False),
                                    st.sampled_from([0.0, -0.0])),
                          min_size=n_src * n_out, max_size=n_src * n_out))
    w = np.array(steps, dtype=np.float64).reshape(n_src, n_out) * q
    gain = None
    if draw(st.booleans()):
        gain = np.array(draw(st.lists(st.floats(0.5, 1.5), min_size=2 * n_src * n_out,
                                      max_size=2 * n_src * n_out))).reshape(2, n_src, n_out)
    # sources on rows (2 per source: exc, inh), neurons on columns of one half: a layer as placement makes it
    rows = np.full((n_src, chip.N_HALVES, 2), -1, dtype=np.int64)
    first = draw(st.integers(0, chip.ROWS_PER_HALF - 2 * n_src))
    rows[:, 0, 0] = first + 2 * np.arange(n_src)
    rows[:, 0, 1] = first + 2 * np.arange(n_src) + 1
    ids = np.array(draw(st.lists(st.integers(0, chip.COLUMNS_PER_HALF - 1), min_size=n_out, max_size=n_out,
                                 unique=True)), dtype=np.int64)
    exc, inh = synapse_indices(ids, False, rows)
    return w, q, gain, exc, inh


@settings(max_examples=300, deadline=None)
@given(_layers(), st.integers(0, 2**32 - 1))
def test_the_writer_equals_numpy(layer: tuple, seed: int) -> None:
    w, q, gain, exc, inh = layer
    start = np.random.default_rng(seed).integers(0, 64, size=chip.N_HALVES * chip.ROWS_PER_HALF
                                                 * chip.COLUMNS_PER_HALF, dtype=np.uint8)
    want, got = start.copy(), start.copy()
    _numpy_write(want, w, q, gain, exc, inh)
    write_layer_weights(got, w, q, gain, exc, inh)
    assert np.array_equal(got, want)


def test_a_weight_on_a_half_step_rounds_to_even_and_large_ones_clip() -> None:
    rows = np.array([[[0, 1], [-1, -1]]], dtype=np.int64)
    exc, inh = synapse_indices(np.arange(5), False, rows)
    w = np.array([[2.5, 3.5, -2.5, 100.0, -100.0]]) * 0.25  # exact in binary: 2.5 steps is a tie
    flat = np.full(chip.N_HALVES * chip.ROWS_PER_HALF * chip.COLUMNS_PER_HALF, 7, dtype=np.uint8)
    write_layer_weights(flat, w, 0.25, None, exc, inh)
    assert list(flat[exc[0]]) == [2, 4, 0, 63, 0]
    assert list(flat[inh[0]]) == [0, 0, 2, 0, 63]


def test_indices_outside_the_array_raise_instead_of_writing_there() -> None:
    import pytest

    flat = np.zeros(16, dtype=np.uint8)
    with pytest.raises(IndexError, match="1 synapse indices are outside"):
        write_layer_weights(flat, np.array([[0.5, 0.5]]), 0.1, None, np.array([[0, 16]]), np.array([[2, 3]]))
    assert flat[0] == 5  # the valid write happened, nothing past the end
    with pytest.raises(ValueError, match="do not match"):
        write_layer_weights(flat, np.array([[0.5]]), 0.1, None, np.array([[0, 1]]), np.array([[2, 3]]))
