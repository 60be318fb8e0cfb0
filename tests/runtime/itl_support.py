"""Shared helpers for the session / in-the-loop / deploy tests: small compiled networks and a spying backend."""

from __future__ import annotations

import numpy as np
import torch

from firstspike.compiler import CompileOptions, Layer, Network, compile
from firstspike.compiler.artifact import CompiledNetwork
from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.events import InputSpikes


def small_network(seed: int = 0, n_hidden: int = 20, n_out: int = 3) -> Network:
    """A yin-yang-shaped network 4+1 -> n_hidden+1 -> n_out with the reference initialisation."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(5, n_hidden, generator=g, dtype=torch.float64) * 0.8 + 1.5
    w2 = torch.randn(n_hidden + 1, n_out, generator=g, dtype=torch.float64) * 0.8 + 0.5
    return Network(4, (Layer(w1.numpy(), bias_time=0.9), Layer(w2.numpy(), bias_time=0.9)), "small")


def compiled_small(seed: int = 0, weight_scale: float | tuple[float, ...] | None = (12.0, 12.0)) -> CompiledNetwork:
    return compile(small_network(seed), CompileOptions(weight_scale=weight_scale))


def yinyang_like_inputs(n: int, seed: int = 0) -> np.ndarray:
    """(n, 4) input times 0.15 + v * 1.85 for v = (x, y, 1-x, 1-y), x, y uniform."""
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2))
    v = np.concatenate([xy, 1 - xy], axis=1)
    return 0.15 + v * 1.85


class SpyBackend(Backend):
    """Wraps a backend and records every configure() and run() call."""

    scheme = "spy"

    def __init__(self, inner: Backend, max_batch: int | None = None) -> None:
        self.inner = inner
        self.configs: list[ChipConfig | ConfigDiff] = []
        self.runs: list[tuple[int, RunOptions]] = []
        self._max_batch = max_batch

    def info(self) -> DeviceInfo:
        info = self.inner.info()
        if self._max_batch is None:
            return info
        from dataclasses import replace

        return replace(info, max_batch=self._max_batch)

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        self.configs.append(config)
        self.inner.configure(config)

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        self.check_run_request(inputs, options)
        self.runs.append((inputs.batch_size, options))
        return self.inner.run(inputs, options)

    def close(self) -> None:
        self.inner.close()
