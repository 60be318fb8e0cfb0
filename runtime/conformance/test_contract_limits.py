"""Requests beyond the device's limits fail with CapacityError/FieldRangeError and the device stays usable."""

from __future__ import annotations

import numpy as np
import pytest

from firstspike.hal import chip
from firstspike.hal.backend import Backend, RunOptions
from firstspike.hal.errors import CapacityError, FieldRangeError
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes
from firstspike.runtime.conformance.harness import Profile, run_case
from firstspike.runtime.conformance.networks import probe_case


def _still_usable(device: Backend, profile: Profile, before: object, what: str) -> None:
    case = probe_case()
    after = run_case(device, case, configure=False)
    if not profile.mock:
        profile.assert_alike(before, after, case.neurons, f"after {what}")  # type: ignore[arg-type]


@pytest.fixture
def configured(device: Backend) -> object:
    case = probe_case()
    return run_case(device, case)


def _inputs_of_size(batch: int) -> InputSpikes:
    """One input spike in a batch of ``batch`` entries; beyond hal's own limit the range check is bypassed,
    as a host with a broken or different hal could send it: the device must defend itself."""
    ev = np.zeros(1, dtype=SPIKE_DTYPE)
    if batch <= chip.MAX_BATCH:
        return InputSpikes(ev, batch)
    forged = object.__new__(InputSpikes)
    object.__setattr__(forged, "events", ev)
    object.__setattr__(forged, "batch_size", batch)
    return forged


def _options_of_duration(duration: int) -> RunOptions:
    """RunOptions with ``duration`` ticks (hal's range check bypassed beyond MAX_DURATION_TICKS)."""
    if duration <= chip.MAX_DURATION_TICKS:
        return RunOptions(duration_ticks=duration)
    forged = object.__new__(RunOptions)
    for name, value in RunOptions(duration_ticks=100).__dict__.items():
        object.__setattr__(forged, name, value)
    object.__setattr__(forged, "duration_ticks", duration)
    return forged


def test_oversize_batch_is_rejected(device: Backend, profile: Profile, configured: object) -> None:
    limit = device.info().max_batch
    with pytest.raises((CapacityError, FieldRangeError)):
        device.run(_inputs_of_size(limit + 1), RunOptions(duration_ticks=100))
    _still_usable(device, profile, configured, f"a batch of {limit + 1} > max_batch")


def test_too_long_duration_is_rejected(device: Backend, profile: Profile, configured: object) -> None:
    limit = device.info().max_duration_ticks
    with pytest.raises((CapacityError, FieldRangeError)):
        device.run(_inputs_of_size(1), _options_of_duration(limit + 1))
    _still_usable(device, profile, configured, f"a duration of {limit + 1} > max_duration_ticks")


def test_input_after_the_end_is_rejected(device: Backend, profile: Profile, configured: object) -> None:
    ev = np.zeros(1, dtype=SPIKE_DTYPE)
    ev["time"] = 500
    with pytest.raises((CapacityError, FieldRangeError)):
        device.run(InputSpikes(ev, 1), RunOptions(duration_ticks=500))
    _still_usable(device, profile, configured, "an input spike at the run's last tick + 1")


def test_readout_beyond_capability_is_rejected(device: Backend, profile: Profile, configured: object) -> None:
    n = device.info().membrane_readout
    if n >= chip.N_NEURONS:
        pytest.skip("the device reads out every neuron")
    readout = tuple(range(n + 1))
    with pytest.raises((CapacityError, FieldRangeError)):
        device.run(probe_case().inputs, RunOptions(duration_ticks=3000, readout=readout))
    _still_usable(device, profile, configured, f"a readout of {n + 1} neurons")


def test_membrane_readout_shape(device: Backend, semantic: Profile) -> None:
    if device.info().membrane_readout < 1:
        pytest.skip("device has no membrane readout (membrane_readout = 0)")
    case = probe_case()
    device.configure(case.config)
    res = device.run(case.inputs, RunOptions(duration_ticks=3000, readout=(0,), readout_period=10))
    assert res.membrane is not None, "readout requested but RunResult.membrane is None"
    assert res.membrane.shape[:2] == (case.inputs.batch_size, 1), f"membrane shape {res.membrane.shape}"
    assert res.membrane.shape[2] >= 1
