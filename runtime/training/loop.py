"""``fit``: THE training loop of firstspike, for software and for a device in the loop.

The forward pass comes from the closed-form model or from a device (:mod:`~firstspike.runtime.training.forward`);
the backward pass is always the exact TTFS gradient at the forward pass's spike times. Everything else is shared:
minibatches, input jitter, weight bumping, the optimizer and scheduler, weight averaging, validation, model
selection, checkpoints, callbacks, the progress bar and the history.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from firstspike.hal.backend import Backend
from firstspike.runtime.session import DEFAULT_MARGIN_TAU
from firstspike.runtime.training.data import SpikeDataset, as_spike_data, batches, n_batches, n_samples
from firstspike.runtime.training.evaluation import DeviceStats, Evaluation
from firstspike.runtime.training.forward import DeviceForward, SoftwareForward, check_device_delays, silent_fraction
from firstspike.runtime.training.presets import reference_optimizer
from firstspike.runtime.ttfs.layers import TTFSNetwork
from firstspike.runtime.ttfs.loss import TTFSLoss, WeightBumper, predict

__all__ = ["Callback", "EpochEnd", "History", "add_input_noise", "fit", "train_step"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SERIES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds", "silent_hidden_fraction")


@dataclass(frozen=True)
class EpochEnd:
    """What a callback sees after each epoch (``epoch`` counts from 1)."""

    epoch: int
    model: TTFSNetwork
    history: History


#: ``callback(EpochEnd) -> True`` stops training after this epoch; anything else continues
Callback = Callable[[EpochEnd], Any]


@dataclass
class History:
    """What :func:`fit` did: per-epoch series, the selected epoch and the evaluations of the kept weights.

    ``series[name]`` (also ``history[name]``): one value per epoch: ``train_loss``, ``train_accuracy``,
    ``val_loss``, ``val_accuracy`` (NaN without validation data), ``lr``, ``epoch_seconds``,
    ``silent_hidden_fraction``; on a device also ``changed_weights_per_step``; with weight averaging
    ``val_accuracy_raw`` (the raw weights' accuracy). ``selected_epoch``: the epoch whose weights the model holds
    now. ``val``/``test``: evaluations of those weights; ``final_val``/``final_test``: of the last epoch's.
    ``device``: identity and fixed scales when trained on a device (None in software); ``device_stats``: its
    counters (``training``, ``evaluation``, ``total``); ``session``: the device session holding the kept weights
    (usable after :func:`fit` when a ``Backend`` was passed, not a URI).
    """

    series: dict[str, list[float]]
    epochs_requested: int
    epochs_run: int = 0
    selected: str = "best-val"
    selected_epoch: int = 0
    weight_bumps: int = 0
    samples_seen: int = 0
    train_seconds: float = 0.0
    val: Evaluation | None = None
    test: Evaluation | None = None
    final_val: Evaluation | None = None
    final_test: Evaluation | None = None
    device: dict[str, Any] | None = None
    device_stats: dict[str, DeviceStats] | None = None
    session: Any = field(default=None, repr=False)

    def __getitem__(self, name: str) -> list[float]:
        return self.series[name]

    @property
    def train_samples_per_s(self) -> float:
        """Training samples per second of training-loop time (forward, backward, optimizer, bumping, device runs;
        not validation)."""
        return self.samples_seen / self.train_seconds if self.train_seconds > 0 else math.nan

    def summary(self) -> dict[str, Any]:
        """The headline numbers as plain data."""
        def acc(ev: Evaluation | None) -> float:
            return ev.accuracy if ev is not None else math.nan

        return {"epochs": self.epochs_run, "selected": self.selected, "selected_epoch": self.selected_epoch,
                "val_accuracy": acc(self.val), "test_accuracy": acc(self.test),
                "final_val_accuracy": acc(self.final_val), "final_test_accuracy": acc(self.final_test),
                "weight_bumps": self.weight_bumps, "train_samples_per_s": self.train_samples_per_s}


def add_input_noise(times: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian jitter on input spike times (units of tau_s); negative times are reflected (as the reference
    does)."""
    if std <= 0:
        return times
    noise = torch.randn(times.shape, dtype=times.dtype, generator=generator)
    return (times + noise * std).abs()


def train_step(
    net: TTFSNetwork,
    optimizer: torch.optim.Optimizer,
    bumper: WeightBumper | None,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: LossFn,
    measured_times: list[torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor | None, list[torch.Tensor], int | None]:
    """One minibatch: forward (at ``measured_times`` if given), weight bumping, or loss + backward + step (then
    the model's delays are clamped to their range).

    Returns ``(loss or None if bumped, every layer's spike times (detached), bumped layer or None)``.
    """
    times = net(inputs, measured_times)
    bumped = bumper(net.weights(), times) if bumper is not None else None
    loss = None
    if bumped is None:
        loss = loss_fn(times[-1], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        net.constrain_()  # delays back into their range (no-op without delays)
        loss = loss.detach()
    return loss, [t.detach() for t in times], bumped


class _Average:
    """Exponential moving average of the float weights and delays (decay per training step)."""

    def __init__(self, net: TTFSNetwork, decay: float) -> None:
        self.decay = float(decay)
        self.weights = net.snapshot()

    def update(self, net: TTFSNetwork) -> None:
        with torch.no_grad():
            for a, param in zip(self.weights, net.trained_parameters(), strict=True):
                a.mul_(self.decay).add_(param, alpha=1.0 - self.decay)


def _default_bumper(net: TTFSNetwork) -> WeightBumper:
    # the reference's yin-yang tolerances, generalised: hidden layers may be 30 % silent, outputs never
    return WeightBumper([0.3] * (len(net.layers) - 1) + [0.0])


def _open(device: Any) -> tuple[Backend, bool]:
    if isinstance(device, Backend):
        return device, False
    if isinstance(device, str):
        from firstspike.runtime.devices import open as open_device

        return open_device(device), True
    raise TypeError(f"device must be a URI such as 'sim://' or a Backend, not {type(device).__name__}")


def fit(
    model: TTFSNetwork,
    train: Any,
    val: Any = None,
    *,
    epochs: int,
    test: Any = None,
    device: Backend | str | None = None,
    batch_size: int = 150,
    lr: float = 0.005,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    loss: LossFn | None = None,
    bumping: WeightBumper | str | None = "default",
    input_noise: float = 0.0,
    select: str | None = None,
    ema: float | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
    eval_batch_size: int = 1000,
    max_seconds: float | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    headroom: float = 1.5,
    max_weights: Sequence[float] | None = None,
    margin_tau: float = DEFAULT_MARGIN_TAU,
    calibration: Any = None,
    hw_aware: Any = None,
    desc: str | None = None,
    delay_lr: float | None = None,
) -> History:
    """Train ``model`` with exact TTFS gradients; return the :class:`History`. The model is trained in place and
    holds the selected weights afterwards.

    Data (``train``, ``val``, ``test``): a :class:`~firstspike.runtime.training.data.SpikeDataset`, a pair
    ``(times, labels)`` (times in units of tau_s, ``inf`` = no spike), a torch ``Dataset`` of ``(times, label)``
    or a ``DataLoader`` (iterated as given; otherwise minibatches of ``batch_size`` are drawn in a random order
    from ``generator``, default ``torch.Generator().manual_seed(seed)``).

    ``device``: None = the forward pass of the closed-form model; a URI or a ``Backend`` = measured on that device
    (a URI is opened and closed here): fixed weight scales (``headroom`` x the initial largest |w| per layer, or
    ``max_weights``), only changed synapses uploaded, validation and test measured on the device too;
    ``calibration``: the chip's calibration (a file from ``firstspike calibrate`` or a result; None = the one the
    device reports, if any; False = none).

    ``optimizer``/``scheduler``: yours; default Adam(``lr``) with StepLR(20 epochs, 0.95), the reference's; a
    scheduler is stepped once per epoch (``ReduceLROnPlateau`` with the validation loss). A model with delays
    (``TTFSNetwork(..., delays=...)``) trains them like the weights: the default optimizer gives them their own
    parameter group with ``delay_lr`` (default ``lr``), and after every optimizer step they are clamped to their
    range (``model.constrain_()``). With a device in the loop only axonal delays train (the chip's route delay
    lines: quantised to 8 ticks, uploaded in the same diff as the weights); synaptic and dendritic ones train in
    software.
    ``loss``: default :class:`~firstspike.runtime.ttfs.loss.TTFSLoss` (the paper's). ``bumping``: weight bumping for
    silent neurons ("default": hidden layers 30 %, outputs 0 % silent allowed; None = off). ``input_noise``:
    Gaussian jitter of the input times (std, tau_s). ``select``: keep the weights of the epoch with the best
    validation accuracy (``"best-val"``, the default with validation data) or of the last epoch (``"final"``).
    ``ema``: validate, select and keep an exponential moving average of the weights (decay per step, e.g. 0.99);
    training follows the raw weights. ``max_seconds``: stop before an epoch that would end after this wall-time
    budget. ``callbacks``: called after each epoch with an :class:`EpochEnd`; returning True stops.
    ``checkpoint_dir``: ``last.pt`` after every epoch and ``best.pt`` at every new best (models,
    :meth:`TTFSNetwork.load`).
    ``progress``: a tqdm bar on stderr, else one line per epoch through ``log`` (default: stderr).

    ``hw_aware``: hardware-aware training in software, for the chips a
    :class:`~firstspike.hal.noise_model.DeviceNoiseModel` describes (``fs.noise_model(device)`` reads the one a
    device publishes): each minibatch's forward pass runs on a freshly sampled virtual chip (6-bit weights,
    synapse, gain and threshold mismatch, trial-to-trial threshold noise, input jitter and loss;
    :mod:`~firstspike.runtime.training.hw_aware`) and the exact gradient is taken at its times; validation and test
    run on a fixed set of virtual chips.
    """
    if int(epochs) < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if ema is not None and not 0.0 < float(ema) < 1.0:
        raise ValueError(f"ema (decay per step) must be in (0, 1), got {ema!r}")
    train_data = as_spike_data(train, "training data")
    val_data = as_spike_data(val, "validation data") if val is not None else None
    test_data = as_spike_data(test, "test data") if test is not None else None
    if hw_aware is not None and device is not None:
        raise ValueError("hw_aware samples virtual chips in software; with a device in the loop the device itself is "
                         "the chip: give one of them")
    if hw_aware is not None:
        from firstspike.hal.noise_model import DeviceNoiseModel

        if not isinstance(hw_aware, DeviceNoiseModel):
            raise TypeError("hw_aware must be a DeviceNoiseModel (fs.noise_model(device)), not "
                            f"{type(hw_aware).__name__}")
    if n_samples(train_data) == 0:
        raise ValueError("training data is empty: give at least one sample")
    for name, d in (("validation", val_data), ("test", test_data)):
        if isinstance(d, SpikeDataset) and len(d) == 0:
            raise ValueError(f"{name} data is empty: give at least one sample or none at all")
    selected = select or ("best-val" if val_data is not None else "final")
    if selected not in ("best-val", "final"):
        raise ValueError(f"select must be 'best-val' or 'final', got {select!r}")
    if selected == "best-val" and val_data is None:
        raise ValueError("select='best-val' needs validation data (val=...)")
    if device is not None:
        check_device_delays(model)
    if hw_aware is not None and model.has_delays:
        raise ValueError("hardware-aware training samples virtual chips without delay lines: train a model with "
                         "delays in plain software (hw_aware=None)")
    if delay_lr is not None and not (math.isfinite(delay_lr) and delay_lr >= 0):
        raise ValueError(f"delay_lr must be a finite number >= 0, got {delay_lr!r}")
    for d in (train_data, val_data, test_data):
        if isinstance(d, SpikeDataset) and d.n_inputs != model.n_inputs:
            raise ValueError(f"the model has {model.n_inputs} inputs; the data has {d.n_inputs} per sample")

    say = log or (lambda msg: print(msg, file=sys.stderr))
    loss_fn = loss or TTFSLoss()
    gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    n_epochs = int(epochs)
    backend, own_backend = _open(device) if device is not None else (None, False)
    try:
        forward: SoftwareForward | DeviceForward
        if backend is None:
            chips = None
            if hw_aware is not None:
                from firstspike.runtime.training.hw_aware import SampledChip

                # a generator of its own, so that shuffling and jitter draw the same numbers as without chips
                chips = SampledChip(model, hw_aware, torch.Generator().manual_seed(int(seed) + 0x5EED))
            forward = SoftwareForward(eval_batch_size, loss_fn, chips)
        else:
            forward = DeviceForward(backend, model, seed=int(seed), eval_batch_size=eval_batch_size, loss=loss_fn,
                                    headroom=headroom, max_weights=max_weights, margin_tau=margin_tau,
                                    calibration=calibration, log=say)
        model.train()
        if optimizer is None:
            optimizer, default_sched = reference_optimizer(model, lr, 20, 0.95, delay_lr)
            scheduler = default_sched if scheduler is None else scheduler
        bumper = _default_bumper(model) if bumping == "default" else bumping
        if isinstance(bumper, str):
            raise ValueError(f"bumping must be 'default', a WeightBumper or None, got {bumping!r}")
        history = History({k: [] for k in SERIES}, n_epochs, selected=selected)
        if forward.on_device:
            history.series["changed_weights_per_step"] = []
        average = _Average(model, float(ema)) if ema is not None else None
        if average is not None:
            history.series["val_accuracy_raw"] = []
        loop = _Loop(model, forward, optimizer, scheduler, bumper, loss_fn, average, history, gen, say)
        loop.run(train_data, val_data, batch_size=int(batch_size), input_noise=float(input_noise),
                 max_seconds=max_seconds, callbacks=callbacks, checkpoint_dir=checkpoint_dir, progress=progress,
                 desc=desc or ("train@device" if forward.on_device else "train"))
        _select(model, forward, history, average, loop.best_state, val_data, test_data)
        if isinstance(forward, DeviceForward):
            history.device = forward.description()
            history.device_stats = forward.stats()
            history.session = None if own_backend else forward.session
            model.metadata["trained_on"] = "device"
        return history
    finally:
        if own_backend and backend is not None:
            backend.close()


class _Loop:
    """The epochs of one :func:`fit` call (state shared by the epoch and the batch steps)."""

    def __init__(self, model: TTFSNetwork, forward: SoftwareForward | DeviceForward, optimizer: torch.optim.Optimizer,
                 scheduler: Any, bumper: WeightBumper | None, loss_fn: LossFn, average: _Average | None,
                 history: History, gen: torch.Generator, say: Callable[[str], None]) -> None:
        self.model, self.forward, self.optimizer, self.scheduler = model, forward, optimizer, scheduler
        self.bumper, self.loss_fn, self.average, self.history, self.gen, self.say = (
            bumper, loss_fn, average, history, gen, say)
        self.best_val = -1.0
        self.best_state = model.snapshot()

    def run(self, train: Any, val: Any, *, batch_size: int, input_noise: float, max_seconds: float | None,
            callbacks: Sequence[Callback], checkpoint_dir: str | Path | None, progress: bool, desc: str) -> None:
        h = self.history
        n_train = n_samples(train)
        per_epoch = n_batches(train, batch_size)
        bar = None
        if progress and h.epochs_requested and per_epoch:
            from tqdm import tqdm

            bar = tqdm(total=h.epochs_requested * per_epoch, desc=desc, unit="batch", dynamic_ncols=True,
                       file=sys.stderr)
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if ckpt is not None:
            ckpt.mkdir(parents=True, exist_ok=True)
        t_start = time.perf_counter()
        val_acc = math.nan
        try:
            for epoch in range(h.epochs_requested):
                t0 = time.perf_counter()
                order = None if isinstance(train, torch.utils.data.DataLoader) else torch.randperm(
                    n_train, generator=self.gen)
                stats = self._epoch(epoch, batches(train, batch_size, order), input_noise, bar, val_acc, per_epoch)
                dt = time.perf_counter() - t0
                h.train_seconds += dt
                h.samples_seen += stats["samples"]
                h.epochs_run += 1
                h.series["lr"].append(self.optimizer.param_groups[0]["lr"])
                plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
                if self.scheduler is not None and not plateau:
                    with warnings.catch_warnings():
                        # an epoch of weight bumping takes no optimizer step; the schedule counts epochs anyway
                        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                        self.scheduler.step()
                ev = self._validate(val)
                if self.scheduler is not None and plateau:
                    self.scheduler.step(ev.loss if ev is not None else stats["loss"])
                val_acc = ev.accuracy if ev is not None else math.nan
                n_loss = stats["n_loss"]
                h.series["train_loss"].append(stats["loss_sum"] / n_loss if n_loss else math.nan)
                h.series["train_accuracy"].append(stats["correct"] / stats["samples"] if stats["samples"] else math.nan)
                h.series["val_loss"].append(ev.loss if ev is not None else math.nan)
                h.series["val_accuracy"].append(val_acc)
                h.series["epoch_seconds"].append(dt)
                h.series["silent_hidden_fraction"].append(stats["silent_hidden"])
                if "changed_weights_per_step" in h.series:
                    h.series["changed_weights_per_step"].append(stats["changed"] / max(stats["uploads"], 1))
                if ev is not None and val_acc >= self.best_val:  # ties: keep the later epoch
                    self.best_val, h.selected_epoch = val_acc, epoch + 1
                    self.best_state = (self.model.snapshot() if self.average is None
                                       else [a.clone() for a in self.average.weights])
                    if ckpt is not None:
                        self._save(ckpt / "best.pt", self.best_state)
                if ckpt is not None:
                    self._save(ckpt / "last.pt", self.model.snapshot())
                if bar is None:
                    self.say(f"epoch {epoch + 1}/{h.epochs_requested}: loss {h.series['train_loss'][-1]:.4f} "
                             f"train {100 * h.series['train_accuracy'][-1]:.2f}% val {100 * val_acc:.2f}% "
                             f"({stats['samples'] / dt:.0f} samples/s)")
                stop = any(cb(EpochEnd(epoch + 1, self.model, h)) is True for cb in callbacks)
                if stop:
                    self.say(f"stopping after epoch {epoch + 1}: a callback asked to")
                    break
                if max_seconds is not None and epoch + 1 < h.epochs_requested:
                    elapsed = time.perf_counter() - t_start
                    # stop unless one more epoch (as long as the last one, with its validation) fits the budget
                    if elapsed + (time.perf_counter() - t0) > max_seconds:
                        self.say(f"stopping after epoch {epoch + 1}: another epoch would exceed the wall-time budget "
                                 f"of {max_seconds:.0f} s ({elapsed:.0f} s used)")
                        break
        finally:
            if bar is not None:
                bar.close()
        h.weight_bumps = self.bumper.count if self.bumper is not None else 0

    def _epoch(self, epoch: int, minibatches: Iterator[tuple[torch.Tensor, torch.Tensor]], input_noise: float,
               bar: Any, val_acc: float, per_epoch: int) -> dict[str, Any]:
        loss_sum, n_loss, correct, samples, silent, n_silent, changed = 0.0, 0, 0, 0, 0.0, 0, 0
        uploads0 = self.forward.session.uploads.diffs if self.forward.session is not None else 0
        t0 = time.perf_counter()
        for b, (x_batch, y) in enumerate(minibatches):
            x = add_input_noise(x_batch, input_noise, self.gen)
            x_seen, measured = self.forward.train_forward(x, epoch, b)
            loss, times, _ = train_step(self.model, self.optimizer, self.bumper, x_seen, y, self.loss_fn, measured)
            self.forward.constrain(self.model)
            if self.average is not None:
                self.average.update(self.model)
            changed += self.forward.sync(self.model)
            if loss is not None:
                loss_sum += float(loss)
                n_loss += 1
            correct += int((predict(times[-1]) == y).sum())
            samples += len(y)
            fraction = silent_fraction(times)
            if not math.isnan(fraction):
                silent += fraction
                n_silent += 1
            if bar is not None:
                bar.update(1)
                if b % 10 == 9 or b == per_epoch - 1:
                    elapsed = time.perf_counter() - t0
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(n_loss, 1):.4f}",
                                    acc=f"{100 * correct / max(samples, 1):.1f}%",
                                    val="-" if math.isnan(val_acc) else f"{100 * val_acc:.1f}%",
                                    sps=f"{samples / max(elapsed, 1e-9):.0f}", refresh=False)
        uploads = (self.forward.session.uploads.diffs - uploads0) if self.forward.session is not None else 0
        return {"loss_sum": loss_sum, "n_loss": n_loss, "correct": correct, "samples": samples,
                "silent_hidden": silent / per_epoch if n_silent and per_epoch else math.nan,
                "changed": changed, "uploads": uploads}

    def _validate(self, val: Any) -> Evaluation | None:
        if val is None:
            return None
        ev = self.forward.evaluate(self.model, val, "val")
        if self.average is not None:  # validate the averaged weights, then carry on training the raw ones
            self.history.series["val_accuracy_raw"].append(ev.accuracy)
            raw = self.model.snapshot()
            self.forward.load_weights(self.model, self.average.weights)
            ev = self.forward.evaluate(self.model, val, "val")
            self.forward.load_weights(self.model, raw)
        return ev

    def _save(self, path: Path, params: list[torch.Tensor]) -> None:
        torch.save(self.model.to_dict(params), path)


def _select(model: TTFSNetwork, forward: SoftwareForward | DeviceForward, history: History,
            average: _Average | None, best_state: list[torch.Tensor], val: Any, test: Any) -> None:
    """Evaluate the last epoch's weights, then load and evaluate the selected ones (only if they differ)."""
    if average is not None:  # the "final epoch" model is the average at the end
        forward.load_weights(model, average.weights)
    history.final_test = forward.evaluate(model, test, "test") if test is not None else None
    history.final_val = forward.evaluate(model, val, "val") if val is not None else None
    if history.selected == "best-val" and history.epochs_run and history.selected_epoch != history.epochs_run:
        forward.load_weights(model, best_state)
        history.test = forward.evaluate(model, test, "test") if test is not None else None
        history.val = forward.evaluate(model, val, "val") if val is not None else None
    else:
        history.selected_epoch = history.epochs_run
        history.test, history.val = history.final_test, history.final_val
