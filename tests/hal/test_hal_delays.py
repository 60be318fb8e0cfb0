"""Route delay lines in hal: the typed code, range checks, the version-2 encoding (and version 1 read as "no
delay"), and diffs that carry a delay change as a small patch (property tests)."""

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstspike.hal import chip
from firstspike.hal.config import (
    CONFIG_MAGIC,
    CONFIG_VERSION,
    DIFF_MAGIC,
    ROUTE_DTYPE,
    ChipConfig,
    ConfigDiff,
    Routing,
    SourceKind,
)
from firstspike.hal.coords import DelayCode
from firstspike.hal.encoding import decode_arrays, encode_arrays
from firstspike.hal.errors import ConfigDecodeError, ConfigError, FieldRangeError

SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _routed(n: int, seed: int) -> ChipConfig:
    """A config with ``n`` random routes (unique keys), no delays."""
    rng = np.random.default_rng(seed)
    cfg = ChipConfig()
    kind = rng.integers(0, 2, n)
    source = np.where(kind == 1, rng.integers(0, chip.N_NEURONS, n), rng.integers(0, chip.N_INPUT_CHANNELS, n))
    cfg.routing = Routing.from_lists(kind, source, rng.integers(0, 2, n), rng.integers(0, 256, n),
                                     rng.integers(0, 64, n))
    cfg.synapses.weights[0, :4, :8] = 9
    return cfg


def _version(raw: bytes) -> int:
    return struct.unpack("<H", raw[4:6])[0]


# ---- the typed code -------------------------------------------------------------------------------------------
def test_delay_constants_cover_the_required_range():
    # at least 0..4 tau_s at the paper's tau_s = 6 us (750 ticks), in steps of at most 8 ticks
    assert chip.DELAY_STEP_TICKS <= 8
    assert chip.DELAY_MAX_TICKS >= 4 * chip.NOMINAL_TAU_S_TICKS
    assert chip.DELAY_MAX_TICKS == chip.DELAY_CODE_MAX * chip.DELAY_STEP_TICKS
    assert chip.resource_model()["delay_max_ticks"] == chip.DELAY_MAX_TICKS


@given(st.integers(0, chip.DELAY_CODE_MAX), st.floats(-0.49, 0.49))
def test_from_ticks_picks_the_nearest_code(code, frac):
    ticks = (code + frac) * chip.DELAY_STEP_TICKS
    assert DelayCode.from_ticks(ticks) == code
    assert DelayCode(code).ticks == code * chip.DELAY_STEP_TICKS
    assert DelayCode.from_ticks(DelayCode(code).ticks) == code


@pytest.mark.parametrize("bad", [-5.0, chip.DELAY_MAX_TICKS + 5, float("inf"), float("nan"), "8", None, True])
def test_from_ticks_rejects_what_no_line_holds(bad):
    with pytest.raises(FieldRangeError, match=rf"DelayCode \(ticks\).*\[0, {chip.DELAY_MAX_TICKS}\]"):
        DelayCode.from_ticks(bad)


# ---- routes -------------------------------------------------------------------------------------------------
def test_delay_code_is_range_checked_by_name():
    with pytest.raises(FieldRangeError, match=rf"routing\.delay.*512.*\[0, {chip.DELAY_CODE_MAX}\]"):
        Routing.from_lists([0], [1], [0], [2], [3], [512])
    r = Routing.from_lists([0], [1], [0], [2], [3], [511])
    assert int(r.routes["delay"][0]) == 511 and r.delayed
    with pytest.raises(FieldRangeError, match=r"routing\.delay"):
        r.with_delays(np.array([600]))
    with pytest.raises(ConfigError, match="one per route"):
        r.with_delays(np.array([1, 2]))
    with pytest.raises(ConfigError, match="integers"):
        r.with_delays(np.array([1.5]))


def test_one_delay_per_route():
    with pytest.raises(ConfigError, match="two delays"):
        Routing.from_lists([0, 0], [1, 1], [0, 0], [2, 2], [3, 3], [4, 5])
    r = Routing.from_lists([0], [1], [0], [2], [3], [4])
    r.add(0, 1, 0, 2, 3, 4)  # the same route again: a no-op
    assert len(r) == 1
    with pytest.raises(ConfigError, match="two delays"):
        r.add(0, 1, 0, 2, 3, 5)
    assert len(r) == 1 and int(r.routes["delay"][0]) == 4  # unchanged after the refused add
    cfg = ChipConfig(routing=Routing.from_lists([0, 0], [1, 1], [0, 0], [2, 3], [3, 3], [4, 5]))
    cfg.routing.routes["row"][1] = 2  # edited in place: two delays for one route now
    with pytest.raises(ConfigError, match="two delays"):
        cfg.validate()


@SLOW
@given(st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_with_delays_keeps_the_canonical_order(n, seed):
    cfg = _routed(n, seed)
    codes = np.random.default_rng(seed).integers(0, chip.DELAY_CODE_MAX + 1, len(cfg.routing))
    new = cfg.routing.with_delays(codes)
    again = Routing(new.routes[::-1].copy())  # sorted anew from any order
    assert np.array_equal(again.routes, new.routes)
    assert np.array_equal(new.routes["delay"], codes)
    for k in ("kind", "source", "half", "row", "address"):
        assert np.array_equal(new.routes[k], cfg.routing.routes[k])


# ---- encoding -----------------------------------------------------------------------------------------------
@SLOW
@given(st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_delays_round_trip_exactly_in_version_2(n, seed):
    cfg = _routed(n, seed)
    rng = np.random.default_rng(seed + 1)
    cfg.routing = cfg.routing.with_delays(rng.integers(1, chip.DELAY_CODE_MAX + 1, len(cfg.routing)))
    raw = cfg.to_bytes()
    assert _version(raw) == CONFIG_VERSION == 2
    back = ChipConfig.from_bytes(raw)
    assert back == cfg and back.to_bytes() == raw
    assert np.array_equal(back.routing.routes, cfg.routing.routes)


@SLOW
@given(st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_a_config_without_delays_keeps_its_version_1_bytes(n, seed):
    """No delay: the bytes a config had before delay lines existed (19 arrays, version 1), so digests, artifacts
    and golden files stay valid; a version-2 encoding of the same config (all delays 0) decodes to it too."""
    cfg = _routed(n, seed)
    raw = cfg.to_bytes()
    assert _version(raw) == 1
    _, _, arrays = decode_arrays(raw, CONFIG_MAGIC, (1,))
    assert "routing.delay" not in arrays and len(arrays) == 19
    back = ChipConfig.from_bytes(raw)
    assert not back.routing.delayed and back == cfg
    v2 = encode_arrays(CONFIG_MAGIC, 2, cfg.fields())  # explicit zeros: valid, not canonical
    assert ChipConfig.from_bytes(v2) == cfg and ChipConfig.from_bytes(v2).to_bytes() == raw


def _reencode(version: int, arrays: dict) -> bytes:
    return encode_arrays(CONFIG_MAGIC, version, arrays)


def test_each_version_has_exactly_its_fields():
    cfg = _routed(5, 1)
    f = cfg.fields()
    with pytest.raises(ConfigDecodeError, match=r"version 1 has no routing\.delay"):
        ChipConfig.from_bytes(_reencode(1, f))
    g = {k: v for k, v in f.items() if k != "routing.delay"}
    with pytest.raises(ConfigDecodeError, match=r"routing\.delay"):
        ChipConfig.from_bytes(_reencode(2, g))  # version 2 without the delay column: a missing field
    bad = dict(f)
    bad["routing.delay"] = np.full(len(cfg.routing), 512, dtype="<u2")
    with pytest.raises(ConfigDecodeError, match=r"routing\.delay"):
        ChipConfig.from_bytes(_reencode(2, bad))
    short = dict(f)
    short["routing.delay"] = np.zeros(len(cfg.routing) - 1, dtype="<u2")
    with pytest.raises(ConfigDecodeError, match="different lengths"):
        ChipConfig.from_bytes(_reencode(2, short))
    dup = dict(f)
    for k in ("kind", "source", "half", "row", "address"):
        dup[f"routing.{k}"] = np.r_[f[f"routing.{k}"], f[f"routing.{k}"][:1]]
    dup["routing.delay"] = np.r_[np.zeros(len(cfg.routing), "<u2"), np.array([3], "<u2")]
    with pytest.raises(ConfigDecodeError, match="two delays"):
        ChipConfig.from_bytes(_reencode(2, dup))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_corruption_of_a_delayed_config_is_detected(data):
    raw = bytearray(_DELAYED_RAW)
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ConfigDecodeError):
        ChipConfig.from_bytes(bytes(raw))


def _delayed() -> ChipConfig:
    cfg = ChipConfig()
    cfg.routing = Routing.from_lists([0, 1], [3, 7], [0, 1], [4, 5], [1, 2], [0, 300])
    return cfg


_DELAYED_RAW = _delayed().to_bytes()


# ---- diffs --------------------------------------------------------------------------------------------------
@SLOW
@given(st.integers(1, 200), st.integers(0, 2**32 - 1), st.integers(1, 20))
def test_a_delay_change_is_a_small_patch(n, seed, k):
    a = _routed(n, seed)
    rng = np.random.default_rng(seed)
    if rng.random() < 0.5:
        a.routing = a.routing.with_delays(rng.integers(0, chip.DELAY_CODE_MAX + 1, len(a.routing)))
    b = a.copy()
    codes = b.routing.routes["delay"].copy()
    idx = rng.choice(len(codes), size=min(k, len(codes)), replace=False)
    codes[idx] = (codes[idx] + rng.integers(1, chip.DELAY_CODE_MAX, len(idx))) % (chip.DELAY_CODE_MAX + 1)
    b.routing = b.routing.with_delays(codes)
    b.synapses.weights[1, 3, 4] = 17  # a weight change travels with it
    d = a.diff(b)
    assert set(d.patches) == {"routing.delay", "synapses.weights"} and not d.replaced
    assert d.changed_entries() == len(idx) + 1
    raw = d.to_bytes()
    assert len(raw) < 400 + 6 * len(idx)  # a few hundred bytes, as for a weight update
    assert _version(raw) == 2
    assert d.apply(a) == b
    assert ConfigDiff.from_bytes(raw).apply(a) == b


def test_diff_versions_and_route_replacement():
    a = _routed(20, 3)
    b = _routed(25, 4)  # other routes: the table is replaced, without delays as version 1
    d = a.diff(b)
    assert "routing.kind" in d.replaced and "routing.delay" not in d.replaced
    assert _version(d.to_bytes()) == 1
    a.routing = a.routing.with_delays(np.full(len(a.routing), 9, dtype=np.int64))
    back = ConfigDiff.from_bytes(a.diff(b).to_bytes())
    assert back.apply(a) == b and not back.apply(a).routing.delayed  # replaced routes without delays: 0
    b.routing = b.routing.with_delays(np.arange(len(b.routing)))
    d = a.diff(b)
    assert "routing.delay" in d.replaced and _version(d.to_bytes()) == 2
    assert ConfigDiff.from_bytes(d.to_bytes()).apply(a) == b
    # a weight-only diff of a delayed config carries no delay, so it stays version 1
    c = b.copy()
    c.synapses.weights[0, 0, 0] = 1
    assert _version(b.diff(c).to_bytes()) == 1


def test_version_1_diffs_cannot_carry_delays_and_patches_are_bounded():
    a, b = _delayed(), _delayed()
    b.routing = b.routing.with_delays(np.array([5, 6]))
    d = a.diff(b)
    _, header, arrays = decode_arrays(d.to_bytes(), DIFF_MAGIC, (2,))
    with pytest.raises(ConfigDecodeError, match=r"version 1 has no routing\.delay"):
        ConfigDiff.from_bytes(encode_arrays(DIFF_MAGIC, 1, arrays, header=header))
    for key in ("patch:routing.kind:index", "patch:routing.row:value"):
        bad = {key: arrays["patch:routing.delay:index"]}
        with pytest.raises(ConfigDecodeError, match="unknown entry"):
            ConfigDiff.from_bytes(encode_arrays(DIFF_MAGIC, 2, bad, header=header))
    d.patches["routing.delay"] = (np.array([7], dtype=np.uint32), np.array([1], dtype="<u2"))
    with pytest.raises(FieldRangeError, match="index"):
        d.apply(a)
    d.patches["routing.delay"] = (np.array([0], dtype=np.uint32), np.array([600], dtype="<u2"))
    with pytest.raises(FieldRangeError, match=r"routing\.delay"):
        d.apply(a)


def test_route_dtype_and_source_kinds():
    assert ROUTE_DTYPE.names == ("kind", "source", "half", "row", "address", "delay")
    cfg = _delayed()
    t = cfg.routing.targets(SourceKind.NEURON, 7)
    assert len(t) == 1 and int(t[0]["delay"]) == 300
    raw = cfg.to_bytes()
    body = raw[:-4]
    assert struct.unpack("<I", raw[-4:])[0] == zlib.crc32(body) & 0xFFFFFFFF
