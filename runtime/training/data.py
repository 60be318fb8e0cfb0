"""Data for TTFS networks: spike-time data sets, the reference's latency encoder, and the adapter that accepts
whatever a user has (tensors, arrays, a torch ``Dataset`` or ``DataLoader`` of ``(times, label)``).

Times are in units of tau_s, float64; ``+inf`` means "no spike". Bias spikes are not data: each layer of a
:class:`~firstspike.runtime.ttfs.TTFSNetwork` adds its own (``bias_times``).
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["EARLY", "LATE", "DataError", "LatencyEncoder", "SpikeDataset", "as_spike_data", "batches",
           "load_spike_data"]

#: earliest / latest input spike time of the reference encodings (units of tau_s)
EARLY = 0.15
LATE = 2.0


class DataError(ValueError):
    """Data that cannot be used as spike times and labels (says what is wrong and what is expected)."""


@dataclass(frozen=True)
class SpikeDataset:
    """Input spike times ``(n, n_inputs)`` float64 (units of tau_s, ``inf`` = no spike) and labels ``(n,)``
    int64 of one split."""

    times: torch.Tensor
    labels: torch.Tensor
    name: str = "data"
    split: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_inputs(self) -> int:
        return int(self.times.shape[1])

    def subset(self, n: int | None) -> SpikeDataset:
        """The first ``n`` samples (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return SpikeDataset(self.times[:n], self.labels[:n], self.name, self.split)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``times`` and ``labels`` as a ``.npz`` file (read back with :func:`load_spike_data`, or by
        ``firstspike deploy/eval --data FILE``)."""
        np.savez(path, times=self.times.numpy(), labels=self.labels.numpy())


@dataclass(frozen=True)
class LatencyEncoder:
    """The reference's linear latency code: a feature value ``v`` in ``[low, high]`` spikes at
    ``early + (v - low) / (high - low) * (late - early)`` (units of tau_s).

    ``invert``: high values spike early (MNIST ink). ``mirror``: append each feature's complement
    ``high + low - v`` as an extra input (yin-yang's ``(x, y, 1-x, 1-y)``), so every sample has as many early as
    late spikes. ``silent_at_late``: a value that maps to ``late`` or later does not spike (``inf``; MNIST's
    background). ``clip``: values outside ``[low, high]`` are clipped; without it they raise. NaN raises.
    """

    early: float = EARLY
    late: float = LATE
    low: float = 0.0
    high: float = 1.0
    invert: bool = False
    mirror: bool = False
    silent_at_late: bool = False
    clip: bool = True

    def __post_init__(self) -> None:
        values = (self.early, self.late, self.low, self.high)
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"LatencyEncoder needs finite early, late, low, high; got {values}")
        if not 0 <= self.early < self.late:
            raise DataError(f"LatencyEncoder needs 0 <= early < late, got early={self.early}, late={self.late}")
        if not self.low < self.high:
            raise DataError(f"LatencyEncoder needs low < high, got low={self.low}, high={self.high}")

    def n_inputs(self, n_features: int) -> int:
        """Spike inputs produced for ``n_features`` feature columns."""
        return 2 * n_features if self.mirror else n_features

    def __call__(self, values: Any) -> torch.Tensor:
        """Features ``(n, n_features)`` -> spike times ``(n, n_inputs)`` float64 (one sample ``(n_features,)`` ->
        ``(n_inputs,)``)."""
        v = torch.as_tensor(np.asarray(values, dtype=np.float64) if not torch.is_tensor(values) else values,
                            dtype=torch.float64)
        if v.dim() == 1:
            return self(v.unsqueeze(0))[0]
        if v.dim() != 2:
            raise DataError(f"features must be (n, n_features), got shape {tuple(v.shape)}")
        if torch.isnan(v).any():
            raise DataError("features contain NaN; every value must be a number in [low, high]")
        if self.clip:
            v = v.clamp(self.low, self.high)
        elif ((v < self.low) | (v > self.high)).any():
            raise DataError(f"features outside [{self.low}, {self.high}] (pass clip=True to clip them)")
        if self.mirror:
            v = torch.cat([v, (self.high + self.low) - v], dim=1)
        u = v if self.low == 0.0 and self.high == 1.0 else (v - self.low) / (self.high - self.low)
        if self.invert:
            u = 1.0 - u
        t = self.early + u * (self.late - self.early)
        if self.silent_at_late:
            t = torch.where(t < self.late, t, math.inf)
        return t

    def decode(self, times: Any) -> torch.Tensor:
        """Spike times -> feature values, the inverse of the encoding for values in ``[low, high]``: a mirrored code
        is read from its first half; no spike reads as the value at the late end."""
        t = torch.as_tensor(np.asarray(times, dtype=np.float64) if not torch.is_tensor(times) else times,
                            dtype=torch.float64)
        if self.mirror:
            t = t[..., : t.shape[-1] // 2]
        t = torch.where(torch.isfinite(t), t, torch.full_like(t, self.late))
        u = (t - self.early) / (self.late - self.early)
        if self.invert:
            u = 1.0 - u
        return self.low + u * (self.high - self.low)


def _as_times(x: Any, what: str) -> torch.Tensor:
    t = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    t = t.to(torch.float64)
    if t.dim() != 2:
        raise DataError(f"{what}: spike times must be (samples, inputs), got shape {tuple(t.shape)}")
    if torch.isnan(t).any():
        raise DataError(f"{what}: spike times contain NaN; use inf for an input that does not spike")
    if (t < 0).any():
        raise DataError(f"{what}: spike times must be >= 0 (units of tau_s; inf = no spike)")
    return t


def _as_labels(y: Any, n: int, what: str) -> torch.Tensor:
    lab = y if torch.is_tensor(y) else torch.as_tensor(np.asarray(y))
    if lab.dim() != 1 or lab.shape[0] != n:
        raise DataError(f"{what}: labels must be ({n},) to match the spike times, got shape {tuple(lab.shape)}")
    if lab.is_floating_point() and not torch.equal(lab, lab.round()):
        raise DataError(f"{what}: labels must be class indices (integers)")
    lab = lab.to(torch.int64)
    if n and int(lab.min()) < 0:
        raise DataError(f"{what}: labels must be class indices >= 0")
    return lab


def as_spike_data(data: Any, what: str = "data") -> SpikeDataset | torch.utils.data.DataLoader:
    """A :class:`SpikeDataset` from what a user has, or the ``DataLoader`` itself (iterated as given).

    Accepted: a :class:`SpikeDataset`; a pair ``(times, labels)`` of tensors or arrays; a map-style torch
    ``Dataset`` whose items are ``(times, label)``; a ``DataLoader`` yielding ``(times, labels)`` batches.
    """
    if isinstance(data, SpikeDataset):
        return data
    if isinstance(data, torch.utils.data.DataLoader):
        return data
    if isinstance(data, tuple | list) and len(data) == 2:
        times = _as_times(data[0], what)
        return SpikeDataset(times, _as_labels(data[1], times.shape[0], what), what)
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        items = [data[i] for i in range(len(data))]
        if not items:
            raise DataError(f"{what}: the data set is empty")
        try:
            xs, ys = zip(*items, strict=True)
        except (TypeError, ValueError):
            raise DataError(f"{what}: data set items must be (times, label) pairs") from None
        times = _as_times(torch.stack([torch.as_tensor(x, dtype=torch.float64).reshape(-1) for x in xs]), what)
        return SpikeDataset(times, _as_labels(torch.as_tensor([int(y) for y in ys]), times.shape[0], what), what)
    raise DataError(f"{what}: expected a SpikeDataset, a (times, labels) pair, a torch Dataset of (times, label) "
                    f"or a DataLoader; got {type(data).__name__}")


def load_spike_data(path: str | os.PathLike[str]) -> SpikeDataset:
    """A data set saved with :meth:`SpikeDataset.save`: a ``.npz`` file with the arrays ``times`` (samples,
    inputs; units of tau_s, ``inf`` = no spike) and ``labels`` (samples,) of class indices."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file (expected a .npz with arrays 'times' and 'labels')")
    try:
        with np.load(p, allow_pickle=False) as f:
            missing = {"times", "labels"} - set(f.files)
            if missing:
                raise DataError(f"{p}: the .npz has no {' and no '.join(sorted(missing))} array; expected arrays "
                                f"'times' (samples, inputs) and 'labels' (samples,), found {sorted(f.files)}")
            times, labels = f["times"], f["labels"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__}); expected arrays 'times' and "
                        "'labels' as SpikeDataset.save writes") from None
    if times.dtype.kind not in "fiu" or labels.dtype.kind not in "iu":
        raise DataError(f"{p}: 'times' must be numbers and 'labels' integers, got {times.dtype} and {labels.dtype}")
    t = _as_times(times, str(p))
    return SpikeDataset(t, _as_labels(labels, t.shape[0], str(p)), p.stem)


def batches(
    data: SpikeDataset | torch.utils.data.DataLoader,
    batch_size: int,
    order: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(times, labels)`` minibatches: a DataLoader as it iterates, a SpikeDataset in ``order`` (a permutation
    of the sample indices; None = as stored) in slices of ``batch_size``."""
    if isinstance(data, torch.utils.data.DataLoader):
        for item in data:
            if not isinstance(item, Sequence) or len(item) != 2:
                raise DataError("a DataLoader must yield (times, labels) batches")
            x = _as_times(item[0], "DataLoader batch")
            yield x, _as_labels(item[1], x.shape[0], "DataLoader batch")
        return
    n = len(data)
    for start in range(0, n, batch_size):
        if order is None:
            yield data.times[start : start + batch_size], data.labels[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield data.times[idx], data.labels[idx]


def n_batches(data: SpikeDataset | torch.utils.data.DataLoader, batch_size: int) -> int:
    """Minibatches per epoch."""
    if isinstance(data, torch.utils.data.DataLoader):
        return len(data)
    return math.ceil(len(data) / batch_size) if len(data) else 0


def n_samples(data: SpikeDataset | torch.utils.data.DataLoader) -> int:
    """Samples per epoch."""
    if isinstance(data, torch.utils.data.DataLoader):
        return len(data.dataset)  # type: ignore[arg-type]
    return len(data)
