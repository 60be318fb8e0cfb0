"""Determinism where the device claims it: same configuration, inputs and seed give identical events."""

from __future__ import annotations

from dataclasses import replace

import pytest

from firstspike.hal.backend import Backend, RunOptions
from firstspike.hal.events import SpikeEvents
from firstspike.runtime.conformance.harness import Profile, run_case, with_offset
from firstspike.runtime.conformance.networks import probe_case, yinyang_like_case


def test_same_seed_same_events(device: Backend, semantic: Profile) -> None:
    if not semantic.info.deterministic:
        pytest.skip("device does not claim determinism (DeviceInfo.deterministic is False)")
    net = yinyang_like_case(seed=3, batch=6)
    a = run_case(device, net, seed=11, record="all")
    run_case(device, probe_case(), seed=12)  # something else in between
    b = run_case(device, net, seed=11, record="all")
    assert a == b, "same config, inputs and seed gave different events on a device that claims determinism"
    assert len(a) > 0


def test_seed_only_matters_on_noisy_devices(device: Backend, semantic: Profile) -> None:
    net = probe_case()
    a = run_case(device, net, seed=21)
    b = run_case(device, net, configure=False, seed=22)
    semantic.assert_alike(a, b, net.neurons, "two seeds")


def test_split_batch_reproduces_whole_batch(device: Backend, semantic: Profile) -> None:
    """A batch run in two chunks (the second with ``RunOptions.entry_offset``) gives the whole batch's events."""
    if not semantic.info.deterministic:
        pytest.skip("device does not claim determinism (DeviceInfo.deterministic is False)")
    if not hasattr(RunOptions, "entry_offset"):
        pytest.skip("this hal has no RunOptions.entry_offset")
    net = yinyang_like_case(seed=4, batch=6)
    whole = run_case(device, net, seed=31)
    first, second = net.inputs.split([2, 4])
    options = replace(net.options, seed=31)
    a = device.run(first, options).spikes
    b = device.run(second, with_offset(options, 2)).spikes
    joined = SpikeEvents.concatenate([a, b])
    assert joined == whole, "entries 2..5 run as a separate chunk (entry_offset=2) differ from the whole batch"
