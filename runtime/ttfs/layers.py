"""TTFS layers and the layered network model (pure torch, float64, model units: tau_s = 1, theta = 1)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from firstspike.runtime.ttfs.spiketime import first_spike_times, spike_times

__all__ = ["MODEL_FORMAT", "TTFSLinear", "TTFSNetwork"]

#: value of the ``format`` key of a saved model dict
MODEL_FORMAT = "firstspike.ttfs.v1"


class TTFSLinear(nn.Module):
    """Fully connected layer of TTFS LIF neurons: input times (batch, n_in) -> output times (batch, n_out).

    ``weight`` has shape (n_in + 1, n_out) when ``bias_time`` is given (the last row belongs to a bias
    input that spikes at ``bias_time`` for every sample) and (n_in, n_out) otherwise, in model units
    (threshold theta = 1, tau_s = 1). ``tau_ratio`` = tau_m / tau_s is 1 or 2. ``max_dw_norm`` is applied in
    the backward pass while the module is in training mode (None = off).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        bias_time: float | None = None,
        *,
        tau_ratio: int = 1,
        weight_mean: float = 0.0,
        weight_std: float = 1.0,
        max_dw_norm: float | None = 0.2,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if tau_ratio not in (1, 2):
            raise ValueError(f"tau_ratio must be 1 or 2, got {tau_ratio!r}")
        self.n_in = int(n_in)
        self.n_out = int(n_out)
        self.bias_time = None if bias_time is None else float(bias_time)
        self.tau_ratio = int(tau_ratio)
        self.max_dw_norm = max_dw_norm
        rows = self.n_in + (1 if self.bias_time is not None else 0)
        self.weight = nn.Parameter(torch.empty(rows, self.n_out, dtype=torch.float64))
        self.reset_parameters(weight_mean, weight_std, generator)

    def reset_parameters(
        self, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None
    ) -> None:
        """Draw all weights (bias row included) from Normal(mean, std), as the reference does."""
        with torch.no_grad():
            self.weight.normal_(mean, std, generator=generator)

    def with_bias(self, input_times: torch.Tensor) -> torch.Tensor:
        """Input times with the bias spike appended as the last column (no-op without bias)."""
        x = input_times.to(torch.float64)
        if self.bias_time is None:
            return x
        return torch.cat([x, x.new_full((x.shape[0], 1), self.bias_time)], dim=1)

    def forward(self, input_times: torch.Tensor, output_times: torch.Tensor | None = None) -> torch.Tensor:
        """Output spike times (batch, n_out), +inf = silent; ``output_times``: measured times to use."""
        x = self.with_bias(input_times)
        differentiable = torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad)
        if not differentiable:
            if output_times is not None:
                t = output_times.to(torch.float64)
                return torch.where(torch.isnan(t), torch.full_like(t, math.inf), t)
            return first_spike_times(x, self.weight, self.tau_ratio)
        return spike_times(
            x,
            self.weight,
            self.tau_ratio,
            output_times=output_times,
            max_dw_norm=self.max_dw_norm if self.training else None,
        )

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}, bias_time={self.bias_time}, tau_ratio={self.tau_ratio}"


class TTFSNetwork(nn.Module):
    """Layered TTFS network; ``forward`` returns the spike times of every layer (the last is the output).

    ``layer_sizes`` lists the number of neurons per layer (hidden layers then output layer);
    ``bias_times`` gives one bias spike time per layer (None = no bias in that layer); weight means and
    standard deviations are per layer; the draw comes from ``generator``, or a generator seeded with ``seed``, or
    torch's global one. ``metadata`` is a free dict (task name, input encoding, ...) that is saved with the model.
    """

    def __init__(
        self,
        n_inputs: int,
        layer_sizes: Sequence[int],
        bias_times: Sequence[float | None] | None = None,
        *,
        tau_ratio: int = 1,
        weight_means: Sequence[float] | None = None,
        weight_stds: Sequence[float] | None = None,
        max_dw_norm: float | None = 0.2,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        n_layers = len(layer_sizes)
        if n_layers == 0:
            raise ValueError("layer_sizes must not be empty")
        bias_times = list(bias_times) if bias_times is not None else [None] * n_layers
        weight_means = list(weight_means) if weight_means is not None else [0.0] * n_layers
        weight_stds = list(weight_stds) if weight_stds is not None else [1.0] * n_layers
        per_layer: dict[str, list[Any]] = {
            "bias_times": bias_times, "weight_means": weight_means, "weight_stds": weight_stds
        }
        for name, seq in per_layer.items():
            if len(seq) != n_layers:
                raise ValueError(f"{name} needs one entry per layer ({n_layers}), got {len(seq)}")
        self.n_inputs = int(n_inputs)
        self.layer_sizes = [int(n) for n in layer_sizes]
        self.bias_times = [None if b is None else float(b) for b in bias_times]
        self.tau_ratio = int(tau_ratio)
        self.weight_means = [float(m) for m in weight_means]
        self.weight_stds = [float(s) for s in weight_stds]
        self.max_dw_norm = max_dw_norm
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.layers = nn.ModuleList()
        n_prev = self.n_inputs
        specs = zip(self.layer_sizes, self.bias_times, self.weight_means, self.weight_stds, strict=True)
        for n, b, m, s in specs:
            self.layers.append(
                TTFSLinear(
                    n_prev, n, b, tau_ratio=tau_ratio, weight_mean=m, weight_std=s,
                    max_dw_norm=max_dw_norm, generator=generator,
                )
            )
            n_prev = n

    def forward(
        self,
        input_times: torch.Tensor,
        measured_times: Sequence[torch.Tensor | None] | None = None,
    ) -> list[torch.Tensor]:
        """Spike times of every layer, a list of (batch, n_l) float64 tensors; the last is the output layer.

        ``measured_times`` (optional, one entry per layer, None = compute) substitutes externally measured
        times for a layer's output: they are used as that layer's result, as the next layer's input, and
        as the point where the exact gradient is evaluated.
        """
        if measured_times is not None and len(measured_times) != len(self.layers):
            raise ValueError(f"measured_times needs {len(self.layers)} entries, got {len(measured_times)}")
        if input_times.dim() != 2 or input_times.shape[1] != self.n_inputs:
            raise ValueError(f"expected input times (batch, {self.n_inputs}), got {tuple(input_times.shape)}")
        times: list[torch.Tensor] = []
        x = input_times
        for i, layer in enumerate(self.layers):
            x = layer(x, None if measured_times is None else measured_times[i])
            times.append(x)
        return times

    def output_times(self, input_times: torch.Tensor) -> torch.Tensor:
        """Output layer spike times (batch, n_classes), no gradient."""
        with torch.no_grad():
            return self.forward(input_times)[-1]

    def weights(self) -> list[nn.Parameter]:
        """Every layer's weight matrix, (n_in + bias row, n_out) in model units: the parameters themselves."""
        return [cast(TTFSLinear, layer).weight for layer in self.layers]

    def weight_snapshot(self) -> list[torch.Tensor]:
        """Detached copies of every layer's weight matrix (model units), e.g. to keep the best epoch's."""
        return [w.detach().clone() for w in self.weights()]

    @torch.no_grad()
    def load_weights(self, weights: list[torch.Tensor]) -> None:
        """Copy ``weights`` (one matrix per layer, as from :meth:`weight_snapshot`) into the layers."""
        for dst, w in zip(self.weights(), weights, strict=True):
            dst.copy_(w)

    def to_network(self) -> Any:
        """This model as the compiler's IR (``firstspike.compiler.ir.Network``), see
        :func:`firstspike.runtime.ttfs.export.to_network`."""
        from firstspike.runtime.ttfs.export import to_network  # lazy: the compiler is needed only for deployment

        return to_network(self)

    def architecture(self) -> dict[str, Any]:
        """Constructor arguments as a plain dict (what :meth:`from_dict` needs besides the weights)."""
        return {
            "n_inputs": self.n_inputs,
            "layer_sizes": list(self.layer_sizes),
            "bias_times": list(self.bias_times),
            "tau_ratio": self.tau_ratio,
            "weight_means": list(self.weight_means),
            "weight_stds": list(self.weight_stds),
            "max_dw_norm": self.max_dw_norm,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (format, architecture, weights, metadata), ``torch.load(weights_only=True)``-safe."""
        return {
            "format": MODEL_FORMAT,
            "architecture": self.architecture(),
            "weights": [w.detach().cpu().clone() for w in self.weights()],
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TTFSNetwork:
        """Rebuild a network saved with :meth:`to_dict`."""
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a firstspike TTFS model (expected format {MODEL_FORMAT!r})")
        net = cls(**data["architecture"], metadata=data.get("metadata") or {})
        weights = data["weights"]
        if len(weights) != len(net.layers):
            raise ValueError(f"model has {len(net.layers)} layers but {len(weights)} weight tensors")
        with torch.no_grad():
            for dst, w in zip(net.weights(), weights, strict=True):
                if tuple(w.shape) != tuple(dst.shape):
                    raise ValueError(f"weight shape {tuple(w.shape)} != expected {tuple(dst.shape)}")
                dst.copy_(w.to(torch.float64))
        return net

    def save(self, path: str | Any) -> None:
        """Save :meth:`to_dict` with ``torch.save``."""
        torch.save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Any) -> TTFSNetwork:
        """Load a model saved with :meth:`save` (``torch.load(weights_only=True)``: no code is unpickled)."""
        return cls.from_dict(torch.load(path, map_location="cpu", weights_only=True))
