"""The energy model against the published BrainScaleS-2 measurements it is anchored to (docs/energy.md): a change of
a constant that breaks the anchoring fails here."""

from __future__ import annotations

import numpy as np
import pytest

from firstspike.runtime.training.energy import (
    ENERGY_CONSTANTS,
    MNIST16_COUNTERS,
    PUBLISHED_FIGURES,
    STRADMANN_2022,
    EnergyModel,
    PublishedFigure,
    anchoring_table,
    solve_static_power,
)

FIGURES = {f.key: f for f in PUBLISHED_FIGURES}


def anchored(model: EnergyModel, figure: PublishedFigure) -> bool:
    """The model, fed the workload's counters and chip time, lands within the figure's factor (and under it, when
    the publication gives an upper bound)."""
    ratio = model.reproduce(figure) / figure.energy_j
    within = 1 / figure.tolerance <= ratio <= figure.tolerance
    return within and (ratio <= 1.0 if figure.bound else True)


@pytest.mark.parametrize("key", sorted(FIGURES))
def test_default_model_reproduces_each_published_figure(key: str) -> None:
    assert anchored(EnergyModel(), FIGURES[key]), anchoring_table()


def test_static_power_is_the_one_solved_from_the_mnist16_measurement() -> None:
    solved = solve_static_power(FIGURES["goeltz2021-mnist16"])
    assert 0.16 < solved < 0.18
    assert EnergyModel().static_w == pytest.approx(solved, rel=0.02)  # rounded to two digits
    assert ENERGY_CONSTANTS["static_w"]["value"] == EnergyModel().static_w


def test_average_power_of_a_spiking_classification_stays_under_the_published_200_mw() -> None:
    for f in PUBLISHED_FIGURES:
        assert EnergyModel().reproduce(f) / f.chip_seconds < 0.200
    # and far under the ASIC power of the busier non-spiking (matrix-multiply) mode
    assert EnergyModel().static_w < STRADMANN_2022["asic_power_w"] / 3
    assert STRADMANN_2022["asic_power_w"] == pytest.approx(0.696, abs=1e-3)


@pytest.mark.parametrize("change", [{"static_w": 0.70}, {"static_w": 0.10}, {"synaptic_event_j": 1e-10},
                                    {"spike_j": 5e-9}])
def test_a_constant_that_breaks_the_anchoring_is_caught(change: dict[str, float]) -> None:
    model = EnergyModel(**change)  # the old 0.70 W, or event energies 10x / 50x the estimates
    assert not all(anchored(model, f) for f in PUBLISHED_FIGURES), anchoring_table(model)


def test_the_mnist16_input_events_are_the_test_images_pixels() -> None:
    from firstspike.runtime.training.datasets import load_dataset

    times = load_dataset("mnist16", "test").times.numpy()
    assert np.isfinite(times).sum(axis=1).mean() == pytest.approx(MNIST16_COUNTERS["input_events"], abs=0.01)


def test_the_anchoring_table_lists_every_figure() -> None:
    table = anchoring_table()
    assert all(f.key in table for f in PUBLISHED_FIGURES)
    assert "| 8.4 uJ | 8.47 uJ | 1.009 |" in table
