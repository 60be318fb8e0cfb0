"""The built-in tasks as presets: data set + architecture + the reference hyperparameters (Göltz, Kriener et al.
2021), and the chip layouts used with a device in the loop. Times are in units of tau_s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from firstspike.runtime.training.data import EARLY, LATE
from firstspike.runtime.ttfs.layers import TTFSNetwork
from firstspike.runtime.ttfs.loss import TTFSLoss, WeightBumper

__all__ = [
    "DEFAULT_HEADROOM",
    "DEVICE_HEADROOM",
    "DEVICE_LAYER_SIZES",
    "TASKS",
    "TaskConfig",
    "build_network",
    "device_task",
    "get_task",
    "make_optimizer",
    "with_hidden",
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

    def loss(self) -> TTFSLoss:
        """The task's loss (the paper's, with this task's xi, alpha, beta)."""
        return TTFSLoss(self.xi, self.alpha, self.beta)

    def bumper(self) -> WeightBumper:
        """Weight bumping with the task's per-layer silence tolerances."""
        return WeightBumper(self.missing_tolerance, self.bump_value)


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

#: chip-sized layouts used in the loop (the paper's chip run of MNIST 16x16 used 246 hidden neurons, the most
#: that fit with two merged columns per hidden neuron next to the 10 outputs)
DEVICE_LAYER_SIZES: dict[str, tuple[int, ...]] = {"mnist16": (246, 10)}

#: default largest representable |weight| per layer = this factor x the largest |weight| at the start
DEFAULT_HEADROOM = 1.5

#: per-task headroom where a wider range measured better in the loop (docs/results.md): yin-yang's output
#: weights grow to ~6 in software, beyond 1.5 x their initial largest value (~4.4); with 2 x the selected model
#: was better in 5 of 6 seeds (+0.87 points on average, one tie), with 2.5 x (coarser steps) worse in all 3 tried
DEVICE_HEADROOM: dict[str, float] = {"yinyang": 2.0}


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
    if hidden is None:
        return cfg
    if int(hidden) < 1:
        raise ValueError(f"hidden must be a positive number of neurons, got {hidden}")
    return replace(cfg, layer_sizes=(int(hidden), *cfg.layer_sizes[1:]))


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
    return reference_optimizer(net, task.lr, task.lr_step, task.lr_gamma)


def reference_optimizer(
    net: torch.nn.Module, lr: float, lr_step: int, lr_gamma: float
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam(lr) + StepLR(lr_step epochs, lr_gamma), the reference's choice."""
    try:  # the fused CPU kernel is the fastest for a few small parameter tensors
        opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
    return opt, sched
