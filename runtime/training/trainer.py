"""Software training of TTFS networks with the reference hyperparameters (Göltz, Kriener et al. 2021).

``train_software(task, epochs, seed, out_dir)`` trains, evaluates and writes ``model.pt``,
``metrics.json`` and ``training.png`` to ``out_dir``. The per-batch step is split into small functions
(:func:`train_step`, :func:`evaluate`) so that a device-in-the-loop trainer can reuse them with measured
spike times.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from firstspike.runtime.plots import plot_training
from firstspike.runtime.training.datasets import EARLY, LATE, SpikeDataset, load_dataset
from firstspike.runtime.training.perf import configure_threads, tune_malloc
from firstspike.runtime.ttfs.layers import TTFSNetwork
from firstspike.runtime.ttfs.loss import WeightBumper, predict, ttfs_loss

__all__ = [
    "TASKS",
    "TaskConfig",
    "build_network",
    "evaluate",
    "get_task",
    "make_optimizer",
    "train_software",
    "train_step",
    "training_metrics",
]


@dataclass(frozen=True)
class TaskConfig:
    """Network layout and training hyperparameters of one task (times in units of tau_s)."""

    name: str
    n_inputs: int
    layer_sizes: tuple[int, ...]
    bias_times: tuple[float | None, ...]
    weight_means: tuple[float, ...]
    weight_stds: tuple[float, ...]
    lr: float
    batch_size: int
    lr_step: int
    lr_gamma: float
    epochs: int
    missing_tolerance: tuple[float, ...]
    input_noise: float = 0.0
    tau_ratio: int = 1
    bump_value: float = 5e-4
    max_dw_norm: float | None = 0.2
    xi: float = 0.2
    alpha: float = 0.005
    beta: float = 1.0
    eval_batch_size: int = 1000
    threads: int = 1
    encoding: dict[str, Any] = field(default_factory=dict)


TASKS: dict[str, TaskConfig] = {
    # reference yin_yang.yaml: 4+1 -> 120+1 -> 3, bias spikes at 0.9, Adam 5e-3, StepLR(20, 0.95), 300 epochs
    "yinyang": TaskConfig(
        name="yinyang",
        n_inputs=4,
        layer_sizes=(120, 3),
        bias_times=(0.9, 0.9),
        weight_means=(1.5, 0.5),
        weight_stds=(0.8, 0.8),
        lr=0.005,
        batch_size=150,
        lr_step=20,
        lr_gamma=0.95,
        epochs=300,
        missing_tolerance=(0.3, 0.0),
        eval_batch_size=1000,
        threads=1,
        encoding={"inputs": "(x, y, 1-x, 1-y)", "early": EARLY, "late": LATE},
    ),
    # reference 16x16_mnist.yaml: 256 -> 128 -> 10, no bias, Adam 3e-3, batch 50, StepLR(10, 0.9), 200 epochs,
    # input jitter N(0, 0.3) (negative times reflected)
    "mnist16": TaskConfig(
        name="mnist16",
        n_inputs=256,
        layer_sizes=(128, 10),
        bias_times=(None, None),
        weight_means=(0.1, 0.6),
        weight_stds=(0.4, 0.8),
        lr=0.003,
        batch_size=50,
        lr_step=10,
        lr_gamma=0.9,
        epochs=200,
        missing_tolerance=(0.5, 0.5),
        input_noise=0.3,
        eval_batch_size=1000,
        threads=1,
        encoding={"inputs": "16x16 inverted pixels", "early": EARLY, "late": LATE, "late_is_silent": True},
    ),
}


def get_task(task: str | TaskConfig) -> TaskConfig:
    """Task config by name (``yinyang``, ``mnist16``) or pass-through."""
    if isinstance(task, TaskConfig):
        return task
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r} (use one of {sorted(TASKS)})") from None


def with_hidden(task: str | TaskConfig, hidden: int | None) -> TaskConfig:
    """The task's config, with ``hidden`` neurons in its hidden layer if given (the output layer stays)."""
    cfg = get_task(task)
    return cfg if hidden is None else replace(cfg, layer_sizes=(int(hidden), *cfg.layer_sizes[1:]))


def build_network(task: TaskConfig, generator: torch.Generator | None = None) -> TTFSNetwork:
    """The task's network with the reference initialisation (Normal per layer)."""
    return TTFSNetwork(
        task.n_inputs,
        task.layer_sizes,
        task.bias_times,
        tau_ratio=task.tau_ratio,
        weight_means=task.weight_means,
        weight_stds=task.weight_stds,
        max_dw_norm=task.max_dw_norm,
        generator=generator,
        metadata={"task": task.name, "encoding": dict(task.encoding)},
    )


def make_optimizer(
    net: torch.nn.Module, task: TaskConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam + StepLR (stepped once per epoch) with the task's defaults."""
    try:  # the fused CPU kernel is the fastest for a few small parameter tensors
        opt = torch.optim.Adam(net.parameters(), lr=task.lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.Adam(net.parameters(), lr=task.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=task.lr_step, gamma=task.lr_gamma)
    return opt, sched


def add_input_noise(times: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian jitter on input spike times; negative times are reflected (as the reference does)."""
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
    task: TaskConfig,
    measured_times: list[torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor, int | None]:
    """One minibatch: forward, weight bumping or loss + backward + optimizer step.

    Returns ``(loss or None if bumped, output times (detached), bumped layer or None)``.
    """
    times = net(inputs, measured_times)
    bumped = bumper(net.weights(), times) if bumper is not None else None
    loss = None
    if bumped is None:
        loss = ttfs_loss(times[-1], labels, task.xi, task.alpha, task.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss = loss.detach()
    return loss, times[-1].detach(), bumped


@torch.no_grad()
def evaluate(net: TTFSNetwork, data: SpikeDataset, task: TaskConfig | None = None) -> dict[str, float]:
    """Accuracy and mean loss of ``net`` on ``data`` (no noise); silent winners count as wrong."""
    task = task or get_task(str(net.metadata.get("task", "yinyang")))
    was_training = net.training
    net.eval()
    correct = 0
    loss_sum = 0.0
    silent = 0
    n = len(data)
    for i in range(0, n, task.eval_batch_size):
        x, y = data.times[i : i + task.eval_batch_size], data.labels[i : i + task.eval_batch_size]
        out = net(x)[-1]
        pred = predict(out)
        correct += int((pred == y).sum())
        silent += int((pred < 0).sum())
        loss_sum += float(ttfs_loss(out, y, task.xi, task.alpha, task.beta)) * len(y)
    net.train(was_training)
    return {
        "accuracy": correct / n if n else math.nan,
        "loss": loss_sum / n if n else math.nan,
        "silent_winner_fraction": silent / n if n else math.nan,
        "n": n,
    }


def training_metrics(
    cfg: TaskConfig,
    *,
    seed: int,
    n_epochs: int,
    epochs_run: int,
    select: str,
    best_epoch: int,
    evals: dict[str, dict[str, float]],
    history: dict[str, list[float]],
    samples_seen: int,
    train_time: float,
    t_start: float,
    weight_bumps: int,
    sizes: tuple[int, int, int],
    n_threads: int,
) -> dict[str, Any]:
    """The metrics.json content every trainer (software or device in the loop) writes.

    ``evals`` holds the evaluations "test" and "val" of the selected weights and "final_test"/"final_val" of the
    last epoch's weights; ``sizes`` is (train, val, test); times are wall-clock seconds (``t_start`` from
    ``time.perf_counter``).
    """
    test_ev, val_ev = evals["test"], evals["val"]
    return {
        "task": cfg.name,
        "seed": int(seed),
        "epochs": epochs_run,
        "test_accuracy": test_ev["accuracy"],
        "val_accuracy": val_ev["accuracy"],
        "test_loss": test_ev["loss"],
        "val_loss": val_ev["loss"],
        "test_silent_winner_fraction": test_ev["silent_winner_fraction"],
        "selected": select,
        "selected_epoch": best_epoch,
        "final_test_accuracy": evals["final_test"]["accuracy"],
        "final_val_accuracy": evals["final_val"]["accuracy"],
        "final_train_accuracy": history["train_accuracy"][-1] if epochs_run else math.nan,
        "best_val_accuracy": max(history["val_accuracy"]) if epochs_run else math.nan,
        "train_samples_per_s": samples_seen / train_time if train_time > 0 else math.nan,
        "train_seconds": train_time,
        "wall_seconds": time.perf_counter() - t_start,
        "weight_bumps": weight_bumps,
        "train_size": sizes[0],
        "val_size": sizes[1],
        "test_size": sizes[2],
        "threads": n_threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(replace(cfg, epochs=n_epochs)).items()},
        "history": history,
    }

def train_software(
    task: str | TaskConfig,
    epochs: int | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    *,
    train_size: int | None = None,
    eval_size: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    mnist_dir: str | Path | None = None,
    select: str = "best-val",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``task`` in software (exact TTFS gradients) and return the metrics dict.

    ``epochs`` defaults to the task's reference value; ``train_size``/``eval_size`` restrict the splits
    (first n samples; for smoke tests). ``progress``: a tqdm bar (loss, accuracy, samples/s) on stderr;
    without it one summary line per epoch is logged. With ``out_dir`` writes ``model.pt``
    (:meth:`TTFSNetwork.save`), ``metrics.json`` and ``training.png``. ``train_samples_per_s`` counts
    training-loop time only (forward, backward, optimizer, bumping, shuffling), not evaluation.

    ``select``: which weights are kept, evaluated on the test set and saved: ``"best-val"`` (the epoch with
    the highest validation accuracy; the test set plays no part in the choice) or ``"final"`` (last epoch).
    The metrics always also report the final epoch's test accuracy (``final_test_accuracy``).
    """
    if select not in ("best-val", "final"):
        raise ValueError(f"select must be 'best-val' or 'final', got {select!r}")
    cfg = get_task(task)
    n_epochs = cfg.epochs if epochs is None else int(epochs)
    if n_epochs < 0:
        raise ValueError("epochs must be >= 0")
    tune_malloc()
    n_threads = configure_threads(cfg.threads if threads is None else threads)
    say = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()

    train = load_dataset(cfg.name, "train", mnist_dir=mnist_dir).subset(train_size)
    val = load_dataset(cfg.name, "val", mnist_dir=mnist_dir).subset(eval_size)
    test = load_dataset(cfg.name, "test", mnist_dir=mnist_dir).subset(eval_size)
    say(f"{cfg.name}: train {len(train)}, val {len(val)}, test {len(test)} samples; {n_epochs} epochs, "
        f"seed {seed}, {n_threads} thread(s)")

    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    net = build_network(cfg, gen)
    net.train()
    optimizer, scheduler = make_optimizer(net, cfg)
    bumper = WeightBumper(cfg.missing_tolerance, cfg.bump_value)

    history: dict[str, list[float]] = {
        k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds")
    }
    n_train = len(train)
    bs = cfg.batch_size
    n_batches = math.ceil(n_train / bs) if n_train else 0
    train_time = 0.0
    samples_seen = 0
    bar = None
    if progress and n_epochs and n_batches:
        from tqdm import tqdm

        bar = tqdm(
            total=n_epochs * n_batches, desc=cfg.name, unit="batch", dynamic_ncols=True, file=sys.stderr
        )
    val_acc = math.nan
    best_val, best_epoch = -1.0, 0
    best_state = net.weight_snapshot()
    for epoch in range(n_epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n_train, generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64)
        n_loss = 0
        correct = torch.zeros((), dtype=torch.int64)
        for b in range(n_batches):
            idx = perm[b * bs : (b + 1) * bs]
            x = add_input_noise(train.times[idx], cfg.input_noise, gen)
            y = train.labels[idx]
            loss, out, _ = train_step(net, optimizer, bumper, x, y, cfg)
            if loss is not None:
                loss_sum += loss
                n_loss += 1
            correct += (predict(out) == y).sum()
            if bar is not None:
                bar.update(1)
                if b % 20 == 19 or b == n_batches - 1:
                    elapsed = train_time + time.perf_counter() - t0
                    bar.set_postfix(
                        epoch=epoch + 1,
                        loss=f"{float(loss_sum) / max(n_loss, 1):.4f}",
                        acc=f"{100 * int(correct) / ((b + 1) * bs if b < n_batches - 1 else n_train):.1f}%",
                        val="-" if math.isnan(val_acc) else f"{100 * val_acc:.1f}%",
                        sps=f"{(samples_seen + min((b + 1) * bs, n_train)) / max(elapsed, 1e-9):.0f}",
                        refresh=False,
                    )
        dt = time.perf_counter() - t0
        train_time += dt
        samples_seen += n_train
        history["lr"].append(optimizer.param_groups[0]["lr"])
        scheduler.step()
        ev = evaluate(net, val, cfg)
        val_acc = ev["accuracy"]
        history["train_loss"].append(float(loss_sum) / n_loss if n_loss else math.nan)
        history["train_accuracy"].append(int(correct) / n_train)
        history["val_loss"].append(ev["loss"])
        history["val_accuracy"].append(val_acc)
        history["epoch_seconds"].append(dt)
        if val_acc >= best_val:  # ties: keep the later epoch
            best_val, best_epoch = val_acc, epoch + 1
            best_state = net.weight_snapshot()
        if bar is None:
            say(f"epoch {epoch + 1}/{n_epochs}: loss {history['train_loss'][-1]:.4f} "
                f"train {100 * history['train_accuracy'][-1]:.2f}% val {100 * val_acc:.2f}% "
                f"({n_train / dt:.0f} samples/s)")
    if bar is not None:
        bar.close()

    final_test_ev = evaluate(net, test, cfg)
    final_val_ev = evaluate(net, val, cfg)
    if select == "best-val" and n_epochs:
        net.load_weights(best_state)
    else:
        best_epoch = n_epochs
    test_ev = evaluate(net, test, cfg)
    val_ev = evaluate(net, val, cfg)
    metrics = training_metrics(
        cfg, seed=seed, n_epochs=n_epochs, epochs_run=n_epochs, select=select, best_epoch=best_epoch,
        evals={"test": test_ev, "val": val_ev, "final_test": final_test_ev, "final_val": final_val_ev},
        history=history, samples_seen=samples_seen, train_time=train_time, t_start=t_start,
        weight_bumps=bumper.count, sizes=(n_train, len(val), len(test)), n_threads=n_threads,
    )
    net.metadata.update(
        {
            "seed": int(seed),
            "epochs": n_epochs,
            "selected_epoch": best_epoch,
            "test_accuracy": test_ev["accuracy"],
            "val_accuracy": val_ev["accuracy"],
        }
    )
    if out_dir is not None:
        run_dir = Path(out_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        net.save(run_dir / "model.pt")
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=True) + "\n")
        title = f"{cfg.name}, seed {seed}: test {100 * test_ev['accuracy']:.2f}%"
        plot_training(history, test_ev["accuracy"], run_dir / "training.png", title, test_epoch=best_epoch)
    say(f"{cfg.name} seed {seed}: test accuracy {100 * test_ev['accuracy']:.2f}% (epoch {best_epoch}, "
        f"{select}), validation {100 * val_ev['accuracy']:.2f}%; final epoch: test "
        f"{100 * final_test_ev['accuracy']:.2f}%; {metrics['train_samples_per_s']:.0f} train samples/s")
    return metrics
