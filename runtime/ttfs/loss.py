"""The paper's TTFS loss, prediction, and weight bumping (times in units of tau_s)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["ShiftMSELoss", "TTFSLoss", "WeightBumper", "accuracy", "predict", "shift_mse_loss", "ttfs_loss"]

# Argument of exp() in the regulariser is capped here (t_y / beta > 50 tau_s never happens in a working
# network; the cap only keeps the loss and its gradient finite).
_REG_EXP_CAP = 50.0


def ttfs_loss(
    output_times: torch.Tensor,
    labels: torch.Tensor,
    xi: float = 0.2,
    alpha: float = 0.005,
    beta: float = 1.0,
    silent_loss: float = 100.0,
) -> torch.Tensor:
    """Mean over the batch of the paper's loss (Göltz et al. 2021)::

        L = log sum_k exp(-t_k / xi) + t_y / xi + alpha (exp(t_y / beta) - 1)

    ``output_times`` (batch, n_classes), ``labels`` (batch,) int. A sample whose correct neuron is silent
    gets the fixed loss ``silent_loss`` and no gradient. Silent wrong neurons contribute exp(-inf) = 0.
    The gradient is never NaN.
    """
    t = output_times
    y = labels.to(torch.long).view(-1, 1)
    t_y = t.gather(1, y).squeeze(1)
    silent = ~torch.isfinite(t_y)
    # rows with a silent target are replaced by zeros before any arithmetic (double-where: no NaN gradient)
    t_safe = torch.where(silent.unsqueeze(1), torch.zeros_like(t), t)
    t_y_safe = torch.where(silent, torch.zeros_like(t_y), t_y)
    lse = torch.logsumexp(-t_safe / xi, dim=1)
    reg = alpha * torch.expm1((t_y_safe / beta).clamp_max(_REG_EXP_CAP))
    per_sample = lse + t_y_safe / xi + reg
    per_sample = torch.where(silent, torch.full_like(per_sample, silent_loss), per_sample)
    return per_sample.mean()


class TTFSLoss:
    """The paper's loss as a callable ``loss(output_times, labels) -> scalar tensor`` (see :func:`ttfs_loss`;
    ``xi``, ``beta`` in units of tau_s)."""

    def __init__(self, xi: float = 0.2, alpha: float = 0.005, beta: float = 1.0, silent_loss: float = 100.0) -> None:
        if not (xi > 0 and beta > 0 and alpha >= 0):
            raise ValueError(f"TTFSLoss needs xi > 0, beta > 0, alpha >= 0; got xi={xi}, alpha={alpha}, beta={beta}")
        self.xi, self.alpha, self.beta, self.silent_loss = float(xi), float(alpha), float(beta), float(silent_loss)

    def __call__(self, output_times: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return ttfs_loss(output_times, labels, self.xi, self.alpha, self.beta, self.silent_loss)

    def __repr__(self) -> str:
        return f"TTFSLoss(xi={self.xi}, alpha={self.alpha}, beta={self.beta}, silent_loss={self.silent_loss})"


def shift_mse_loss(
    output_times: torch.Tensor, labels: torch.Tensor, delta: float = 0.2, silent_loss: float = 100.0
) -> torch.Tensor:
    """Mean over the batch of the shift-invariant squared error the DelGrad reference trains with::

        L = 1/2 sum_k ((t_k - t_y) - delta [k != y])^2

    i.e. every wrong neuron is pulled to ``delta`` (tau_s) after the correct one, whatever the absolute times.
    A sample with any silent output neuron gets the fixed loss ``silent_loss`` and no gradient (as the reference:
    its loss would be infinite). The gradient is never NaN.
    """
    t = output_times
    y = labels.to(torch.long).view(-1, 1)
    silent = ~torch.isfinite(t).all(dim=1)
    t_safe = torch.where(silent.unsqueeze(1), torch.zeros_like(t), t)  # double-where: no NaN gradient
    target = torch.full_like(t, float(delta)).scatter_(1, y, 0.0)
    per_sample = 0.5 * ((t_safe - t_safe.gather(1, y)) - target).square().sum(dim=1)
    per_sample = torch.where(silent, torch.full_like(per_sample, silent_loss), per_sample)
    return per_sample.mean()


class ShiftMSELoss:
    """The DelGrad reference's shift-invariant squared-error loss as a callable ``loss(output_times, labels)``
    (see :func:`shift_mse_loss`; ``delta`` in units of tau_s). Prediction is unchanged: the earliest neuron."""

    def __init__(self, delta: float = 0.2, silent_loss: float = 100.0) -> None:
        if not delta > 0:
            raise ValueError(f"ShiftMSELoss needs delta > 0 (the correct neuron fires first), got {delta!r}")
        self.delta, self.silent_loss = float(delta), float(silent_loss)

    def __call__(self, output_times: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return shift_mse_loss(output_times, labels, self.delta, self.silent_loss)

    def __repr__(self) -> str:
        return f"ShiftMSELoss(delta={self.delta}, silent_loss={self.silent_loss})"


def predict(output_times: torch.Tensor) -> torch.Tensor:
    """Predicted class per sample (argmin of output times); -1 when the earliest output is silent."""
    first = output_times.argmin(dim=1)
    t_first = output_times.gather(1, first.view(-1, 1)).squeeze(1)
    return torch.where(torch.isfinite(t_first), first, torch.full_like(first, -1))


def accuracy(output_times: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose prediction equals the label (silent winners count as wrong)."""
    if labels.numel() == 0:
        return float("nan")
    return float((predict(output_times) == labels.to(torch.long)).double().mean())


class WeightBumper:
    """Weight bumping as in the reference implementation.

    Before an optimizer step, look at the layers in order: the first layer whose fraction of silent
    (sample, neuron) pairs in the batch exceeds its tolerance gets a positive bump on all incoming weights
    (bias row included) of every neuron that was silent for at least one sample, and the optimizer step is
    skipped. The bump starts at ``value`` and doubles while the same layer is bumped in consecutive batches.
    """

    def __init__(self, tolerances: Sequence[float], value: float = 5e-4, exponential: bool = True) -> None:
        self.tolerances = [float(x) for x in tolerances]
        self.value = float(value)
        self.exponential = exponential
        self.current = float(value)
        self.last_layer: int | None = None
        self.count = 0

    @torch.no_grad()
    def __call__(self, weights: Sequence[torch.Tensor], times: Sequence[torch.Tensor]) -> int | None:
        """Bump if needed; return the index of the bumped layer (skip the optimizer step) or None.

        ``weights``: each layer's (n_in, n_out) weight matrix, changed in place; ``times``: each layer's
        (batch, n_out) spike times of this batch (inf = silent).
        """
        if len(times) != len(self.tolerances) or len(weights) != len(times):
            raise ValueError(
                f"{len(self.tolerances)} tolerances, {len(weights)} weight matrices and {len(times)} spike-time"
                " tensors: need one of each per layer"
            )
        bumped = None
        silent = None
        for i, t in enumerate(times):
            silent = ~(t.abs() < math.inf)  # inf or NaN
            if t.numel() and int(silent.sum()) > self.tolerances[i] * t.numel():
                bumped = i
                break
        if bumped is None or silent is None:
            self.last_layer = None
            return None
        if self.exponential and bumped == self.last_layer:
            self.current *= 2.0
        else:
            self.current = self.value
        neurons = silent.any(dim=0).to(torch.float64)  # (n_out,)
        weights[bumped].add_(neurons.unsqueeze(0) * self.current)
        self.last_layer = bumped
        self.count += 1
        return bumped
