"""Shared networks for the compiler tests: the reference yin-yang and MNIST16 architectures."""

import numpy as np
import pytest

from firstspike.compiler import Layer, Network


def yinyang(seed: int = 0) -> Network:
    """4+1 -> 120+1 -> 3 with bias spikes at 0.9 in both layers (reference init)."""
    rng = np.random.default_rng(seed)
    return Network(
        4,
        (
            Layer(rng.normal(1.5, 0.8, (5, 120)), bias_time=0.9, name="hidden"),
            Layer(rng.normal(0.5, 0.8, (121, 3)), bias_time=0.9, name="out"),
        ),
        name="yinyang",
    )


def mnist16(seed: int = 0) -> Network:
    """256 -> 246 -> 10 without bias: the full-chip MNIST16 network."""
    rng = np.random.default_rng(seed)
    return Network(
        256,
        (Layer(rng.normal(0.1, 0.4, (256, 246)), name="hidden"), Layer(rng.normal(0.6, 0.8, (246, 10)), name="out")),
        name="mnist16",
    )


@pytest.fixture
def yinyang_net() -> Network:
    return yinyang()


@pytest.fixture
def mnist16_net() -> Network:
    return mnist16()


@pytest.fixture
def make_net():
    """Factories by name: ``make_net("yinyang", seed)`` / ``make_net("mnist16", seed)``."""
    return lambda kind, seed=0: {"yinyang": yinyang, "mnist16": mnist16}[kind](seed)
