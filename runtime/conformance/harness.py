"""What the conformance checks share: running cases on a device and judging "behaves alike"."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest

from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig
from firstspike.hal.events import InputSpikes, SpikeEvents
from firstspike.runtime.conformance.networks import Case, probe_case
from firstspike.runtime.conformance.tolerance import SHIFT_SLACK_TICKS, compare, describe_difference


def run_batched(device: Backend, inputs: InputSpikes, options: RunOptions) -> RunResult:
    """Run ``inputs``, split into chunks of the device's ``max_batch`` when it is smaller."""
    info = device.info()
    if options.duration_ticks > info.max_duration_ticks:
        pytest.skip(f"check needs {options.duration_ticks} ticks per entry; device allows {info.max_duration_ticks}")
    if inputs.batch_size <= info.max_batch:
        return device.run(inputs, options)
    sizes = [info.max_batch] * (inputs.batch_size // info.max_batch)
    if inputs.batch_size % info.max_batch:
        sizes.append(inputs.batch_size % info.max_batch)
    offsets = np.cumsum([0, *sizes[:-1]])
    parts = [device.run(p, with_offset(options, int(o))) for p, o in zip(inputs.split(sizes), offsets, strict=True)]
    return RunResult(
        SpikeEvents.concatenate([p.spikes for p in parts]),
        dropped=sum(p.dropped for p in parts),
        stats={},
    )


def with_offset(options: RunOptions, offset: int) -> RunOptions:
    """``options`` for a chunk whose entry 0 is entry ``offset`` of the whole batch (noise keys follow it)."""
    if offset == 0 or not hasattr(options, "entry_offset"):
        return options
    return replace(options, entry_offset=options.entry_offset + offset)


def run_case(device: Backend, case: Case, *, configure: bool = True, **option_changes: Any) -> SpikeEvents:
    """Configure ``case.config`` (unless told not to) and run its inputs; returns the spikes."""
    if configure:
        device.configure(case.config)
    options = replace(case.options, **option_changes) if option_changes else case.options
    res = run_batched(device, case.inputs, options)
    assert res.dropped == 0, f"{case.name}: {res.dropped} events dropped on a small network"
    return res.spikes


@dataclass(frozen=True)
class Profile:
    """What the suite knows about the device under test."""

    uri: str
    info: DeviceInfo
    claims: dict[str, Any]
    mock: bool
    noise_free: bool
    noise_source: str  # "claimed" or "measured"

    def assert_alike(self, a: SpikeEvents, b: SpikeEvents, neurons: np.ndarray, what: str) -> None:
        """Two runs that must behave alike: identical on noise-free devices, within jitter otherwise."""
        if self.noise_free:
            assert a == b, f"{what}: results differ on a noise-free device; {describe_difference(a, b)}"
            return
        c = compare(a, b, neurons)
        assert c.agreement >= self.claims["jitter_agreement"], (
            f"{what}: fired/silent agreement {c.agreement:.3f} < jitter_agreement {self.claims['jitter_agreement']}"
            f" ({c})"
        )
        assert c.mean_abs_dt <= self.claims["jitter_ticks"], (
            f"{what}: mean |dt| {c.mean_abs_dt:.1f} ticks > jitter_ticks {self.claims['jitter_ticks']} ({c})"
        )

    def assert_shifted(self, a: np.ndarray, b: np.ndarray, shift: int, what: str) -> None:
        """First-spike tick matrices ``b`` = ``a`` moved by ``shift`` ticks (-1 = silent)."""
        fa, fb = a >= 0, b >= 0
        both = fa & fb
        dt = (b - a)[both] - shift
        if self.noise_free:
            assert np.array_equal(fa, fb), f"{what}: different neurons fired after the shift:\n{a}\n{b}"
            assert np.all(np.abs(dt) <= SHIFT_SLACK_TICKS), (
                f"{what}: spikes moved by {sorted(set(((b - a)[both]).tolist()))} ticks, expected {shift}"
                f" +- {SHIFT_SLACK_TICKS}"
            )
            return
        agreement = float((fa == fb).mean())
        assert agreement >= self.claims["jitter_agreement"], f"{what}: fired/silent agreement {agreement:.3f}"
        mean = float(np.abs(dt).mean()) if len(dt) else 0.0
        assert mean <= self.claims["jitter_ticks"], f"{what}: spikes moved by {shift} + {mean:.1f} ticks on average"


def measure_noise_free(device: Backend) -> bool:
    """True when two different seeds give identical events on the probe network (8 entries)."""
    case = probe_case()
    a = run_case(device, case, seed=1, record="all")
    b = run_case(device, case, configure=False, seed=2, record="all")
    return a == b


def quiet_config() -> ChipConfig:
    """A configuration with nothing enabled."""
    return ChipConfig()
