"""A built-in task trained end to end: the preset's data, network and hyperparameters through :func:`fit`, then
``model.pt``, ``metrics.json``, ``training.png`` (and ``network.fsn`` with a device) in an output folder.
``firstspike train`` and sweeps call :func:`train_task`."""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import torch

from firstspike.hal.backend import Backend
from firstspike.runtime.session import DEFAULT_MARGIN_TAU
from firstspike.runtime.training.datasets import load_dataset
from firstspike.runtime.training.energy import EnergyModel
from firstspike.runtime.training.evaluation import DeviceStats, Evaluation, evaluate
from firstspike.runtime.training.forward import EVAL_SEEDS, compile_for_device
from firstspike.runtime.training.loop import History, fit
from firstspike.runtime.training.perf import configure_threads
from firstspike.runtime.training.presets import (
    DEFAULT_HEADROOM,
    DEVICE_HEADROOM,
    TaskConfig,
    build_network,
    device_task,
    make_optimizer,
    with_delays,
    with_hidden,
)
from firstspike.runtime.ttfs.layers import TTFSNetwork

__all__ = ["check_output_dir", "train_task", "training_metrics"]


def check_output_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` (and parents) and check that files can be written there, BEFORE training, so a long run
    never ends in an error that loses its model."""
    p = Path(out_dir)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".firstspike-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write the output folder {p}: {e.strerror or e}") from None
    return p


def training_metrics(cfg: TaskConfig, history: History, *, seed: int, n_threads: int, sizes: tuple[int, int, int],
                     t_start: float) -> dict[str, Any]:
    """The metrics.json content of a task run (software or device in the loop); times in wall-clock seconds; an
    evaluation that was not made (no validation samples) is NaN."""
    def get(ev: Evaluation | None, key: str) -> float:
        return math.nan if ev is None else float(getattr(ev, key))

    series = history.series
    epochs_run = history.epochs_run
    return {
        "task": cfg.name,
        "seed": int(seed),
        "epochs": epochs_run,
        "test_accuracy": get(history.test, "accuracy"),
        "val_accuracy": get(history.val, "accuracy"),
        "test_loss": get(history.test, "loss"),
        "val_loss": get(history.val, "loss"),
        "test_silent_winner_fraction": get(history.test, "silent_winner_fraction"),
        "selected": history.selected,
        "selected_epoch": history.selected_epoch,
        "final_test_accuracy": get(history.final_test, "accuracy"),
        "final_val_accuracy": get(history.final_val, "accuracy"),
        "final_train_accuracy": series["train_accuracy"][-1] if epochs_run else math.nan,
        "best_val_accuracy": max(series["val_accuracy"]) if epochs_run else math.nan,
        "train_samples_per_s": history.train_samples_per_s,
        "train_seconds": history.train_seconds,
        "wall_seconds": time.perf_counter() - t_start,
        "weight_bumps": history.weight_bumps,
        "train_size": sizes[0],
        "val_size": sizes[1],
        "test_size": sizes[2],
        "threads": n_threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "config": {k: list(v) if isinstance(v, tuple) else v
                   for k, v in asdict(replace(cfg, epochs=history.epochs_requested)).items()},
        "history": series,
    }


def _test_run(session: Any, test: Any, cfg: TaskConfig) -> dict[str, Any]:
    """Per-classification chip time, latency and energy of the kept network on the test set (one extra run)."""
    stats = DeviceStats()
    ev: Evaluation = evaluate(None, test, session, seed=EVAL_SEEDS["test"], batch_size=cfg.eval_batch_size,
                              loss=cfg.loss(), stats=stats)
    est = EnergyModel().estimate(asdict(stats), stats.chip_seconds, stats.samples)
    n = max(stats.samples, 1)
    return {
        "samples": stats.samples,
        "spikes_per_sample": stats.spikes / n,
        "synaptic_events_per_sample": stats.synaptic_events / n,
        "chip_seconds_per_sample": stats.chip_seconds / n,
        "decision_latency_tau_median": ev.decision_time_median,
        "energy_per_sample_j": est.per_sample_j,
        "dropped": stats.dropped,
    }


def _initial_model(init_model: TTFSNetwork | str | Path, cfg: TaskConfig) -> TTFSNetwork:
    """The model to start from, checked against the task's layout before any data is loaded."""
    from firstspike.runtime.models import load_model

    net = init_model if isinstance(init_model, TTFSNetwork) else load_model(init_model)
    if net.n_inputs != cfg.n_inputs or tuple(net.layer_sizes) != tuple(cfg.layer_sizes):
        raise ValueError(f"init model layout {net.n_inputs}->{net.layer_sizes} does not match "
                         f"{cfg.name}: {cfg.n_inputs}->{list(cfg.layer_sizes)}")
    net.metadata.setdefault("task", cfg.name)
    return net


def train_task(
    task: str | TaskConfig,
    *,
    device: Backend | None = None,
    epochs: int | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    hidden: int | None = None,
    layer_sizes: Sequence[int] | None = None,
    train_size: int | None = None,
    eval_size: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    mnist_dir: str | Path | None = None,
    select: str = "best-val",
    ema: float | None = None,
    lr: float | None = None,
    init_model: TTFSNetwork | str | Path | None = None,
    headroom: float | None = None,
    max_weights: Sequence[float] | None = None,
    margin_tau: float = DEFAULT_MARGIN_TAU,
    max_seconds: float | None = None,
    device_uri: str | None = None,
    calibration: Any = None,
    hw_aware: Any = None,
    energy: EnergyModel | None = None,
    log: Callable[[str], None] | None = None,
    delays: Literal["none", "axonal", "synaptic", "dendritic"] | None = None,
    delay_lr: float | None = None,
    delay_max: float | None = None,
) -> dict[str, Any]:
    """Train a built-in task (``yinyang``, ``mnist16`` or a :class:`TaskConfig`) with its reference
    hyperparameters, in software or with ``device`` in the loop; return the metrics dict (also written to
    ``out_dir/metrics.json`` with ``model.pt`` and ``training.png``, plus ``network.fsn`` with a device).

    ``hidden``: neurons of the hidden layer (default: the reference's in software, the chip layout in the loop,
    246 for mnist16); ``layer_sizes``: the whole layout. ``train_size``/``eval_size``: the first N samples of the
    splits. ``init_model``: start from these weights (a model or a ``model.pt``; fine-tuning) instead of the
    reference initialisation. ``lr``: Adam's learning rate instead of the task's. Device options (``headroom``,
    ``max_weights``, ``margin_tau``) as in :func:`fit`; ``headroom`` defaults per task (2.0 for yin-yang, else
    1.5). ``select``, ``ema``, ``max_seconds``, ``calibration`` as in :func:`fit` (the saved ``network.fsn`` is
    the uncalibrated artifact: calibrate it for the chip it runs on). ``hw_aware``: train in software on virtual
    chips of this device (a URI, a Backend or a DeviceNoiseModel; with ``calibration``, of its calibrated chips).

    ``delays``: train transmission delays of this kind in every layer (``axonal``, ``synaptic``, ``dendritic``;
    with a device in the loop axonal only) with the task's delay preset
    (:func:`~firstspike.runtime.training.presets.with_delays`); ``delay_lr``, ``delay_max`` (tau_s) override the
    preset's.
    """
    cfg = with_delays(task, delays)
    if device is not None and cfg.delays not in ("none", "axonal"):
        raise ValueError(f"{cfg.delays} delays cannot be trained with a device in the loop: the chip's delay lines "
                         "sit on the routes, one per source (axonal); train them in software (without a device)")
    if delay_lr is not None:
        cfg = replace(cfg, delay_lr=float(delay_lr))
    if delay_max is not None:
        cfg = replace(cfg, delay_max=float(delay_max))
    if layer_sizes is None and hidden is not None:
        layer_sizes = with_hidden(cfg, hidden).layer_sizes
    cfg = device_task(cfg, layer_sizes) if device is not None else (
        replace(cfg, layer_sizes=tuple(int(n) for n in layer_sizes)) if layer_sizes is not None else cfg)
    if lr is not None:
        cfg = replace(cfg, lr=float(lr))
    n_epochs = cfg.epochs if epochs is None else int(epochs)
    if n_epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {n_epochs}")
    for name, size in (("train_size", train_size), ("eval_size", eval_size)):
        if size is not None and int(size) < 1:
            raise ValueError(f"{name} must be at least 1 sample, got {size}")
    run_dir = check_output_dir(out_dir) if out_dir is not None else None
    init = _initial_model(init_model, cfg) if init_model is not None else None
    energy = energy or EnergyModel()
    n_threads = configure_threads(cfg.threads if threads is None else threads)
    say = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()

    train = load_dataset(cfg.name, "train", mnist_dir=mnist_dir).subset(train_size)
    val = load_dataset(cfg.name, "val", mnist_dir=mnist_dir).subset(eval_size)
    test = load_dataset(cfg.name, "test", mnist_dir=mnist_dir).subset(eval_size)
    sizes = f"train {len(train)}, val {len(val)}, test {len(test)}"
    if device is None:
        say(f"{cfg.name}: {sizes} samples; {n_epochs} epochs, seed {seed}, {n_threads} thread(s)")
    else:
        info = device.info()
        say(f"{cfg.name} in the loop on {device_uri or info.model} (serial {info.serial}): {sizes}; {n_epochs} "
            f"epochs, seed {seed}, {n_threads} thread(s)")

    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    net = init if init is not None else build_network(cfg, gen)
    noise = None
    if hw_aware is not None:
        from firstspike.runtime.training.hw_aware import noise_model_for

        noise = noise_model_for(hw_aware, calibration)
        say(f"hardware-aware: training on virtual chips of {hw_aware if isinstance(hw_aware, str) else 'the model'}"
            + (f", calibrated ({calibration})" if calibration is not None else "") + ": " + ", ".join(
                f"{k} {v:g}" for k, v in noise.to_dict().items() if k != "format" and v))
    if len(val) == 0 and select == "best-val":
        say(f"{cfg.name}: no validation samples; keeping the final epoch's weights")
        select = "final"
    optimizer, scheduler = make_optimizer(net, cfg)
    if headroom is None:
        headroom = DEVICE_HEADROOM.get(cfg.name, DEFAULT_HEADROOM)
    history = fit(
        net, train, val if len(val) else None, test=test, epochs=n_epochs, device=device,
        batch_size=cfg.batch_size, optimizer=optimizer, scheduler=scheduler, loss=cfg.loss(), bumping=cfg.bumper(),
        input_noise=cfg.input_noise, select=select, ema=ema, generator=gen, seed=seed,
        eval_batch_size=cfg.eval_batch_size, max_seconds=max_seconds, progress=progress, log=say, headroom=headroom,
        max_weights=max_weights, margin_tau=margin_tau, calibration=calibration if device is not None else None,
        hw_aware=noise, desc=f"{cfg.name}@device" if device is not None else cfg.name,
    )
    metrics = training_metrics(cfg, history, seed=seed, n_threads=n_threads, sizes=(len(train), len(val), len(test)),
                               t_start=t_start)
    n_weights = sum(w.numel() for w in net.weights())
    n_delays = sum(d.numel() for d in net.delays())
    metrics["delays"] = cfg.delays
    metrics["parameters"] = {"weights": n_weights, "delays": n_delays, "total": n_weights + n_delays}
    if history.device is not None and history.device_stats is not None:
        stats = history.device_stats
        metrics.update({
            "mode": "in-the-loop",
            "ema": ema,
            "epochs_requested": n_epochs,
            "init_model": None if init_model is None or isinstance(init_model, TTFSNetwork) else str(init_model),
            "device": {"uri": device_uri, **history.device, "training": stats["training"].to_dict(energy),
                       "evaluation": stats["evaluation"].to_dict(energy), "total": stats["total"].to_dict(energy),
                       "test_run": _test_run(history.session, test, cfg)},
        })
    else:
        metrics.update({"mode": "hardware-aware" if noise is not None else "software", "ema": ema})
    if noise is not None:
        metrics["hw_aware"] = {"device": hw_aware if isinstance(hw_aware, str) else None,
                               "calibration": None if calibration is None else str(calibration),
                               "noise_model": noise.to_dict()}
    net.metadata.update({
        "seed": int(seed),
        "epochs": history.epochs_run,
        "selected_epoch": history.selected_epoch,
        "test_accuracy": metrics["test_accuracy"],
        "val_accuracy": metrics["val_accuracy"],
    })
    if history.device is not None:
        net.metadata.update({"trained_on": "device", "device_uri": device_uri,
                             "device_weight_scale": list(history.device["weight_scales"])})
    if run_dir is not None:
        net.save(run_dir / "model.pt")
        if history.device is not None:
            compile_for_device(net, history.device["weight_scales"]).save(run_dir / "network.fsn")
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=True) + "\n")
        from firstspike.runtime.plots import plot_training

        where = " in the loop" if device is not None else ""
        title = f"{cfg.name}{where}, seed {seed}: test {100 * metrics['test_accuracy']:.2f}%"
        plot_training(history.series, metrics["test_accuracy"], run_dir / "training.png",
                      title + (" (device)" if device is not None else ""), test_epoch=history.selected_epoch)
    mode = " (device in the loop)" if device is not None else ""
    say(f"{cfg.name} seed {seed}{mode}: test accuracy {100 * metrics['test_accuracy']:.2f}% "
        f"(epoch {history.selected_epoch}, {history.selected}), validation {100 * metrics['val_accuracy']:.2f}%; "
        f"final epoch: test {100 * metrics['final_test_accuracy']:.2f}%; {metrics['train_samples_per_s']:.0f} "
        "train samples/s")
    return metrics
