"""Configuration: full and diff uploads agree, the configuration mirror books what the device holds, wrong diffs
and invalid configs are rejected with a hal error and leave the previous configuration active."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from firstspike.hal.backend import Backend
from firstspike.hal.config import ChipConfig
from firstspike.hal.errors import HalError
from firstspike.runtime.conformance.harness import Profile, run_case
from firstspike.runtime.conformance.networks import PROBE_NEURONS, Case, probe_case


def _variant() -> Case:
    """The probe with neuron 0 disabled and neuron 3's synapse strengthened: fires differently."""
    case = probe_case()
    cfg = case.config.copy()
    cfg.neurons.values["enabled"][0] = False
    cfg.synapses.weights[0, 3, 3] = 63
    return Case("probe-variant", cfg, case.inputs, case.options, case.neurons)


def test_full_and_diff_uploads_are_accepted(device: Backend) -> None:
    a, b = probe_case().config, _variant().config
    device.configure(a)
    device.configure(a.diff(b))
    device.configure(b.diff(b))  # an empty diff
    device.configure(b.diff(a))
    device.configure(b)
    device.configure(ChipConfig())


def test_mirror_books_what_the_device_holds(device: Backend) -> None:
    """The Backend base class keeps a mirror of the configuration the device holds, also for backends that
    implement ``configure`` themselves. ``sync`` sends a diff against it, and nothing when it holds the target."""
    a, b = probe_case().config, _variant().config
    device.configure(a)
    assert device.mirror.digest == a.digest()
    device.configure(a.diff(b))
    assert device.mirror.digest == b.digest()
    plan = device.sync(a)
    assert plan.kind == "diff" and plan.diff is not None and plan.diff.base_digest == b.digest()
    assert device.mirror.digest == a.digest()
    assert device.sync(a).kind == "none"


def test_diff_behaves_like_full_upload(device: Backend, semantic: Profile) -> None:
    a, b = probe_case(), _variant()
    device.configure(a.config)
    ev_a = run_case(device, a, configure=False)
    device.configure(a.config.diff(b.config))
    via_diff = run_case(device, b, configure=False)
    direct = run_case(device, b)
    semantic.assert_alike(via_diff, direct, b.neurons, "config reached through a diff vs uploaded in full")
    fired_a = set(ev_a.events["label"].tolist())
    fired_b = set(direct.events["label"].tolist())
    assert 0 in fired_a and 0 not in fired_b, f"disabling neuron 0 had no effect: {fired_a} -> {fired_b}"
    device.configure(b.config.diff(a.config))
    back = run_case(device, a, configure=False)
    semantic.assert_alike(back, ev_a, a.neurons, "diff back to the first config")


def test_diff_for_another_base_is_rejected(device: Backend, profile: Profile) -> None:
    a, b = probe_case(), _variant()
    other = ChipConfig()
    other.synapses.weights[1, 200, 200] = 1  # a base the device does not hold
    device.configure(a.config)
    before = None if profile.mock else run_case(device, a, configure=False)
    with pytest.raises(HalError):
        device.configure(other.diff(b.config))
    if before is not None:
        after = run_case(device, a, configure=False)
        profile.assert_alike(before, after, a.neurons, "after a rejected diff the old config must stay active")


def _weight_too_big(cfg: ChipConfig) -> None:
    cfg.synapses.weights[0, 3, 3] = 64  # 6-bit weights: 0..63


def _label_too_big(cfg: ChipConfig) -> None:
    cfg.synapses.labels[0, 0, 0] = 64  # 6-bit labels: 0..63


def _threshold_too_big(cfg: ChipConfig) -> None:
    cfg.neurons.values["threshold"][1] = 1023  # 10-bit parameters: 0..1022


def _row_mode_unknown(cfg: ChipConfig) -> None:
    cfg.row_modes[0, 2] = 3  # off / excitatory / inhibitory


def _weights_wrong_dtype(cfg: ChipConfig) -> None:
    cfg.synapses.weights = cfg.synapses.weights.astype(np.int16)


def _weights_wrong_shape(cfg: ChipConfig) -> None:
    cfg.synapses.weights = cfg.synapses.weights[:, :128].copy()


INVALID: dict[str, Callable[[ChipConfig], None]] = {
    "weight_out_of_range": _weight_too_big,
    "label_out_of_range": _label_too_big,
    "threshold_out_of_range": _threshold_too_big,
    "row_mode_out_of_range": _row_mode_unknown,
    "weights_wrong_dtype": _weights_wrong_dtype,
    "weights_wrong_shape": _weights_wrong_shape,
}


@pytest.mark.parametrize("defect", sorted(INVALID))
def test_invalid_config_is_rejected_and_old_config_stays(device: Backend, profile: Profile, defect: str) -> None:
    good = probe_case()
    device.configure(good.config)
    before = None if profile.mock else run_case(device, good, configure=False)
    bad = good.config.copy()
    bad.neurons.values["enabled"][PROBE_NEURONS] = False  # if anything got applied, behaviour would change
    INVALID[defect](bad)
    with pytest.raises(HalError):
        device.configure(bad)
    if before is not None:
        after = run_case(device, good, configure=False)
        profile.assert_alike(before, after, good.neurons, f"after rejecting a config ({defect})")


def test_non_config_is_rejected(device: Backend) -> None:
    with pytest.raises((TypeError, HalError)):
        device.configure(b"not a config")  # type: ignore[arg-type]
