"""The one evaluation loop: accuracy, loss and spike statistics of a network on a data set, computed by the
closed-form model (software) or measured on a device. Training, ``firstspike eval`` and ``firstspike deploy``
all use it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from firstspike.runtime.training.data import SpikeDataset, as_spike_data, batches, n_batches
from firstspike.runtime.training.energy import EnergyModel
from firstspike.runtime.ttfs.loss import TTFSLoss, predict

__all__ = ["DEFAULT_DEVICE_SEED", "DeviceStats", "Evaluation", "evaluate"]

#: noise seed of a device evaluation unless one is given (the in-the-loop trainer's test-set seed, and what
#: ``firstspike deploy`` uses by default)
DEFAULT_DEVICE_SEED = 2


@dataclass
class DeviceStats:
    """Counters of everything that ran on a device (seconds of chip time and of host wall time)."""

    runs: int = 0
    samples: int = 0
    spikes: int = 0
    synaptic_events: int = 0
    input_events: int = 0
    lost_input_events: int = 0
    dropped: int = 0
    chip_seconds: float = 0.0
    device_wall_seconds: float = 0.0
    config_diffs: int = 0
    changed_synapse_entries: int = 0

    def add(self, res: Any, wall: float) -> None:
        """Accumulate one :class:`firstspike.runtime.session.SessionResult` that took ``wall`` seconds."""
        self.runs += 1
        self.samples += res.batch_size
        for k in ("spikes", "synaptic_events", "input_events", "lost_input_events"):
            setattr(self, k, getattr(self, k) + int(res.stats.get(k, 0)))
        self.dropped += int(res.dropped)
        self.chip_seconds += res.chip_seconds
        self.device_wall_seconds += wall

    def __add__(self, other: DeviceStats) -> DeviceStats:
        return DeviceStats(**{k: getattr(self, k) + getattr(other, k) for k in asdict(self)})

    def to_dict(self, energy: EnergyModel | None = None) -> dict[str, Any]:
        """The counters, plus the energy estimate of docs/energy.md when ``energy`` is given."""
        d: dict[str, Any] = asdict(self)
        if energy is not None:
            est = energy.estimate(asdict(self), self.chip_seconds, self.samples)
            d["energy_j"] = est.total_j
            d["energy_per_sample_j"] = est.per_sample_j
            d["energy_breakdown_j"] = {"synaptic": est.synaptic_j, "spikes": est.spike_j, "static": est.static_j}
            d["energy_model"] = energy.to_dict()
        return d


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` measured.

    ``accuracy`` (a silent winner counts as wrong), ``loss`` (mean), ``silent_winner_fraction``, ``n`` samples;
    ``predictions`` (n,) class per sample (-1 = silent winner); ``decision_times`` (n,) the first output spike
    per sample in units of tau_s (``inf`` = none); ``spikes``: all first spikes of all layers (software) or all
    spikes the device recorded; ``device``: the device's counters (None in software).
    """

    accuracy: float
    loss: float
    silent_winner_fraction: float
    n: int
    predictions: np.ndarray = field(repr=False)
    decision_times: np.ndarray = field(repr=False)
    spikes: int = 0
    device: DeviceStats | None = None

    @property
    def spikes_per_sample(self) -> float:
        return self.spikes / self.n if self.n else math.nan

    @property
    def decision_time_median(self) -> float:
        """Median first output spike time over the samples that had one (units of tau_s)."""
        fin = self.decision_times[np.isfinite(self.decision_times)]
        return float(np.median(fin)) if fin.size else math.nan

    def to_dict(self) -> dict[str, float]:
        """``accuracy``, ``loss``, ``silent_winner_fraction``, ``n`` (the keys of metrics.json's evaluations)."""
        return {"accuracy": self.accuracy, "loss": self.loss, "silent_winner_fraction": self.silent_winner_fraction,
                "n": self.n}


BatchRunner = Callable[[torch.Tensor, int], tuple[torch.Tensor, int, Any]]


@contextmanager
def _software(model: Any) -> Iterator[BatchRunner]:
    was_training = model.training
    model.eval()

    def run(x: torch.Tensor, start: int) -> tuple[torch.Tensor, int, Any]:
        with torch.no_grad():
            times = model(x)
        return times[-1], sum(int(torch.isfinite(t).sum()) for t in times), None

    try:
        yield run
    finally:
        model.train(was_training)


@contextmanager
def _on_device(model: Any, device: Any, seed: int, stats: DeviceStats, calibration: Any) -> Iterator[BatchRunner]:
    from firstspike.runtime.session import Session

    own_device = isinstance(device, str)
    session = device if isinstance(device, Session) else None
    backend = None
    if session is None:
        from firstspike.runtime.calibration import on_device
        from firstspike.runtime.devices import open as open_device
        from firstspike.runtime.models import compile_model

        compiled = compile_model(model)
        backend = open_device(device) if own_device else device
        try:
            session = Session(backend, on_device(compiled, backend.info(), calibration))
        except BaseException:
            if own_device:
                backend.close()
            raise

    def run(x: torch.Tensor, start: int) -> tuple[torch.Tensor, int, Any]:
        t0 = time.perf_counter()
        res = session.run(x.numpy(), seed=seed, entry_offset=start)
        stats.add(res, time.perf_counter() - t0)
        return torch.from_numpy(res.output_times), int(res.stats.get("spikes", 0)), res

    try:
        yield run
    finally:
        if own_device and backend is not None:
            backend.close()


def evaluate(
    model: Any,
    data: Any,
    device: Any = None,
    *,
    seed: int = DEFAULT_DEVICE_SEED,
    batch_size: int = 1000,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    stats: DeviceStats | None = None,
    progress: bool = False,
    on_batch: Callable[[int, Any], None] | None = None,
    calibration: Any = None,
) -> Evaluation:
    """Accuracy, mean loss and spike statistics of ``model`` on ``data``.

    ``model``: a :class:`~firstspike.runtime.ttfs.TTFSNetwork` (or any module returning per-layer times), or, on a
    device, a compiled network. ``data``: anything :func:`~firstspike.runtime.training.data.as_spike_data` takes.
    ``device``: None = software (the closed-form model); a URI, a ``Backend`` or a
    :class:`~firstspike.runtime.session.Session` = measured on that device with noise seed ``seed`` (entry offsets
    are sample indices, so the batch size does not change a result); a model is compiled with its own fixed weight
    scales when it has them. ``stats``: device counters to add to (a fresh one is returned in ``.device``
    otherwise). ``on_batch(start, session_result)``: called after each device batch (e.g. to fingerprint events).
    ``calibration``: the chip's calibration for what is compiled here (a file or a result; None = the one the
    device reports, if any; False = none).
    """
    spike_data = as_spike_data(data, "evaluation data")
    if isinstance(spike_data, SpikeDataset) and len(spike_data) == 0:
        raise ValueError("evaluation data is empty: evaluate at least one sample")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    loss_fn = loss or TTFSLoss()
    counters = stats if stats is not None else (DeviceStats() if device is not None else None)
    runner = _software(model) if device is None else _on_device(model, device, int(seed), counters or DeviceStats(),
                                                                calibration)
    correct = silent = n = spikes = 0
    loss_sum = 0.0
    preds: list[np.ndarray] = []
    first: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_batches(spike_data, batch_size), desc="evaluate", unit="batch", leave=False,
                   disable=None)  # None: no bar when stderr is not a terminal (a log)
    with runner as run:
        for x, y in batches(spike_data, int(batch_size)):
            out, n_spikes, res = run(x, n)
            pred = predict(out)
            correct += int((pred == y).sum())
            silent += int((pred < 0).sum())
            loss_sum += float(loss_fn(out, y)) * len(y)
            spikes += n_spikes
            preds.append(pred.numpy())
            first.append(out.min(dim=1).values.numpy() if out.shape[1] else np.full(len(y), math.inf))
            if on_batch is not None and res is not None:
                on_batch(n, res)
            n += len(y)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return Evaluation(
        accuracy=correct / n if n else math.nan,
        loss=loss_sum / n if n else math.nan,
        silent_winner_fraction=silent / n if n else math.nan,
        n=n,
        predictions=np.concatenate(preds) if preds else np.empty(0, np.int64),
        decision_times=np.concatenate(first) if first else np.empty(0),
        spikes=spikes,
        device=counters if device is not None else None,
    )
