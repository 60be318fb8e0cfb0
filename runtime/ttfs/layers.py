"""TTFS layers and the layered network model (pure torch, float64, model units: tau_s = 1, theta = 1), with optional
trainable transmission delays per layer (axonal, synaptic or dendritic; see :mod:`firstspike.runtime.ttfs.delays`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from firstspike.runtime.ttfs.delays import DELAY_KINDS, delay_shape, delayed_first_spike_times, delayed_spike_times
from firstspike.runtime.ttfs.spiketime import first_spike_times, spike_times

__all__ = [
    "DEFAULT_DELAY_INIT_SCALE",
    "DEFAULT_DELAY_INIT_STD",
    "DEFAULT_DELAY_MAX",
    "MODEL_FORMAT",
    "TTFSLinear",
    "TTFSNetwork",
]

#: value of the ``format`` key of a saved model dict
MODEL_FORMAT = "firstspike.ttfs.v1"

#: default largest delay (tau_s): the range the chip's axonal delay lines are to have, 0 .. 4 tau_s (3 000 ticks of
#: 8 ns at tau_s = 750 ticks; their step will be 8 ticks = 1/93.75 tau_s ~ 0.0107 tau_s)
DEFAULT_DELAY_MAX = 4.0

#: delay initialisation as in the DelGrad reference code: ``scale * sigmoid(x)``, ``x ~ Normal(0, std)``, i.e.
#: delays around scale / 2 (0.5 +- ~0.06 tau_s with these defaults)
DEFAULT_DELAY_INIT_SCALE = 1.0
DEFAULT_DELAY_INIT_STD = 0.25


class TTFSLinear(nn.Module):
    """Fully connected layer of TTFS LIF neurons: input times (batch, n_in) -> output times (batch, n_out).

    ``weight`` has shape (n_in + 1, n_out) when ``bias_time`` is given (the last row belongs to a bias
    input that spikes at ``bias_time`` for every sample) and (n_in, n_out) otherwise, in model units
    (threshold theta = 1, tau_s = 1). ``tau_ratio`` = tau_m / tau_s is 1 or 2. ``max_dw_norm`` is applied in
    the backward pass while the module is in training mode (None = off).

    ``delays``: ``"none"`` (default, no delay parameter), ``"axonal"`` (``delay`` (rows,): one per input,
    the bias input included), ``"synaptic"`` ((rows, n_out): one per connection) or ``"dendritic"`` ((n_out,):
    one per neuron); a trainable parameter in units of tau_s, kept in ``[0, delay_max]`` by :meth:`constrain_`.
    Initialised as the reference does: ``delay_init_scale * sigmoid(Normal(0, delay_init_std))``.
    ``init_delays=False`` leaves the delays at 0 (:class:`TTFSNetwork` draws them after all weights).
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
        delays: str = "none",
        delay_max: float = DEFAULT_DELAY_MAX,
        delay_init_scale: float = DEFAULT_DELAY_INIT_SCALE,
        delay_init_std: float = DEFAULT_DELAY_INIT_STD,
        init_delays: bool = True,
    ) -> None:
        super().__init__()
        if tau_ratio not in (1, 2):
            raise ValueError(f"tau_ratio must be 1 or 2, got {tau_ratio!r}")
        if delays not in DELAY_KINDS:
            raise ValueError(f"delays must be one of {', '.join(DELAY_KINDS)}; got {delays!r}")
        if not (math.isfinite(delay_max) and delay_max >= 0):
            raise ValueError(f"delay_max must be a finite number >= 0 (tau_s), got {delay_max!r}")
        self.n_in = int(n_in)
        self.n_out = int(n_out)
        self.bias_time = None if bias_time is None else float(bias_time)
        self.tau_ratio = int(tau_ratio)
        self.max_dw_norm = max_dw_norm
        rows = self.n_in + (1 if self.bias_time is not None else 0)
        self.weight = nn.Parameter(torch.empty(rows, self.n_out, dtype=torch.float64))
        self.delay_kind = delays
        self.delay_max = float(delay_max)
        self.delay_init_scale = float(delay_init_scale)
        self.delay_init_std = float(delay_init_std)
        self.delay: nn.Parameter | None
        if delays == "none":
            self.register_parameter("delay", None)
        else:
            self.delay = nn.Parameter(torch.zeros(delay_shape(delays, rows, self.n_out), dtype=torch.float64))
        self.reset_parameters(weight_mean, weight_std, generator)
        if init_delays:
            self.reset_delays(generator)

    def reset_parameters(
        self, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None
    ) -> None:
        """Draw all weights (bias row included) from Normal(mean, std), as the reference does."""
        with torch.no_grad():
            self.weight.normal_(mean, std, generator=generator)

    def reset_delays(self, generator: torch.Generator | None = None) -> None:
        """Draw the delays as the DelGrad reference does, ``delay_init_scale * sigmoid(Normal(0, delay_init_std))``
        (tau_s), then clamp them to ``[0, delay_max]``; no-op without delays."""
        if self.delay is None:
            return
        with torch.no_grad():
            x = torch.empty_like(self.delay).normal_(0.0, self.delay_init_std, generator=generator)
            self.delay.copy_(torch.sigmoid(x).mul_(self.delay_init_scale))
        self.constrain_()

    def constrain_(self) -> None:
        """Keep the delays in ``[0, delay_max]`` (in place; call after every optimizer step); no-op without delays."""
        if self.delay is not None:
            with torch.no_grad():
                self.delay.clamp_(0.0, self.delay_max)

    def with_bias(self, input_times: torch.Tensor) -> torch.Tensor:
        """Input times with the bias spike appended as the last column (no-op without bias)."""
        x = input_times.to(torch.float64)
        if self.bias_time is None:
            return x
        return torch.cat([x, x.new_full((x.shape[0], 1), self.bias_time)], dim=1)

    def forward(self, input_times: torch.Tensor, output_times: torch.Tensor | None = None) -> torch.Tensor:
        """Output spike times (batch, n_out), +inf = silent; ``output_times``: measured times to use (the
        neurons' output times, a dendritic delay included; the layer's axonal or synaptic delays are applied to
        ``input_times`` here)."""
        x = self.with_bias(input_times)
        d = self.delay
        differentiable = torch.is_grad_enabled() and (
            self.weight.requires_grad or x.requires_grad or (d is not None and d.requires_grad))
        if not differentiable:
            if output_times is not None:
                t = output_times.to(torch.float64)
                return torch.where(torch.isnan(t), torch.full_like(t, math.inf), t)
            if d is None:
                return first_spike_times(x, self.weight, self.tau_ratio)
            return delayed_first_spike_times(x, self.weight, d, self.delay_kind, self.tau_ratio)
        max_dw_norm = self.max_dw_norm if self.training else None
        if d is None:
            return spike_times(x, self.weight, self.tau_ratio, output_times=output_times, max_dw_norm=max_dw_norm)
        return delayed_spike_times(x, self.weight, d, self.delay_kind, self.tau_ratio, output_times=output_times,
                                   max_dw_norm=max_dw_norm)

    def extra_repr(self) -> str:
        delays = "" if self.delay is None else f", delays={self.delay_kind}, delay_max={self.delay_max}"
        return (f"n_in={self.n_in}, n_out={self.n_out}, bias_time={self.bias_time}, tau_ratio={self.tau_ratio}"
                + delays)


class TTFSNetwork(nn.Module):
    """Layered TTFS network; ``forward`` returns the spike times of every layer (the last is the output).

    ``layer_sizes`` lists the number of neurons per layer (hidden layers then output layer);
    ``bias_times`` gives one bias spike time per layer (None = no bias in that layer); weight means and
    standard deviations are per layer; the draw comes from ``generator``, or a generator seeded with ``seed``, or
    torch's global one. ``metadata`` is a free dict (task name, input encoding, ...) that is saved with the model.

    ``delays``: the delay kind of every layer (one of ``"none"``, ``"axonal"``, ``"synaptic"``,
    ``"dendritic"``; one string for all layers or one per layer), ``delay_max`` (tau_s, default
    :data:`DEFAULT_DELAY_MAX`, one or per layer) the range ``[0, delay_max]`` the delays are kept in,
    ``delay_init_scale``/``delay_init_std`` their initialisation (:meth:`TTFSLinear.reset_delays`). All weights
    are drawn first, then all delays, so a network with delays starts with the weights the same network without
    delays would have.
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
        delays: str | Sequence[str] = "none",
        delay_max: float | Sequence[float] = DEFAULT_DELAY_MAX,
        delay_init_scale: float = DEFAULT_DELAY_INIT_SCALE,
        delay_init_std: float = DEFAULT_DELAY_INIT_STD,
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
        kinds = [delays] * n_layers if isinstance(delays, str) else list(delays)
        maxima = [delay_max] * n_layers if isinstance(delay_max, int | float) else list(delay_max)
        per_layer: dict[str, list[Any]] = {
            "bias_times": bias_times, "weight_means": weight_means, "weight_stds": weight_stds, "delays": kinds,
            "delay_max": maxima,
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
        self.delay_init_scale = float(delay_init_scale)
        self.delay_init_std = float(delay_init_std)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.layers = nn.ModuleList()
        n_prev = self.n_inputs
        specs = zip(self.layer_sizes, self.bias_times, self.weight_means, self.weight_stds, kinds, maxima, strict=True)
        for n, b, m, s, kind, d_max in specs:
            self.layers.append(
                TTFSLinear(
                    n_prev, n, b, tau_ratio=tau_ratio, weight_mean=m, weight_std=s,
                    max_dw_norm=max_dw_norm, generator=generator, delays=kind, delay_max=float(d_max),
                    delay_init_scale=delay_init_scale, delay_init_std=delay_init_std, init_delays=False,
                )
            )
            n_prev = n
        for layer in self._linear():
            layer.reset_delays(generator)

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

    def _linear(self) -> list[TTFSLinear]:
        return [cast(TTFSLinear, layer) for layer in self.layers]

    def weights(self) -> list[nn.Parameter]:
        """Every layer's weight matrix, (n_in + bias row, n_out) in model units: the parameters themselves."""
        return [layer.weight for layer in self._linear()]

    @property
    def delay_kinds(self) -> list[str]:
        """The delay kind of every layer (``"none"`` where a layer has no delays)."""
        return [layer.delay_kind for layer in self._linear()]

    @property
    def has_delays(self) -> bool:
        """True when any layer has delay parameters."""
        return any(layer.delay is not None for layer in self._linear())

    def delays(self) -> list[nn.Parameter]:
        """The delay parameters (tau_s) of the layers that have them, in layer order: the parameters themselves."""
        return [layer.delay for layer in self._linear() if layer.delay is not None]

    def parameter_groups(self, lr: float, delay_lr: float | None = None) -> list[dict[str, Any]]:
        """Optimizer parameter groups: the weights with ``lr`` and, when the model has delays, the delays with
        ``delay_lr`` (default ``lr``), as the reference gives delay layers their own learning rate."""
        groups: list[dict[str, Any]] = [{"params": self.weights(), "lr": float(lr)}]
        if self.has_delays:
            groups.append({"params": self.delays(), "lr": float(lr if delay_lr is None else delay_lr)})
        return groups

    def constrain_(self) -> None:
        """Keep every layer's delays in its range ``[0, delay_max]`` (call after each optimizer step)."""
        for layer in self._linear():
            layer.constrain_()

    def weight_snapshot(self) -> list[torch.Tensor]:
        """Detached copies of every layer's weight matrix (model units), e.g. to keep the best epoch's."""
        return [w.detach().clone() for w in self.weights()]

    @torch.no_grad()
    def load_weights(self, weights: list[torch.Tensor]) -> None:
        """Copy ``weights`` (one matrix per layer, as from :meth:`weight_snapshot`) into the layers."""
        for dst, w in zip(self.weights(), weights, strict=True):
            dst.copy_(w)

    def trained_parameters(self) -> list[nn.Parameter]:
        """Every layer's weights, then the delays of the layers that have them: the order of :meth:`snapshot`."""
        return [*self.weights(), *self.delays()]

    def snapshot(self) -> list[torch.Tensor]:
        """Detached copies of :meth:`trained_parameters` (for a model without delays the same as
        :meth:`weight_snapshot`), e.g. to keep the best epoch's."""
        return [p.detach().clone() for p in self.trained_parameters()]

    @torch.no_grad()
    def load_snapshot(self, params: list[torch.Tensor]) -> None:
        """Copy a :meth:`snapshot` back into the model."""
        for dst, p in zip(self.trained_parameters(), params, strict=True):
            dst.copy_(p)

    def to_network(self) -> Any:
        """This model as the compiler's IR (``firstspike.compiler.ir.Network``), see
        :func:`firstspike.runtime.ttfs.export.to_network` (delays included; the chip holds axonal ones)."""
        from firstspike.runtime.ttfs.export import to_network  # lazy: the compiler is needed only for deployment

        return to_network(self)

    def architecture(self) -> dict[str, Any]:
        """Constructor arguments as a plain dict (what :meth:`from_dict` needs besides the weights); the delay
        options are included when the model has delays."""
        arch: dict[str, Any] = {
            "n_inputs": self.n_inputs,
            "layer_sizes": list(self.layer_sizes),
            "bias_times": list(self.bias_times),
            "tau_ratio": self.tau_ratio,
            "weight_means": list(self.weight_means),
            "weight_stds": list(self.weight_stds),
            "max_dw_norm": self.max_dw_norm,
        }
        if self.has_delays:
            arch.update({
                "delays": self.delay_kinds,
                "delay_max": [layer.delay_max for layer in self._linear()],
                "delay_init_scale": self.delay_init_scale,
                "delay_init_std": self.delay_init_std,
            })
        return arch

    def to_dict(self, snapshot: list[torch.Tensor] | None = None) -> dict[str, Any]:
        """Plain dict (format, architecture, weights, delays if any, metadata), ``torch.load(weights_only=True)``-
        safe; ``snapshot`` (from :meth:`snapshot`): save those parameters instead of the current ones."""
        params = snapshot if snapshot is not None else self.trained_parameters()
        n = len(self.layers)
        out: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "architecture": self.architecture(),
            "weights": [w.detach().cpu().clone() for w in params[:n]],
            "metadata": dict(self.metadata),
        }
        if self.has_delays:
            rest = iter(params[n:])
            out["delays"] = [None if layer.delay is None else next(rest).detach().cpu().clone()
                             for layer in self._linear()]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TTFSNetwork:
        """Rebuild a network saved with :meth:`to_dict` (models saved before delays existed load unchanged)."""
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a firstspike TTFS model (expected format {MODEL_FORMAT!r})")
        net = cls(**data["architecture"], metadata=data.get("metadata") or {})
        weights = data["weights"]
        if len(weights) != len(net.layers):
            raise ValueError(f"model has {len(net.layers)} layers but {len(weights)} weight tensors")
        delays = data.get("delays") or [None] * len(net.layers)
        if len(delays) != len(net.layers):
            raise ValueError(f"model has {len(net.layers)} layers but {len(delays)} delay entries")
        with torch.no_grad():
            for k, (layer, w, d) in enumerate(zip(net._linear(), weights, delays, strict=True)):
                if tuple(w.shape) != tuple(layer.weight.shape):
                    raise ValueError(f"weight shape {tuple(w.shape)} != expected {tuple(layer.weight.shape)}")
                layer.weight.copy_(w.to(torch.float64))
                if (d is None) != (layer.delay is None):
                    raise ValueError(f"layer {k}: delays of kind {layer.delay_kind!r} in the architecture but "
                                     f"{'none' if d is None else 'a tensor'} saved")
                if d is not None and layer.delay is not None:
                    if tuple(d.shape) != tuple(layer.delay.shape):
                        raise ValueError(f"layer {k}: delay shape {tuple(d.shape)} != expected "
                                         f"{tuple(layer.delay.shape)}")
                    layer.delay.copy_(d.to(torch.float64))
        return net

    def save(self, path: str | Any) -> None:
        """Save :meth:`to_dict` with ``torch.save``."""
        torch.save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Any) -> TTFSNetwork:
        """Load a model saved with :meth:`save` (``torch.load(weights_only=True)``: no code is unpickled)."""
        return cls.from_dict(torch.load(path, map_location="cpu", weights_only=True))
