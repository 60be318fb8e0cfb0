"""Training with the device in the loop: exact TTFS gradients at the spike times the device returns.

Each training step (as in Göltz, Kriener et al. 2021, hardware-in-the-loop):

1. the current float weights are re-quantised with the FIXED per-layer weight steps of the compiled artifact
   and only the changed synapse weights are sent to the device
   (:meth:`firstspike.runtime.session.Session.update_weights`);
2. the minibatch runs on the device (any URI: ``sim://``, ``grpc://...``, a pool, ``serial://...``) with a
   per-step noise seed; the first spike of every neuron of every layer is read back in model units
   (silent -> ``inf``);
3. the loss and its gradient are evaluated AT THE MEASURED TIMES with the current float weights
   (:class:`firstspike.runtime.ttfs.TTFSNetwork` with ``measured_times``: the implicit-function gradient needs only
   times and weights); weight bumping replaces the optimizer step when too many neurons were silent;
4. Adam step (StepLR per epoch), then the weights are clamped to what the fixed scale can represent
   (+-63 steps) and quantised again in the next step's upload.

Placement and the weight scales never change during a run, so every update is a small config diff. Validation
and test accuracy are measured on the device too (fixed noise seeds, so runs are reproducible).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from firstspike.compiler import CompileOptions, compile
from firstspike.compiler.artifact import CompiledNetwork
from firstspike.hal.backend import Backend
from firstspike.hal.chip import WEIGHT_MAX
from firstspike.runtime.session import DEFAULT_MARGIN_TAU, Session
from firstspike.runtime.training.datasets import SpikeDataset, load_dataset
from firstspike.runtime.training.energy import EnergyModel
from firstspike.runtime.training.perf import configure_threads, tune_malloc
from firstspike.runtime.training.trainer import (
    TaskConfig,
    add_input_noise,
    build_network,
    get_task,
    make_optimizer,
    train_step,
    training_metrics,
    with_hidden,
)
from firstspike.runtime.ttfs.export import to_network
from firstspike.runtime.ttfs.layers import TTFSNetwork
from firstspike.runtime.ttfs.loss import WeightBumper, predict, ttfs_loss

__all__ = [
    "DEFAULT_HEADROOM",
    "DEVICE_HEADROOM",
    "DEVICE_LAYER_SIZES",
    "EVAL_SEEDS",
    "DeviceStats",
    "compile_for_device",
    "device_task",
    "evaluate_on_device",
    "fixed_weight_scales",
    "train_in_the_loop",
]

#: chip-sized layouts used in the loop (the paper's chip run of MNIST 16x16 used 246 hidden neurons, the most
#: that fit with two merged columns per hidden neuron next to the 10 outputs)
DEVICE_LAYER_SIZES: dict[str, tuple[int, ...]] = {"mnist16": (246, 10)}

#: default largest representable |weight| per layer = this factor x the largest |weight| at the start
DEFAULT_HEADROOM = 1.5

#: per-task headroom where a wider range measured better in the loop (docs/results.md): yin-yang's output
#: weights grow to ~6 in software, beyond 1.5 x their initial largest value (~4.4); with 2 x the selected model
#: was better in 5 of 6 seeds (+0.87 points on average, one tie), with 2.5 x (coarser steps) worse in all 3 tried
DEVICE_HEADROOM: dict[str, float] = {"yinyang": 2.0}

#: noise seeds of the evaluation runs (fixed so that accuracies are reproducible; distinct from training seeds)
EVAL_SEEDS = {"val": 1, "test": 2, "train": 3}


def device_task(task: str | TaskConfig, layer_sizes: Sequence[int] | None = None) -> TaskConfig:
    """The task config used in the loop: the software task, with the chip-sized layout of
    :data:`DEVICE_LAYER_SIZES` (or ``layer_sizes``) when one is defined."""
    cfg = get_task(task)
    sizes = tuple(layer_sizes) if layer_sizes is not None else DEVICE_LAYER_SIZES.get(cfg.name)
    if sizes is not None and tuple(sizes) != cfg.layer_sizes:
        if len(sizes) != len(cfg.layer_sizes):
            raise ValueError(f"{cfg.name}: {len(sizes)} layer sizes given, the task has {len(cfg.layer_sizes)} layers")
        cfg = replace(cfg, layer_sizes=tuple(int(n) for n in sizes))
    return cfg


def fixed_weight_scales(net: TTFSNetwork, headroom: float = DEFAULT_HEADROOM,
                        max_weights: Sequence[float] | None = None) -> tuple[float, ...]:
    """Per-layer digital steps per model weight unit: ``63 / w_max`` with ``w_max`` = ``max_weights[l]`` or
    ``headroom`` x the layer's largest |weight| now. Fixed for the whole run."""
    out = []
    for k, weight in enumerate(net.weights()):
        w_max = float(max_weights[k]) if max_weights is not None else headroom * float(weight.detach().abs().max())
        if not (math.isfinite(w_max) and w_max > 0):
            raise ValueError(f"layer {k}: largest representable weight must be > 0, got {w_max}")
        out.append(WEIGHT_MAX / w_max)
    return tuple(out)


def compile_for_device(net: TTFSNetwork, weight_scale: Sequence[float] | float | None = None,
                       tau_s_ticks: float | None = None) -> CompiledNetwork:
    """Compile a TTFS model for the chip (``weight_scale``: steps per model unit, one or per layer; None =
    automatic from the weights)."""
    ws: Any = tuple(float(s) for s in weight_scale) if isinstance(weight_scale, Sequence) else weight_scale
    opts = CompileOptions(weight_scale=ws) if tau_s_ticks is None else CompileOptions(weight_scale=ws,
                                                                                       tau_s_ticks=tau_s_ticks)
    return compile(to_network(net), opts)


@dataclass
class DeviceStats:
    """Counters of everything that ran on the device (training and evaluation together)."""

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
        """Accumulate one :class:`firstspike.runtime.session.SessionResult`."""
        self.runs += 1
        self.samples += res.batch_size
        for k in ("spikes", "synaptic_events", "input_events", "lost_input_events"):
            setattr(self, k, getattr(self, k) + int(res.stats.get(k, 0)))
        self.dropped += int(res.dropped)
        self.chip_seconds += res.chip_seconds
        self.device_wall_seconds += wall

    def to_dict(self, energy: EnergyModel | None = None) -> dict[str, Any]:
        d: dict[str, Any] = asdict(self)
        if energy is not None:
            est = energy.estimate(asdict(self), self.chip_seconds, self.samples)
            d["energy_j"] = est.total_j
            d["energy_per_sample_j"] = est.per_sample_j
            d["energy_breakdown_j"] = {"synaptic": est.synaptic_j, "spikes": est.spike_j, "static": est.static_j}
            d["energy_model"] = energy.to_dict()
        return d


def evaluate_on_device(
    session: Session,
    data: SpikeDataset,
    task: TaskConfig,
    *,
    seed: int,
    batch_size: int | None = None,
    stats: DeviceStats | None = None,
) -> dict[str, Any]:
    """Accuracy, mean loss and silent-winner fraction of the loaded network on ``data``, measured on the
    device with noise seed ``seed`` (entry offsets = sample index, so the batching does not matter)."""
    n = len(data)
    bs = batch_size or task.eval_batch_size
    correct = 0
    silent = 0
    loss_sum = 0.0
    for i in range(0, n, bs):
        x = data.times[i : i + bs].numpy()
        y = data.labels[i : i + bs]
        t0 = time.perf_counter()
        res = session.run(x, seed=seed, entry_offset=i)
        if stats is not None:
            stats.add(res, time.perf_counter() - t0)
        out = torch.from_numpy(res.output_times)
        pred = predict(out)
        correct += int((pred == y).sum())
        silent += int((pred < 0).sum())
        loss_sum += float(ttfs_loss(out, y, task.xi, task.alpha, task.beta)) * len(y)
    return {
        "accuracy": correct / n if n else math.nan,
        "loss": loss_sum / n if n else math.nan,
        "silent_winner_fraction": silent / n if n else math.nan,
        "n": n,
    }


def _clamp(net: TTFSNetwork, limits: Sequence[float]) -> None:
    with torch.no_grad():
        for weight, lim in zip(net.weights(), limits, strict=True):
            weight.clamp_(-lim, lim)


def _load_weights(net: TTFSNetwork, session: Session, weights: list[torch.Tensor]) -> None:
    """Set the float weights and send the changed synapses to the device."""
    net.load_weights(weights)
    session.update_weights(net.weights())


def _step_seed(seed: int, epoch: int, batch: int) -> int:
    """Noise seed of one training step: distinct per run seed, epoch and batch, and never one of EVAL_SEEDS."""
    return (1 << 32) + ((int(seed) * 1_000_003 + epoch * 65_537 + batch) % (1 << 60))


def train_in_the_loop(
    task: str | TaskConfig,
    device: Backend,
    epochs: int | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    *,
    train_size: int | None = None,
    eval_size: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    mnist_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    init_model: TTFSNetwork | str | Path | None = None,
    layer_sizes: Sequence[int] | None = None,
    headroom: float | None = None,
    max_weights: Sequence[float] | None = None,
    margin_tau: float = DEFAULT_MARGIN_TAU,
    device_uri: str | None = None,
    energy: EnergyModel | None = None,
    max_seconds: float | None = None,
    lr: float | None = None,
    select: str = "best-val",
    ema: float | None = None,
) -> dict[str, Any]:
    """Train ``task`` with ``device`` in the loop; returns the metrics dict (the software trainer's keys plus
    ``device``: counters, chip time and the energy estimate).

    ``init_model``: start from these weights (a model or a saved ``model.pt``) instead of the reference
    initialisation (e.g. fine-tune a software-trained model on the chip; a model trained in the loop keeps its
    fixed weight scales). ``layer_sizes``: override the layout
    (default :func:`device_task`). ``headroom``/``max_weights``: the fixed weight range per layer (see
    :func:`fixed_weight_scales`; headroom default: :data:`DEVICE_HEADROOM` for the task, else
    :data:`DEFAULT_HEADROOM`). ``lr``: Adam learning rate instead of the task's (e.g. smaller for
    fine-tuning). ``max_seconds``: wall-time budget; training stops before an epoch that would not end within
    it (estimated from the previous epoch; the epochs actually run are reported). ``select``: as in the
    software trainer, keep the weights of the epoch with the best validation accuracy (measured on the
    device; ``"best-val"``) or of the last epoch (``"final"``); the metrics also report the final epoch's
    accuracies. ``ema``: also keep an exponential moving average of the float weights (decay per training
    step, e.g. 0.99); validation, model selection and the saved model then use the averaged weights (measured
    on the device like everything else), while training itself follows the raw weights unchanged; the raw
    weights' validation accuracy is kept in ``history["val_accuracy_raw"]``. Without a progress bar one line
    per epoch is logged. With ``out_dir`` writes ``model.pt``,
    ``network.fsn`` (the artifact with the same fixed scales), ``metrics.json`` and ``training.png``.
    """
    if select not in ("best-val", "final"):
        raise ValueError(f"select must be 'best-val' or 'final', got {select!r}")
    if ema is not None and not 0.0 < float(ema) < 1.0:
        raise ValueError(f"ema (decay per step) must be in (0, 1), got {ema!r}")
    cfg = device_task(task, layer_sizes)
    if lr is not None:
        cfg = replace(cfg, lr=float(lr))
    n_epochs = cfg.epochs if epochs is None else int(epochs)
    if n_epochs < 0:
        raise ValueError("epochs must be >= 0")
    energy = energy or EnergyModel()
    tune_malloc()
    n_threads = configure_threads(cfg.threads if threads is None else threads)
    say = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()

    train = load_dataset(cfg.name, "train", mnist_dir=mnist_dir).subset(train_size)
    val = load_dataset(cfg.name, "val", mnist_dir=mnist_dir).subset(eval_size)
    test = load_dataset(cfg.name, "test", mnist_dir=mnist_dir).subset(eval_size)
    info = device.info()
    say(f"{cfg.name} in the loop on {device_uri or info.model} (serial {info.serial}): train {len(train)}, "
        f"val {len(val)}, test {len(test)}; {n_epochs} epochs, seed {seed}, {n_threads} thread(s)")

    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    if init_model is not None:
        net = init_model if isinstance(init_model, TTFSNetwork) else TTFSNetwork.load(init_model)
        if net.n_inputs != cfg.n_inputs or tuple(net.layer_sizes) != tuple(cfg.layer_sizes):
            raise ValueError(f"init model layout {net.n_inputs}->{net.layer_sizes} does not match "
                             f"{cfg.name}: {cfg.n_inputs}->{list(cfg.layer_sizes)}")
        net.metadata.setdefault("task", cfg.name)
        saved_scales = net.metadata.get("device_weight_scale")
        if max_weights is None and saved_scales:
            # a model trained in the loop keeps the fixed scales it was trained with
            max_weights = [WEIGHT_MAX / float(s) for s in saved_scales]
    else:
        net = build_network(cfg, gen)
    net.train()
    if headroom is None:
        headroom = DEVICE_HEADROOM.get(cfg.name, DEFAULT_HEADROOM)
    scales = fixed_weight_scales(net, headroom, max_weights)
    compiled = compile_for_device(net, scales)
    limits = [WEIGHT_MAX * q for q in compiled.weight_steps]
    _clamp(net, limits)
    session = Session(device, compiled, margin_tau=margin_tau)
    session.update_weights(net.weights())
    say("fixed weight steps q = " + ", ".join(f"{q:.4g}" for q in compiled.weight_steps)
        + " (max |w| " + ", ".join(f"{w:.3g}" for w in limits) + f"), tau_s = {compiled.tau_s_ticks:g} ticks")

    optimizer, scheduler = make_optimizer(net, cfg)
    bumper = WeightBumper(cfg.missing_tolerance, cfg.bump_value)
    train_stats = DeviceStats()
    eval_stats = DeviceStats()
    history: dict[str, list[float]] = {
        k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds",
                        "silent_hidden_fraction", "changed_weights_per_step")
    }
    n_train = len(train)
    bs = cfg.batch_size
    n_batches = math.ceil(n_train / bs) if n_train else 0
    train_time = 0.0
    samples_seen = 0
    bar = None
    if progress and n_epochs and n_batches:
        from tqdm import tqdm

        bar = tqdm(total=n_epochs * n_batches, desc=f"{cfg.name}@device", unit="batch", dynamic_ncols=True,
                   file=sys.stderr)
    val_acc = math.nan
    epochs_run = 0
    best_val, best_epoch = -1.0, 0
    best_state = net.weight_snapshot()
    averaged = net.weight_snapshot() if ema is not None else None
    if averaged is not None:
        history["val_accuracy_raw"] = []
    for epoch in range(n_epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n_train, generator=gen)
        loss_sum = 0.0
        n_loss = 0
        correct = 0
        silent_hidden = 0.0
        changed = 0
        diffs0 = session.uploads.diffs
        for b in range(n_batches):
            idx = perm[b * bs : (b + 1) * bs]
            x = add_input_noise(train.times[idx], cfg.input_noise, gen)
            y = train.labels[idx]
            td = time.perf_counter()
            res = session.run(x.numpy(), seed=_step_seed(seed, epoch, b))
            train_stats.add(res, time.perf_counter() - td)
            measured: list[torch.Tensor | None] = [torch.from_numpy(t) for t in res.layer_times]
            x_dev = torch.from_numpy(res.input_times)
            loss, out, _ = train_step(net, optimizer, bumper, x_dev, y, cfg, measured_times=measured)
            _clamp(net, limits)
            if averaged is not None and ema is not None:
                with torch.no_grad():
                    for a, weight in zip(averaged, net.weights(), strict=True):
                        a.mul_(ema).add_(weight, alpha=1.0 - ema)
            diff = session.update_weights(net.weights())
            changed += diff.changed_entries() if diff is not None else 0
            if loss is not None:
                loss_sum += float(loss)
                n_loss += 1
            correct += int((predict(out) == y).sum())
            if len(res.layer_times) > 1:
                silent_hidden += float(np.mean(~np.isfinite(res.layer_times[0])))
            if bar is not None:
                bar.update(1)
                if b % 10 == 9 or b == n_batches - 1:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(n_loss, 1):.4f}",
                                    acc=f"{100 * correct / min((b + 1) * bs, n_train):.1f}%",
                                    val=f"{100 * val_acc:.1f}%", refresh=False)
        dt = time.perf_counter() - t0
        train_diffs = session.uploads.diffs - diffs0
        train_time += dt
        samples_seen += n_train
        epochs_run += 1
        history["lr"].append(optimizer.param_groups[0]["lr"])
        scheduler.step()
        ev = evaluate_on_device(session, val, cfg, seed=EVAL_SEEDS["val"], stats=eval_stats)
        if averaged is not None:  # validate the averaged weights, then carry on training the raw ones
            history["val_accuracy_raw"].append(ev["accuracy"])
            raw = net.weight_snapshot()
            _load_weights(net, session, averaged)
            ev = evaluate_on_device(session, val, cfg, seed=EVAL_SEEDS["val"], stats=eval_stats)
            _load_weights(net, session, raw)
        val_acc = ev["accuracy"]
        history["train_loss"].append(loss_sum / n_loss if n_loss else math.nan)
        history["train_accuracy"].append(correct / n_train if n_train else math.nan)
        history["val_loss"].append(ev["loss"])
        history["val_accuracy"].append(val_acc)
        history["epoch_seconds"].append(dt)
        history["silent_hidden_fraction"].append(silent_hidden / n_batches if n_batches else math.nan)
        history["changed_weights_per_step"].append(changed / max(train_diffs, 1))
        if val_acc >= best_val:  # ties: keep the later epoch (as the software trainer does)
            best_val, best_epoch = val_acc, epoch + 1
            best_state = net.weight_snapshot() if averaged is None else [a.clone() for a in averaged]
        if bar is None:
            say(f"epoch {epoch + 1}/{n_epochs}: loss {history['train_loss'][-1]:.4f} "
                f"train {100 * history['train_accuracy'][-1]:.2f}% val {100 * val_acc:.2f}% "
                f"({n_train / dt:.0f} samples/s)")
        if max_seconds is not None and epoch + 1 < n_epochs:
            elapsed = time.perf_counter() - t_start
            # stop unless one more epoch (as long as the last one, with its validation) fits the budget
            if elapsed + (time.perf_counter() - t0) > max_seconds:
                say(f"stopping after epoch {epoch + 1}: another epoch would exceed the wall-time budget of "
                    f"{max_seconds:.0f} s ({elapsed:.0f} s used)")
                break
    if bar is not None:
        bar.close()

    if averaged is not None:  # the "final epoch" model is the average at the end
        _load_weights(net, session, averaged)
    final_test_ev = evaluate_on_device(session, test, cfg, seed=EVAL_SEEDS["test"], stats=eval_stats)
    final_val_ev = evaluate_on_device(session, val, cfg, seed=EVAL_SEEDS["val"], stats=eval_stats)
    if select == "best-val" and epochs_run and best_epoch != epochs_run:
        _load_weights(net, session, best_state)
        test_ev = evaluate_on_device(session, test, cfg, seed=EVAL_SEEDS["test"], stats=eval_stats)
        val_ev = evaluate_on_device(session, val, cfg, seed=EVAL_SEEDS["val"], stats=eval_stats)
    else:
        best_epoch = epochs_run
        test_ev, val_ev = final_test_ev, final_val_ev
    all_stats = DeviceStats(**{k: getattr(train_stats, k) + getattr(eval_stats, k)
                               for k in asdict(train_stats)})
    all_stats.config_diffs = session.uploads.diffs
    all_stats.changed_synapse_entries = session.uploads.changed_entries
    test_only = DeviceStats()
    res_test = _test_run_stats(session, test, cfg, test_only)
    device_info = {
        "uri": device_uri,
        "model": info.model,
        "serial": info.serial,
        "version": info.version,
        "extra": {k: v for k, v in info.extra.items() if isinstance(v, str | int | float | bool)},
        "weight_scales": list(scales),
        "weight_steps": list(compiled.weight_steps),
        "max_abs_weight": limits,
        "tau_s_ticks": compiled.tau_s_ticks,
        "margin_tau": margin_tau,
        "headroom": None if max_weights is not None else headroom,
        "training": train_stats.to_dict(energy),
        "evaluation": eval_stats.to_dict(energy),
        "total": all_stats.to_dict(energy),
        "test_run": res_test,
    }
    metrics: dict[str, Any] = training_metrics(
        cfg, seed=seed, n_epochs=n_epochs, epochs_run=epochs_run, select=select, best_epoch=best_epoch,
        evals={"test": test_ev, "val": val_ev, "final_test": final_test_ev, "final_val": final_val_ev},
        history=history, samples_seen=samples_seen, train_time=train_time, t_start=t_start,
        weight_bumps=bumper.count, sizes=(n_train, len(val), len(test)), n_threads=n_threads,
    )
    metrics.update({
        "mode": "in-the-loop",
        "ema": ema,
        "epochs_requested": n_epochs,
        "init_model": None if init_model is None or isinstance(init_model, TTFSNetwork) else str(init_model),
        "device": device_info,
    })
    net.metadata.update({
        "seed": int(seed),
        "epochs": epochs_run,
        "selected_epoch": best_epoch,
        "test_accuracy": test_ev["accuracy"],
        "val_accuracy": val_ev["accuracy"],
        "trained_on": "device",
        "device_uri": device_uri,
        "device_weight_scale": list(scales),
    })
    if out_dir is not None:
        run_dir = Path(out_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        net.save(run_dir / "model.pt")
        compile_for_device(net, scales).save(run_dir / "network.fsn")
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=True) + "\n")
        from firstspike.runtime.plots import plot_training

        plot_training(history, test_ev["accuracy"], run_dir / "training.png",
                      f"{cfg.name} in the loop, seed {seed}: test {100 * test_ev['accuracy']:.2f}% (device)",
                      test_epoch=best_epoch)
    say(f"{cfg.name} seed {seed} (device in the loop): test accuracy {100 * test_ev['accuracy']:.2f}% "
        f"(epoch {best_epoch}, {select}), validation {100 * val_ev['accuracy']:.2f}%; final epoch: test "
        f"{100 * final_test_ev['accuracy']:.2f}%; {metrics['train_samples_per_s']:.0f} train samples/s")
    return metrics


def _test_run_stats(session: Session, data: SpikeDataset, task: TaskConfig, stats: DeviceStats) -> dict[str, Any]:
    """Per-classification chip time, latency and energy of the final network on the test set (one extra run)."""
    lat: list[np.ndarray] = []
    for i in range(0, len(data), task.eval_batch_size):
        t0 = time.perf_counter()
        res = session.run(data.times[i : i + task.eval_batch_size].numpy(), seed=EVAL_SEEDS["test"], entry_offset=i)
        stats.add(res, time.perf_counter() - t0)
        lat.append(np.min(res.output_times, axis=1))
    first = np.concatenate(lat) if lat else np.empty(0)
    fin = first[np.isfinite(first)]
    energy = EnergyModel()
    est = energy.estimate(asdict(stats), stats.chip_seconds, stats.samples)
    n = max(stats.samples, 1)
    return {
        "samples": stats.samples,
        "spikes_per_sample": stats.spikes / n,
        "synaptic_events_per_sample": stats.synaptic_events / n,
        "chip_seconds_per_sample": stats.chip_seconds / n,
        "decision_latency_tau_median": float(np.median(fin)) if fin.size else math.nan,
        "energy_per_sample_j": est.per_sample_j,
        "dropped": stats.dropped,
    }



def add_device_arguments(parser: Any) -> None:
    """The ``firstspike train`` options of in-the-loop training (``--device`` selects it)."""
    g = parser.add_argument_group("training with the device in the loop (--device)")
    g.add_argument("--device", default=None, metavar="URI",
                   help="train in the loop on this device (sim://, grpc://host:port, a pool, serial://...); "
                        "without it training is software-only")
    g.add_argument("--init", default=None, metavar="MODEL.pt", help="start from these weights (fine-tuning)")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: the task's reference value)")
    g.add_argument("--headroom", type=float, default=None,
                   help="fixed weight range per layer = HEADROOM x largest initial |w| (default: "
                        + ", ".join(f"{v} for {k}" for k, v in sorted(DEVICE_HEADROOM.items()))
                        + f", {DEFAULT_HEADROOM} otherwise)")
    g.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="validate, select and save an exponential moving average of the weights (decay per "
                        "step, e.g. 0.99); training follows the raw weights")
    g.add_argument("--max-minutes", type=float, default=None,
                   help="wall-time budget: stop before an epoch that would end after it")


def run_cli(args: Any) -> int:
    """``firstspike train TASK --device URI ...``: in-the-loop training; prints the software trainer's summary
    plus device statistics; returns the exit code."""
    from firstspike import runtime
    from firstspike.hal.errors import HalError
    from firstspike.runtime.training.energy import format_energy

    out = args.out if args.out is not None else f"runs/{args.task}-device-seed{args.seed}"
    hidden = getattr(args, "hidden", None)  # --hidden N, else the chip layout of device_task
    sizes = None if hidden is None else with_hidden(args.task, hidden).layer_sizes
    try:
        device = runtime.open(args.device)
    except (ValueError, HalError, OSError) as exc:
        print(f"firstspike train: cannot open device {args.device!r}: {exc}", file=sys.stderr)
        return 2
    try:
        metrics = train_in_the_loop(
            args.task, device, epochs=args.epochs, seed=args.seed, out_dir=out, train_size=args.train_size,
            eval_size=args.eval_size, threads=args.threads, progress=not args.no_progress,
            mnist_dir=args.mnist_dir, init_model=args.init, headroom=args.headroom, lr=args.lr,
            device_uri=args.device, select=getattr(args, "select", "best-val"), ema=getattr(args, "ema", None),
            layer_sizes=sizes,
            max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
        )
    except (ValueError, OSError, HalError) as exc:
        print(f"firstspike train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        device.close()
    dev = metrics["device"]
    tot, tr = dev["total"], dev["test_run"]
    keys = ("task", "seed", "epochs", "test_accuracy", "val_accuracy", "selected_epoch", "final_test_accuracy",
            "train_samples_per_s")
    summary: dict[str, Any] = {k: metrics[k] for k in keys}
    summary.update({"out": out, "device": args.device, "spikes": tot["spikes"],
                    "synaptic_events": tot["synaptic_events"], "dropped": tot["dropped"],
                    "lost_input_events": tot["lost_input_events"], "chip_seconds": tot["chip_seconds"],
                    "energy_j": tot["energy_j"], "energy_per_classification_j": tr["energy_per_sample_j"]})
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"test accuracy {100 * metrics['test_accuracy']:.2f}%  "
              f"validation accuracy {100 * metrics['val_accuracy']:.2f}%  (measured on {args.device}) -> {out}")
        print(f"device: {tot['samples']} samples run, {tot['spikes']} spikes, {tot['synaptic_events']} synaptic "
              f"events, {tot['dropped']} dropped, {tot['lost_input_events']} inputs lost, chip time "
              f"{tot['chip_seconds'] * 1e3:.1f} ms, {tot['config_diffs']} weight diffs "
              f"({tot['changed_synapse_entries']} synapses); energy {format_energy(tot['energy_j'])} (estimate), "
              f"{format_energy(tr['energy_per_sample_j'])} per test classification")
    return 0
