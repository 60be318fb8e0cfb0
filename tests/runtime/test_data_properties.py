"""Property tests of the data helpers: the latency encoder and its decoder, the data adapter, the .npz reader."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from firstspike.runtime.training.data import DataError, LatencyEncoder, SpikeDataset, as_spike_data, load_spike_data
from firstspike.runtime.training.datasets import encode_mnist16, encode_yinyang

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def encoders(draw: st.DrawFn) -> LatencyEncoder:
    early = draw(st.floats(0.0, 5.0))
    late = early + draw(st.floats(0.01, 5.0))
    low = draw(finite)
    high = low + draw(st.floats(1e-3, 1e3))
    return LatencyEncoder(early, late, low, high, invert=draw(st.booleans()), mirror=draw(st.booleans()))


@given(enc=encoders(), data=st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_encoding_is_within_the_window_monotonic_and_decodes_back(enc: LatencyEncoder, data: st.DataObject):
    n, k = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    values = data.draw(hnp.arrays(np.float64, (n, k), elements=st.floats(enc.low, enc.high)))
    t = enc(values)
    assert t.shape == (n, enc.n_inputs(k)) and t.dtype == torch.float64
    assert bool(((t >= enc.early - 1e-9) & (t <= enc.late + 1e-9)).all())
    back = enc.decode(t).numpy()
    np.testing.assert_allclose(back, values, rtol=1e-9, atol=1e-9 * (enc.high - enc.low) + 1e-12)
    # earlier for larger values unless inverted (first half of a mirrored code)
    order = np.argsort(values[:, 0], kind="stable")
    first = t[:, 0].numpy()[order]
    diffs = np.diff(first)
    assert (diffs <= 1e-12).all() if enc.invert else (diffs >= -1e-12).all()


@given(values=hnp.arrays(np.float64, (5, 4), elements=st.floats(0.0, 1.0)))
def test_the_built_in_encodings_are_the_latency_encoder(values):
    assert torch.equal(encode_yinyang(values), 0.15 + torch.from_numpy(values) * 1.85)
    t = encode_mnist16(values)
    ref = 0.15 + (1.0 - torch.from_numpy(values)) * 1.85
    assert torch.equal(t, torch.where(ref < 2.0, ref, math.inf))


def test_encoder_refuses_nonsense_with_a_message():
    with pytest.raises(DataError, match="early < late"):
        LatencyEncoder(early=2.0, late=1.0)
    with pytest.raises(DataError, match="low < high"):
        LatencyEncoder(low=1.0, high=1.0)
    with pytest.raises(DataError, match="NaN"):
        LatencyEncoder()([[0.5, math.nan]])
    with pytest.raises(DataError, match="outside"):
        LatencyEncoder(clip=False)([[1.5]])
    assert LatencyEncoder()([[1.5, -2.0]]).tolist() == [[2.0, 0.15]]  # clipped by default
    assert LatencyEncoder(silent_at_late=True)([[1.0]]).tolist() == [[math.inf]]


@given(times=hnp.arrays(np.float64, st.tuples(st.integers(0, 6), st.integers(1, 5)),
                        elements=st.one_of(st.floats(0.0, 10.0), st.just(math.inf))),
       data=st.data())
@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_npz_round_trip(tmp_path_factory, times, data):
    labels = data.draw(hnp.arrays(np.int64, times.shape[0], elements=st.integers(0, 9)))
    path = tmp_path_factory.mktemp("npz") / "d.npz"
    SpikeDataset(torch.from_numpy(times), torch.from_numpy(labels)).save(path)
    back = load_spike_data(path)
    assert torch.equal(back.times, torch.from_numpy(times)) and torch.equal(back.labels, torch.from_numpy(labels))


@given(blob=st.binary(max_size=300))
@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_npz_reader_refuses_garbage_with_data_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("junk") / "x.npz"
    path.write_bytes(blob)
    with pytest.raises(DataError):
        load_spike_data(path)


def test_npz_reader_says_what_is_missing_or_wrong(tmp_path: Path):
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 2)))
    with pytest.raises(DataError, match="no labels and no times"):
        load_spike_data(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", times=np.zeros((2, 2)), labels=np.array([0.5, 1.0]))
    with pytest.raises(DataError, match="integers"):
        load_spike_data(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", times=-np.ones((2, 2)), labels=np.array([0, 1]))
    with pytest.raises(DataError, match=">= 0"):
        load_spike_data(tmp_path / "c.npz")
    with pytest.raises(DataError, match="no such file"):
        load_spike_data(tmp_path / "none.npz")


@given(n=st.integers(1, 5), k=st.integers(1, 4), labels=st.lists(st.integers(0, 4), min_size=1, max_size=5))
def test_the_adapter_accepts_pairs_and_refuses_mismatches(n, k, labels):
    times = torch.rand(n, k, dtype=torch.float64)
    if len(labels) == n:
        ds = as_spike_data((times, labels))
        assert isinstance(ds, SpikeDataset) and ds.labels.tolist() == labels
    else:
        with pytest.raises(DataError, match="labels must be"):
            as_spike_data((times, labels))
