"""ChipConfig: validation, exact encoding, diffs, and typed decode errors (property tests)."""

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstspike.hal import chip
from firstspike.hal.config import NEURON_FIELDS, ChipConfig, ConfigDiff, Routing, RowMode
from firstspike.hal.errors import ConfigDecodeError, ConfigError, FieldRangeError

SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def configs(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cfg = ChipConfig()
    for name, (_dt, lo, hi, _d, _) in NEURON_FIELDS.items():
        if draw(st.booleans()):
            vals = rng.integers(lo, hi + 1, chip.N_NEURONS)
            cfg.neurons.values[name][:] = vals.astype(cfg.neurons.values[name].dtype)
    cfg.neurons.merged_columns[:] = rng.random(chip.COLUMNS_PER_HALF) < draw(st.floats(0, 1))
    density = draw(st.floats(0, 1))
    mask = rng.random(cfg.synapses.weights.shape) < density
    cfg.synapses.weights[:] = np.where(mask, rng.integers(0, 64, mask.shape), 0).astype(np.uint8)
    cfg.synapses.labels[:] = rng.integers(0, 64, mask.shape).astype(np.uint8)
    cfg.row_modes[:] = rng.integers(0, 3, cfg.row_modes.shape).astype(np.uint8)
    n = draw(st.integers(0, 300))
    kind = rng.integers(0, 2, n)
    source = np.where(kind == 1, rng.integers(0, chip.N_NEURONS, n), rng.integers(0, chip.N_INPUT_CHANNELS, n))
    cfg.routing = Routing.from_lists(
        kind, source, rng.integers(0, 2, n), rng.integers(0, 256, n), rng.integers(0, 64, n)
    )
    if draw(st.booleans()):  # delay lines in use (encoding version 2), some routes still without delay
        codes = rng.integers(0, chip.DELAY_CODE_MAX + 1, len(cfg.routing))
        cfg.routing = cfg.routing.with_delays(np.where(rng.random(len(codes)) < 0.3, 0, codes))
    return cfg


@SLOW
@given(configs())
def test_encode_decode_round_trip_is_exact(cfg):
    data = cfg.to_bytes()
    back = ChipConfig.from_bytes(data)
    assert back == cfg
    assert back.to_bytes() == data  # canonical: same config -> same bytes
    assert back.digest() == cfg.digest()


@SLOW
@given(configs(), configs())
def test_diff_apply_reproduces_target_and_round_trips(a, b):
    d = a.diff(b)
    out = d.apply(a)
    assert out == b
    d2 = ConfigDiff.from_bytes(d.to_bytes())
    assert d2.apply(a) == b
    assert a.diff(a).empty


def test_weight_update_diff_is_small():
    a = ChipConfig()
    b = a.copy()
    b.synapses.weights[1, 10, 20] = 7
    b.synapses.weights[0, 0, 0] = 63
    d = a.diff(b)
    assert set(d.patches) == {"synapses.weights"}
    assert d.changed_entries() == 2
    assert len(d.to_bytes()) < 300  # vs ~270 kB for the whole chip
    assert len(a.to_bytes()) > 200_000


def test_diff_refuses_wrong_base():
    a = ChipConfig()
    b = a.copy()
    b.synapses.weights[0, 1, 1] = 1
    other = a.copy()
    other.row_modes[0, 0] = RowMode.EXCITATORY
    with pytest.raises(ConfigError, match="base configuration differs"):
        a.diff(b).apply(other)
    # a caller that knows its base's digest passes it instead of having it recomputed: the check is the same
    d = a.diff(b)
    assert d.apply(a, base_digest=a.digest()) == b
    assert b.digest(validate=False) == b.digest()  # the same bytes hashed, only the range checks skipped
    with pytest.raises(ConfigError, match="base configuration differs"):
        d.apply(a, base_digest=other.digest())


def test_diff_result_is_checked_against_its_target_even_with_a_known_base():
    a = ChipConfig()
    b = a.copy()
    b.synapses.weights[0, 1, 1] = 1
    d = a.diff(b)
    d.patches["synapses.weights"][1][0] = 2  # tampered: no longer produces the target
    for known in (None, a.digest()):
        with pytest.raises(ConfigError, match="target digest"):
            d.apply(a, base_digest=known)


@SLOW
@given(configs(), st.data())
def test_truncated_bytes_raise_typed_error(cfg, data):
    raw = cfg.to_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(ConfigDecodeError):
        ChipConfig.from_bytes(raw[:cut])


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_corruption_is_detected(data):
    raw = bytearray(_SMALL_RAW)
    pos = data.draw(st.integers(0, len(raw) - 1))
    flip = data.draw(st.integers(1, 255))
    raw[pos] ^= flip
    with pytest.raises(ConfigDecodeError):
        ChipConfig.from_bytes(bytes(raw))


_SMALL_RAW = ChipConfig().to_bytes()


def test_wrong_version_and_magic_are_named():
    raw = bytearray(_SMALL_RAW)
    raw[4:6] = struct.pack("<H", 99)
    body = bytes(raw[:-4])
    raw[-4:] = struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    with pytest.raises(ConfigDecodeError, match="version 99"):
        ChipConfig.from_bytes(bytes(raw))
    with pytest.raises(ConfigDecodeError, match="magic"):
        ChipConfig.from_bytes(b"XXXX" + _SMALL_RAW[4:])
    with pytest.raises(ConfigDecodeError, match="magic"):
        ConfigDiff.from_bytes(_SMALL_RAW)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_decoder(blob):
    for decode in (ChipConfig.from_bytes, ConfigDiff.from_bytes):
        with pytest.raises(ConfigDecodeError):
            decode(blob)
        with pytest.raises(ConfigDecodeError):
            decode(b"FSCF" + blob)


def _reencode_with(field_name, mutate):
    """Encode a config whose field was made invalid after construction (bypassing validate)."""
    from firstspike.hal.config import CONFIG_MAGIC, CONFIG_VERSION
    from firstspike.hal.encoding import encode_arrays

    f = ChipConfig().fields()
    f = {k: v.copy() for k, v in f.items()}
    mutate(f[field_name])
    return encode_arrays(CONFIG_MAGIC, CONFIG_VERSION, f)


@pytest.mark.parametrize(
    ("field", "bad", "high"),
    [(f"neurons.{k}", v[2] + 1, v[2]) for k, v in NEURON_FIELDS.items() if k != "enabled"]
    + [("synapses.weights", 64, 63), ("synapses.labels", 64, 63), ("rows.modes", 3, 2)],
)
def test_every_out_of_range_field_is_rejected_by_name(field, bad, high):
    cfg = ChipConfig()
    arr = cfg.fields()[field]
    arr.reshape(-1)[5] = bad
    with pytest.raises(FieldRangeError) as e:
        cfg.validate()
    assert field in str(e.value) and str(bad) in str(e.value) and str(high) in str(e.value)
    # The same invalid value arriving as bytes is a decode error naming the field.
    raw = _reencode_with(field, lambda a: a.reshape(-1).__setitem__(5, bad))
    with pytest.raises(ConfigDecodeError, match=field.replace(".", r"\.")):
        ChipConfig.from_bytes(raw)


@pytest.mark.parametrize(
    ("col", "bad", "match"),
    [
        ("kind", 2, r"routing\.kind"),
        ("half", 2, r"routing\.half"),
        ("address", 64, r"routing\.address"),
        ("source", 1024, r"routing\.source"),
    ],
)
def test_routing_ranges(col, bad, match):
    cols = {"kind": [0], "source": [0], "half": [0], "row": [0], "address": [0]}
    cols[col] = [bad]
    with pytest.raises(FieldRangeError, match=match):
        Routing.from_lists(**cols)


def test_neuron_source_range_is_512():
    with pytest.raises(FieldRangeError, match="neuron"):
        Routing.from_lists([1], [600], [0], [0], [0])


def test_set_is_checked_before_writing():
    cfg = ChipConfig()
    before = cfg.neurons.values["threshold"].copy()
    with pytest.raises(FieldRangeError, match=r"neurons.leak"):
        cfg.neurons.set(slice(0, 4), threshold=500, leak=5000)
    assert np.array_equal(cfg.neurons.values["threshold"], before)
    cfg.neurons.set([1, 2], threshold=500)
    assert cfg.neurons.values["threshold"][1] == 500
    with pytest.raises(ConfigError, match="unknown neuron parameter"):
        cfg.neurons.set(0, thresold=1)


def test_wrong_dtype_or_shape_is_a_config_error():
    cfg = ChipConfig()
    cfg.synapses.weights = cfg.synapses.weights.astype(np.int32)
    with pytest.raises(ConfigError, match=r"synapses.weights: dtype"):
        cfg.validate()
    cfg = ChipConfig()
    cfg.row_modes = np.zeros((2, 255), np.uint8)
    with pytest.raises(ConfigError, match=r"rows.modes: shape"):
        cfg.validate()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255),
                          st.integers(0, 255), st.integers(0, 65535)), max_size=40),
       st.integers(0, 2**32 - 1))
def test_the_route_table_sorts_and_dedups_as_numpy_unique(rows: list, seed: int) -> None:
    """The packed-key sort equals numpy's structured sort over all six fields (every value of every field, so
    the packing's bit widths are exercised), duplicates and shuffled, already sorted and reversed tables."""
    from firstspike.hal.config import ROUTE_DTYPE, _sorted_unique_routes

    rng = np.random.default_rng(seed)
    base = np.array(rows + rows[: len(rows) // 2], dtype=ROUTE_DTYPE)  # with exact duplicates
    for routes in (base, base[rng.permutation(len(base))], np.unique(base), np.unique(base)[::-1]):
        got = _sorted_unique_routes(routes)
        want = np.unique(routes)
        assert got.dtype == ROUTE_DTYPE and got.tobytes() == want.tobytes()
        assert got is not routes
