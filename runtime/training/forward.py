"""Where the training loop's forward pass comes from: the closed-form model (software) or a device.

The backward pass is the same either way: the exact TTFS gradient (Göltz, Kriener et al. 2021) evaluated at the
forward pass's spike times with the float weights. With a device in the loop (hardware-in-the-loop, as the paper
did it) each step:

1. runs the minibatch on the device (any backend: ``sim://``, ``grpc://...``, a pool, ``serial://...``) with a
   per-step noise seed and reads back the first spike of every neuron of every layer in model units;
2. hands those measured times to the model (``TTFSNetwork(x, measured_times)``), so loss and gradient are
   evaluated at them;
3. after the optimizer step, clamps the weights to what the FIXED per-layer weight scale can represent (+-63
   steps) and the axonal delays to what the delay lines hold (0 .. 511 x 8 ticks), and sends only the synapses
   whose 6-bit value and the routes whose delay code changed (one ``ConfigDiff``).

Axonal delays (one per input row of a layer, the bias row's included) are the delay lines of the routes of each
source; the backward pass takes them as floats at the measured times, like the weights. Synaptic and dendritic
delays have no place on the chip and are refused (:func:`check_device_delays`).

Placement and scales never change during a run. Validation on the device uses fixed noise seeds
(:data:`EVAL_SEEDS`), so runs are reproducible.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from firstspike.compiler.artifact import CompiledNetwork
from firstspike.hal.backend import Backend
from firstspike.hal.chip import WEIGHT_MAX
from firstspike.runtime.models import compile_model
from firstspike.runtime.session import DEFAULT_MARGIN_TAU, Session
from firstspike.runtime.training.evaluation import DeviceStats, Evaluation, evaluate
from firstspike.runtime.ttfs.layers import TTFSNetwork

__all__ = [
    "EVAL_SEEDS",
    "DeviceForward",
    "SoftwareForward",
    "check_device_delays",
    "compile_for_device",
    "fixed_weight_scales",
    "step_seed",
]

#: noise seeds of the evaluation runs on a device (fixed so that accuracies are reproducible; distinct from the
#: training steps' seeds)
EVAL_SEEDS = {"val": 1, "test": 2, "train": 3}

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def step_seed(seed: int, epoch: int, batch: int) -> int:
    """Noise seed of one training step on a device: distinct per run seed, epoch and batch, never an eval seed."""
    return (1 << 32) + ((int(seed) * 1_000_003 + epoch * 65_537 + batch) % (1 << 60))


def check_device_delays(net: TTFSNetwork) -> None:
    """Raise ValueError (one line) if the model has delays the chip cannot hold: only axonal delays (one per
    source, the route delay lines) train with a device in the loop."""
    other = sorted({k for k in net.delay_kinds if k not in ("none", "axonal")})
    if other:
        raise ValueError(f"the model has {'/'.join(other)} delays: the chip's delay lines sit on the routes, one per "
                         "source, so only axonal delays train with a device in the loop; train "
                         f"{'/'.join(other)} delays in software (device=None)")


def device_delays(net: TTFSNetwork) -> list[torch.Tensor | None]:
    """Per layer its axonal delays (tau_s, (n_in [+1 bias],)) or None for a layer without delays."""
    return [layer.delay if layer.delay is not None and layer.delay_kind == "axonal" else None  # type: ignore
            for layer in net.layers]


def fixed_weight_scales(net: TTFSNetwork, headroom: float = 1.5,
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
    """Compile a TTFS model for the chip (``weight_scale``: steps per model unit, one or per layer; None = the
    model's own fixed scales if it has them, else automatic from the weights)."""
    return compile_model(net, weight_scale=weight_scale, tau_s_ticks=tau_s_ticks)


#: seed of the virtual chips hardware-aware validation and test run on (the same chips every epoch), and how many
#: samples share one chip
HW_AWARE_EVAL_SEED = 7
HW_AWARE_EVAL_BATCH = 100


class SoftwareForward:
    """The forward pass of the closed-form model (no device); with ``chip`` (hardware-aware training), of the model
    on a freshly sampled virtual chip per minibatch (:class:`~firstspike.runtime.training.hw_aware.SampledChip`),
    whose times the model then takes as measured ones. Validation and test then run on a fixed set of virtual chips
    (one per ``HW_AWARE_EVAL_BATCH`` samples)."""

    on_device = False
    session: Session | None = None

    def __init__(self, eval_batch_size: int, loss: LossFn, chip: Any = None) -> None:
        self.eval_batch_size = eval_batch_size
        self.loss = loss
        self.chip = chip

    def train_forward(self, x: torch.Tensor, epoch: int, batch: int) -> tuple[torch.Tensor, list[Any] | None]:
        """The inputs the model sees and the measured times (none in plain software)."""
        if self.chip is None:
            return x, None
        return x, list(self.chip(x))

    def constrain(self, net: TTFSNetwork) -> None:
        """Nothing to keep within a device's range."""

    def sync(self, net: TTFSNetwork) -> int:
        """Nothing to upload; returns 0 changed synapses."""
        return 0

    def load_weights(self, net: TTFSNetwork, params: list[torch.Tensor]) -> None:
        """Set the model's trained parameters (a :meth:`TTFSNetwork.snapshot`: weights, then delays if any)."""
        net.load_snapshot(params)

    def evaluate(self, net: TTFSNetwork, data: Any, split: str) -> Evaluation:
        if self.chip is None:
            return evaluate(net, data, batch_size=self.eval_batch_size, loss=self.loss)
        from firstspike.runtime.training.hw_aware import SampledChip

        chips = SampledChip(net, self.chip.noise, torch.Generator().manual_seed(HW_AWARE_EVAL_SEED),
                            self.chip.tau_s_ticks)
        return evaluate(chips, data, batch_size=min(self.eval_batch_size, HW_AWARE_EVAL_BATCH), loss=self.loss)

    def description(self) -> dict[str, Any]:
        return {}


class DeviceForward:
    """The forward pass measured on a device (see the module docstring).

    ``headroom``/``max_weights``: the fixed weight range per layer (:func:`fixed_weight_scales`); a model trained
    in the loop before keeps the scales it carries (metadata ``device_weight_scale``) unless ``max_weights`` is
    given. ``margin_tau``: run window after the latest input, in tau_s. ``calibration``: the chip's calibration
    (a file, a result; None = the one the device reports, if any; False = none).
    """

    on_device = True

    def __init__(
        self,
        device: Backend,
        net: TTFSNetwork,
        *,
        seed: int,
        eval_batch_size: int,
        loss: LossFn,
        headroom: float = 1.5,
        max_weights: Sequence[float] | None = None,
        margin_tau: float = DEFAULT_MARGIN_TAU,
        calibration: Any = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        from firstspike.runtime.calibration import on_device

        check_device_delays(net)
        self.device = device
        self.seed = int(seed)
        self.eval_batch_size = eval_batch_size
        self.loss = loss
        saved = net.metadata.get("device_weight_scale")
        if max_weights is None and saved:
            max_weights = [WEIGHT_MAX / float(s) for s in saved]
        self.headroom = None if max_weights is not None else float(headroom)
        self.scales = fixed_weight_scales(net, headroom, max_weights)
        # the chip's calibrated neuron codes (a file, or what the device reports); the weight steps do not change
        self.compiled = on_device(compile_for_device(net, self.scales), device.info(), calibration)
        self.limits = [WEIGHT_MAX * q for q in self.compiled.weight_steps]
        self.has_delays = net.has_delays
        self.delay_limit = self.compiled.max_delay  # tau_s: the longest delay a delay line holds
        self.constrain(net)
        self.margin_tau = float(margin_tau)
        self.session = Session(device, self.compiled, margin_tau=margin_tau)
        self._upload(net)
        self.train_stats = DeviceStats()
        self.eval_stats = DeviceStats()
        net.metadata["device_weight_scale"] = list(self.scales)
        if log is not None:
            log("fixed weight steps q = " + ", ".join(f"{q:.4g}" for q in self.compiled.weight_steps)
                + " (max |w| " + ", ".join(f"{w:.3g}" for w in self.limits)
                + f"), tau_s = {self.compiled.tau_s_ticks:g} ticks"
                + (f"; axonal delays on the delay lines, step {self.compiled.delay_step:.4g} tau_s, max"
                   f" {self.delay_limit:.4g} tau_s" if self.has_delays else ""))

    def _upload(self, net: TTFSNetwork) -> Any:
        """Send the weights (and axonal delays) whose chip values changed; the diff sent, or None."""
        if not self.has_delays:
            return self.session.update_weights(net.weights())
        return self.session.update_parameters(net.weights(), device_delays(net))

    def train_forward(self, x: torch.Tensor, epoch: int, batch: int) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Run the minibatch on the device; the inputs as the device received them (rounded to ticks) and every
        layer's measured first-spike times (model units, ``inf`` = silent)."""
        t0 = time.perf_counter()
        res = self.session.run(x.numpy(), seed=step_seed(self.seed, epoch, batch))
        self.train_stats.add(res, time.perf_counter() - t0)
        return torch.from_numpy(res.input_times), [torch.from_numpy(t) for t in res.layer_times]

    def constrain(self, net: TTFSNetwork) -> None:
        """Clamp every layer's weights to what its fixed scale represents (+-63 steps) and its axonal delays to
        what a delay line holds (0 .. 511 steps)."""
        with torch.no_grad():
            for weight, lim in zip(net.weights(), self.limits, strict=True):
                weight.clamp_(-lim, lim)
            for d in device_delays(net):
                if d is not None:
                    d.clamp_(0.0, self.delay_limit)

    def sync(self, net: TTFSNetwork) -> int:
        """Send the synapses whose 6-bit value and the routes whose delay code changed; returns how many
        entries changed."""
        diff = self._upload(net)
        return diff.changed_entries() if diff is not None else 0

    def load_weights(self, net: TTFSNetwork, params: list[torch.Tensor]) -> None:
        """Set the float weights and delays (a :meth:`TTFSNetwork.snapshot`) and send what changed to the
        device."""
        net.load_snapshot(params)
        self._upload(net)

    def evaluate(self, net: TTFSNetwork, data: Any, split: str) -> Evaluation:
        """Measured on the device with the split's fixed noise seed."""
        return evaluate(net, data, self.session, seed=EVAL_SEEDS[split], batch_size=self.eval_batch_size,
                        loss=self.loss, stats=self.eval_stats)

    def description(self) -> dict[str, Any]:
        """Device identity and the fixed scales (plain data)."""
        info = self.device.info()
        return {
            "model": info.model,
            "serial": info.serial,
            "version": info.version,
            "extra": {k: v for k, v in info.extra.items() if isinstance(v, str | int | float | bool)},
            "weight_scales": list(self.scales),
            "weight_steps": list(self.compiled.weight_steps),
            "max_abs_weight": list(self.limits),
            "tau_s_ticks": self.compiled.tau_s_ticks,
            **({"delay_step": self.compiled.delay_step, "max_delay": self.delay_limit} if self.has_delays else {}),
            "margin_tau": self.margin_tau,
            "headroom": self.headroom,
            "calibration": self.compiled.calibration,
        }

    def stats(self) -> dict[str, DeviceStats]:
        """Counters of the training runs, the evaluation runs and both (with the uploads)."""
        total = self.train_stats + self.eval_stats
        total.config_diffs = self.session.uploads.diffs
        total.changed_synapse_entries = self.session.uploads.changed_entries
        return {"training": self.train_stats, "evaluation": self.eval_stats, "total": total}


def silent_fraction(layer_times: Sequence[Any]) -> float:
    """Fraction of silent (sample, neuron) pairs over the hidden layers (all but the last); NaN without one."""
    hidden = [np.asarray(t.detach() if torch.is_tensor(t) else t) for t in layer_times[:-1]]
    if not hidden:
        return math.nan
    if len(hidden) == 1:
        return float(np.mean(~np.isfinite(hidden[0])))
    return float(sum(int((~np.isfinite(h)).sum()) for h in hidden) / sum(h.size for h in hidden))
