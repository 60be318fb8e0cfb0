"""The built-in tasks as presets: data set + architecture + the reference hyperparameters (Göltz, Kriener et al.
2021), and the chip layouts used with a device in the loop. Times are in units of tau_s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from firstspike.runtime.training.data import EARLY, LATE
from firstspike.runtime.ttfs.delays import DELAY_KINDS
from firstspike.runtime.ttfs.layers import (
    DEFAULT_DELAY_INIT_SCALE,
    DEFAULT_DELAY_INIT_STD,
    DEFAULT_DELAY_MAX,
    TTFSNetwork,
)
from firstspike.runtime.ttfs.loss import ShiftMSELoss, TTFSLoss, WeightBumper

__all__ = [
    "DEFAULT_HEADROOM",
    "DELAY_PRESETS",
    "DELGRAD_YINYANG",
    "DEVICE_HEADROOM",
    "DEVICE_LAYER_SIZES",
    "TASKS",
    "TaskConfig",
    "build_network",
    "device_task",
    "get_task",
    "make_optimizer",
    "with_delays",
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
    threads: int | None = 1
    encoding: dict[str, Any] = field(default_factory=dict)
    loss_type: str = "ttfs"
    delta_t: float = 0.2
    delays: str = "none"
    delay_lr: float | None = None
    delay_max: float = DEFAULT_DELAY_MAX
    delay_init_scale: float = DEFAULT_DELAY_INIT_SCALE
    delay_init_std: float = DEFAULT_DELAY_INIT_STD

    def loss(self) -> TTFSLoss | ShiftMSELoss:
        """The task's loss: the paper's (``loss_type`` "ttfs", with this task's xi, alpha, beta) or the DelGrad
        reference's shift-invariant squared error (``"shift_mse"``, with ``delta_t``)."""
        if self.loss_type == "shift_mse":
            return ShiftMSELoss(self.delta_t)
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
        threads=None,  # every core up to 2: the kernels split each batch (yin-yang's are too small to gain)
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


#: the DelGrad reference's yin-yang setup (JulianGoeltz/fastAndDeep, main branch, experiment_configs/
#: yin_yang_H30_*.yaml), in our units: tau_m = 2 tau_s (their g_leak 0.5 makes the threshold 0.5 in kernel units,
#: so their weights are half of ours: init Normal(1, 1) -> (2, 2), weight learning rates x2, bump 5e-4 -> 1e-3,
#: gradient guard 0.2 -> 0.1), no bias spikes, the shift-invariant squared-error loss (delta_t 0.2 tau_s), delays in
#: [0, 1 tau_s] (their scale-1 sigmoid; ours are clamped) initialised 1 tau_s * sigmoid(Normal(0, 0.25)).
DELGRAD_YINYANG: dict[str, Any] = {
    "tau_ratio": 2,
    "bias_times": (None, None),
    "weight_means": (2.0, 2.0),
    "weight_stds": (2.0, 2.0),
    "loss_type": "shift_mse",
    "delta_t": 0.2,
    "max_dw_norm": 0.1,
    "bump_value": 1e-3,
    "delay_max": 1.0,
    "delay_init_scale": 1.0,
    "delay_init_std": 0.25,
}

#: per task and delay kind ("none" = the same setup without delays): what :func:`with_delays` sets. yin-yang:
#: :data:`DELGRAD_YINYANG` with the reference's learning rates per kind (their H30_W: weights 0.02; H30_WA: weights
#: and delays 0.005; H30_WS: weights 0.01, delays 0.003; no dendritic config there: the axonal rates). Their delays
#: are sigmoid(raw) with Adam on raw, so their steps in tau_s start at sigmoid'(0) = 1/4 of their rate; ours are
#: trained directly with their rate, 4x their initial step: over 2 seeds x 300 epochs (docs/results.md) this was
#: better for synaptic delays (98.4 / 99.0 % vs 97.0 / 98.0 % test) and the same for axonal ones.
DELAY_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "yinyang": {
        "none": {**DELGRAD_YINYANG, "lr": 0.04},
        "axonal": {**DELGRAD_YINYANG, "lr": 0.01, "delay_lr": 0.005},
        "synaptic": {**DELGRAD_YINYANG, "lr": 0.02, "delay_lr": 0.003},
        "dendritic": {**DELGRAD_YINYANG, "lr": 0.01, "delay_lr": 0.005},
    },
}


def with_delays(task: str | TaskConfig, kind: str | None) -> TaskConfig:
    """The task's config for training with delays of ``kind`` (``axonal``, ``synaptic``, ``dendritic``) in every
    layer, with the setup and hyperparameters of :data:`DELAY_PRESETS` (yin-yang: the DelGrad reference's); ``"none"``
    gives that setup without delays (the baseline to compare with). A task without a preset keeps its own setup,
    its delays learning at 1/4 of the weights' rate. ``None``: the task unchanged. The hidden layer keeps the task's
    size (``with_hidden`` / ``--hidden`` sets it)."""
    cfg = get_task(task)
    if kind is None:
        return cfg
    if kind not in DELAY_KINDS:
        raise ValueError(f"delays must be one of {', '.join(DELAY_KINDS)}; got {kind!r}")
    preset = DELAY_PRESETS.get(cfg.name, {}).get(kind)
    if preset is None:
        return cfg if kind == "none" else replace(cfg, delays=kind, delay_lr=0.25 * cfg.lr)
    return replace(cfg, delays=kind, **preset)


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
        delays=task.delays,
        delay_max=task.delay_max,
        delay_init_scale=task.delay_init_scale,
        delay_init_std=task.delay_init_std,
    )


def make_optimizer(
    net: torch.nn.Module, task: TaskConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam + StepLR (stepped once per epoch) with the task's defaults (delays, if any, with ``task.delay_lr``)."""
    return reference_optimizer(net, task.lr, task.lr_step, task.lr_gamma, task.delay_lr)


def reference_optimizer(
    net: torch.nn.Module, lr: float, lr_step: int, lr_gamma: float, delay_lr: float | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam(lr) + StepLR(lr_step epochs, lr_gamma), the reference's choice; a model with delays gets two parameter
    groups, its delays learning with ``delay_lr`` (default ``lr``), as the DelGrad reference gives delay layers
    their own learning rate."""
    params: Any = list(net.parameters())
    if isinstance(net, TTFSNetwork) and net.has_delays:
        params = net.parameter_groups(lr, delay_lr)
    try:  # the fused CPU kernel is the fastest for a few small parameter tensors
        opt = torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
    return opt, sched
