"""The configuration mirror (hal/mirror.py) and the Backend base class that keeps it (hal/backend.py).

The guarantee under test: a diff only ever goes to a device that holds its base, and the mirror never claims a
configuration the device might not hold. A recording device checks every diff it receives against what it
really holds, and can fail before or after it applies an upload.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import BackendError, ConfigError, FieldRangeError, LinkError
from firstspike.hal.events import SPIKE_DTYPE, InputSpikes, SpikeEvents
from firstspike.hal.mirror import ConfigMirror, ConfigPlan


def _config(k: int) -> ChipConfig:
    """Distinct small configurations: k sets a few weights and enables k neurons."""
    cfg = ChipConfig()
    cfg.synapses.weights[0, k % 7, : 3 + k] = 1 + k
    cfg.neurons.values["enabled"][: k + 1] = True
    return cfg


CONFIGS = [_config(k) for k in range(4)]
DIGESTS = [c.digest() for c in CONFIGS]
DEFAULT_DIGEST = ChipConfig().digest()


class RecordingDevice(Backend):
    """Implements only the two primitives. ``held`` is what the device really holds; it checks every diff
    against it, as a device must. ``fail`` = "before" / "after" makes the next upload raise a LinkError
    before / after it took effect."""

    scheme = "recording"

    def __init__(self, known: bool = True) -> None:
        self.held = ChipConfig()
        self.loads: list[ChipConfig] = []
        self.diffs: list[ConfigDiff] = []
        self.refused = 0
        self.fail: str | None = None
        self.reject: str | None = None  # a device-specific refusal (ValueError) of the next upload
        self.closed = False
        if known:
            self.mirror.commit_default()

    def info(self) -> DeviceInfo:
        return DeviceInfo(model="recording", serial=0, version="0")

    def _check_open(self) -> None:
        if self.closed:
            raise BackendError("recording device is closed")

    def _take(self, new: ChipConfig) -> None:
        if self.reject:
            reason, self.reject = self.reject, None
            raise ValueError(reason)
        fail, self.fail = self.fail, None
        if fail == "before":
            raise LinkError("line dropped before the upload arrived")
        self.held = new
        if fail == "after":
            raise LinkError("line dropped before the device answered")

    def _load_config(self, config: ChipConfig, digest: bytes) -> None:
        assert digest == config.digest()
        self.loads.append(config)
        self._take(config.copy())

    def _apply_diff(self, diff: ConfigDiff, target: ChipConfig | None) -> None:
        self.diffs.append(diff)
        try:
            new = diff.apply(self.held)  # the device's own check of the base
        except ConfigError:
            self.refused += 1
            raise
        assert target is None or target == new
        self._take(new)

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        return RunResult(SpikeEvents(np.empty(0, SPIKE_DTYPE), inputs.batch_size))

    def close(self) -> None:
        self.closed = True


def _truthful(dev: RecordingDevice) -> None:
    """The mirror claims nothing the device does not hold."""
    m = dev.mirror
    if m.digest is not None:
        assert m.digest == dev.held.digest()
    if m.config is not None:
        assert m.digest is not None and m.config == dev.held


# ---- the refusals and the failure rules the issue asks for ---------------------------------------------
def test_a_diff_for_a_base_the_device_does_not_hold_is_refused_and_changes_nothing():
    dev = RecordingDevice()
    dev.configure(CONFIGS[1])
    generation = dev.mirror.generation
    wrong = CONFIGS[2].diff(CONFIGS[3])
    with pytest.raises(ConfigError, match=r"base configuration differs.*device holds [0-9a-f]{12}"):
        dev.configure(wrong)
    assert dev.diffs == [] and dev.held == CONFIGS[1]  # nothing reached the device
    assert dev.mirror.generation == generation and dev.mirror.digest == DIGESTS[1]
    _truthful(dev)


def test_a_diff_is_refused_while_the_device_state_is_unknown():
    dev = RecordingDevice(known=False)
    with pytest.raises(ConfigError, match="unknown"):
        dev.configure(ChipConfig().diff(CONFIGS[1]))
    assert dev.diffs == [] and dev.loads == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_after_a_failed_upload_the_mirror_claims_nothing(when: str):
    dev = RecordingDevice()
    dev.configure(CONFIGS[1])
    dev.fail = when
    with pytest.raises(LinkError):
        dev.configure(CONFIGS[1].diff(CONFIGS[2]))
    assert not dev.mirror.known  # the device may hold CONFIGS[1] ("before") or CONFIGS[2] ("after")
    _truthful(dev)
    with pytest.raises(ConfigError, match="unknown"):  # no diff may go now, whatever its base
        dev.configure(dev.held.diff(CONFIGS[3]))
    plan = dev.sync(CONFIGS[3])  # a full configuration while the state is unknown: it travels whole
    assert plan.kind == "full" and dev.loads[-1] == CONFIGS[3] and dev.held == CONFIGS[3]
    assert dev.mirror.digest == DIGESTS[3]
    _truthful(dev)


def test_a_full_config_travels_whole_when_the_state_is_unknown():
    dev = RecordingDevice(known=False)
    plan = dev.sync(CONFIGS[2])  # sync may compute diffs, but from nothing there is nothing to diff against
    assert plan.kind == "full" and plan.changed_entries == -1 and len(dev.loads) == 1 and not dev.diffs
    assert dev.sync(CONFIGS[2]).kind == "none" and len(dev.loads) == 1


def test_a_rejected_config_keeps_the_mirror():
    dev = RecordingDevice()
    dev.configure(CONFIGS[1])
    dev.reject = "this device takes at most 2 enabled neurons"
    with pytest.raises(ValueError, match="at most 2"):
        dev.configure(CONFIGS[3])
    assert dev.mirror.digest == DIGESTS[1]
    _truthful(dev)
    bad = CONFIGS[2].copy()
    bad.synapses.weights[1, 1, 1] = 64  # out of range: refused before anything is sent
    with pytest.raises(FieldRangeError):
        dev.configure(bad)
    assert len(dev.loads) == 2 and dev.mirror.digest == DIGESTS[1]  # the refused one reached the device; this not


def test_a_computed_diff_the_device_refuses_is_followed_by_the_whole_config():
    dev = RecordingDevice()
    dev.configure(CONFIGS[1])
    dev.held = CONFIGS[2].copy()  # changed behind the host's back (a rebooted board, another host)
    plan = dev.sync(CONFIGS[3])
    assert dev.refused == 1 and plan.kind == "full" and dev.held == CONFIGS[3]
    _truthful(dev)


def test_an_offered_diff_the_device_refuses_is_not_retried():
    dev = RecordingDevice()
    dev.configure(CONFIGS[1])
    dev.held = CONFIGS[2].copy()
    with pytest.raises(ConfigError):
        dev.configure(CONFIGS[1].diff(CONFIGS[3]))
    assert not dev.mirror.known and dev.held == CONFIGS[2] and dev.loads == [CONFIGS[1]]


def test_closed_device_refuses_even_a_configuration_it_holds():
    dev = RecordingDevice()
    dev.configure(CONFIGS[1])
    dev.close()
    with pytest.raises(BackendError, match="closed"):
        dev.configure(CONFIGS[1])
    with pytest.raises(BackendError, match="closed"):
        dev.sync(CONFIGS[1])


# ---- the plans -----------------------------------------------------------------------------------------
def test_plans_nothing_offered_diff_computed_diff_and_full():
    m = ConfigMirror()
    a, b = CONFIGS[1], CONFIGS[2]
    assert m.plan(a, DIGESTS[1]).kind == "full"  # unknown
    m.commit(None, DIGESTS[1])  # digest only (a device reported it)
    assert m.plan(b, DIGESTS[2]).kind == "full"  # nothing to diff against
    offered = a.diff(b)
    plan = m.plan(b, DIGESTS[2], diff=offered)
    assert plan.kind == "diff" and plan.offered and plan.diff is offered
    assert m.plan(b, DIGESTS[2], diff=CONFIGS[0].diff(b)).kind == "full"  # offered for another base
    m.commit(a, DIGESTS[1])
    plan = m.plan(b, DIGESTS[2])
    assert plan.kind == "diff" and not plan.offered and plan.diff.base_digest == DIGESTS[1]
    assert plan.diff.target_digest == DIGESTS[2] and plan.diff.apply(a) == b
    assert m.plan(b, DIGESTS[2], compute_diff=False).kind == "full"
    none = m.plan(a, DIGESTS[1])
    assert none.kind == "none" and none.diff.empty and none.changed_entries == 0


def test_only_if_smaller_sends_large_changes_whole():
    m = ConfigMirror()
    m.commit_default()
    noisy = ChipConfig()
    noisy.synapses.weights[:] = np.random.default_rng(0).integers(0, 64, noisy.synapses.weights.shape)
    assert m.plan(noisy, noisy.digest(), only_if_smaller=True).kind == "full"
    assert m.plan(noisy, noisy.digest()).kind == "diff"
    assert m.plan(CONFIGS[1], DIGESTS[1], only_if_smaller=True).kind == "diff"


def test_full_configs_as_diffs_is_the_backends_choice():
    class Slow(RecordingDevice):
        full_configs_as_diffs = True

    for cls, kind in ((RecordingDevice, "full"), (Slow, "diff")):
        dev = cls()
        dev.configure(CONFIGS[1])
        dev.configure(CONFIGS[2])
        assert (len(dev.diffs), len(dev.loads)) == ((2, 0) if kind == "diff" else (0, 2)), cls
        assert dev.held == CONFIGS[2]
        dev.configure(CONFIGS[2])  # held: nothing travels
        assert len(dev.diffs) + len(dev.loads) == 2


def test_a_device_that_restores_its_config_keeps_the_mirror_after_a_failure():
    class Restoring(RecordingDevice):
        restores_config_on_error = True

        def _take(self, new: ChipConfig) -> None:
            if self.fail:
                self.fail = None
                raise LinkError("gone; the previous configuration is put back")
            self.held = new

    dev = Restoring()
    dev.configure(CONFIGS[1])
    dev.fail = "before"
    with pytest.raises(LinkError):
        dev.configure(CONFIGS[2])
    assert dev.mirror.digest == DIGESTS[1]
    _truthful(dev)


def test_the_callers_config_may_change_afterwards():
    dev = RecordingDevice()
    cfg = CONFIGS[1].copy()
    dev.configure(cfg)
    cfg.synapses.weights[1, 2, 3] = 5  # the mirror keeps its own copy
    assert dev.mirror.config == CONFIGS[1]
    dev.configure(cfg)
    assert dev.held == cfg


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["configure", "sync", "diff", "fail", "reject"]),
                          st.integers(0, 3), st.integers(0, 3)), max_size=14))
def test_random_uploads_never_send_a_diff_to_the_wrong_base(ops):
    """Any sequence of full uploads, syncs, diffs (right or wrong base) and failures: the device never
    receives a diff for a base it does not hold, and the mirror never claims what the device does not hold."""
    dev = RecordingDevice()
    for op, i, k in ops:
        if op == "fail":
            dev.fail = "before" if i % 2 else "after"
            continue
        if op == "reject":
            dev.reject = "refused"
            continue
        try:
            if op == "configure":
                dev.configure(CONFIGS[k])
            elif op == "sync":
                dev.sync(CONFIGS[k])
            else:
                dev.configure(CONFIGS[i].diff(CONFIGS[k]))
        except (LinkError, ConfigError, ValueError):
            pass
        _truthful(dev)
        assert dev.refused == 0
    dev.fail = dev.reject = None
    dev.sync(CONFIGS[0])
    assert dev.held == CONFIGS[0] and dev.mirror.digest == DIGESTS[0] and dev.refused == 0


# ---- backends that implement configure() themselves (written before the primitives) --------------------
class OwnConfigure(Backend):
    """A backend in the old style: configure() itself, no primitives."""

    scheme = "own"

    def __init__(self) -> None:
        self.config = ChipConfig()
        self.received: list[ChipConfig | ConfigDiff] = []
        self.fail = False

    def info(self) -> DeviceInfo:
        return DeviceInfo(model="own", serial=0, version="0")

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        if self.fail:
            self.fail = False
            raise LinkError("gone")
        new = config.apply(self.config) if isinstance(config, ConfigDiff) else config.copy()
        self.received.append(config)
        self.config = new

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        return RunResult(SpikeEvents(np.empty(0, SPIKE_DTYPE), inputs.batch_size))

    def close(self) -> None:
        pass


def test_a_backend_with_its_own_configure_is_booked_and_synced_with_diffs():
    dev = OwnConfigure()
    assert not dev.mirror.known  # nothing booked yet: the first sync loads whole
    assert dev.sync(CONFIGS[1]).kind == "full"
    assert isinstance(dev.received[-1], ChipConfig) and dev.mirror.digest == DIGESTS[1]
    plan = dev.sync(CONFIGS[2])
    assert plan.kind == "diff" and dev.received[-1] is plan.diff and dev.config == CONFIGS[2]
    dev.configure(CONFIGS[3])  # called directly: booked after it succeeded
    assert dev.mirror.digest == DIGESTS[3] and dev.mirror.config == CONFIGS[3]
    dev.configure(CONFIGS[3].diff(CONFIGS[0]))
    assert dev.mirror.digest == DIGESTS[0] and dev.mirror.config == CONFIGS[0]
    dev.fail = True
    with pytest.raises(LinkError):
        dev.configure(CONFIGS[1])
    assert not dev.mirror.known
    assert dev.sync(CONFIGS[1]).kind == "full"


def test_an_override_that_calls_the_base_is_booked_once():
    class Extra(RecordingDevice):
        """Does something after the base configure (like the conformance suite's mutants)."""

        def __init__(self) -> None:
            super().__init__()
            self.after = 0

        def configure(self, config: ChipConfig | ConfigDiff) -> None:
            super().configure(config)
            self.after += 1

    dev = Extra()
    dev.configure(CONFIGS[1])
    generation = dev.mirror.generation
    plan = dev.sync(CONFIGS[2])
    assert plan.kind == "diff" and dev.after == 2 and dev.held == CONFIGS[2]
    assert dev.mirror.generation == generation + 1
    assert dev.mirror.digest == DIGESTS[2]
    with pytest.raises(ConfigError):
        dev.configure(CONFIGS[0].diff(CONFIGS[3]))
    assert dev.after == 2 and dev.mirror.digest == DIGESTS[2]


def test_a_backend_that_accepts_an_invalid_config_leaves_the_state_unknown():
    class Careless(OwnConfigure):
        def configure(self, config: ChipConfig | ConfigDiff) -> None:
            self.config = config  # type: ignore[assignment]  # no validation: the bug under test

    dev = Careless()
    bad = CONFIGS[1].copy()
    bad.synapses.weights[0, 0, 0] = 64
    dev.configure(bad)  # the mirror cannot book it, and must not raise on the backend's behalf
    assert not dev.mirror.known


def test_plan_payload_needs_the_config_for_a_full_upload():
    with pytest.raises(ConfigError):
        _ = ConfigPlan("full", None, DIGESTS[0]).payload


def test_an_owned_config_is_kept_as_given_and_any_other_as_a_validated_copy():
    """``sync(owned=True)`` with a digest: the device and its mirror keep the caller's (validated, never modified)
    object, the server's way to take a decoded or diff-applied configuration without copying it again. Without
    ``owned``, or without a digest to trust, the mirror keeps its own copy."""
    dev = RecordingDevice()
    cfg = CONFIGS[1].copy()
    assert dev.sync(cfg, digest=DIGESTS[1], owned=True).kind == "diff"
    assert dev.mirror.config is cfg and dev.held == cfg
    other = CONFIGS[2].copy()
    diff = CONFIGS[1].diff(CONFIGS[2])
    plan = dev.sync(other, digest=DIGESTS[2], diff=diff, owned=True)  # a forwarded diff: its target is kept
    assert plan.offered and dev.mirror.config is other and dev.diffs[-1] is diff
    for kw in ({"digest": DIGESTS[3]}, {"owned": True}):
        mine = CONFIGS[3].copy()
        dev.sync(mine, **kw)
        assert dev.mirror.config is not mine and dev.mirror.config == mine
        dev.sync(CONFIGS[0])
