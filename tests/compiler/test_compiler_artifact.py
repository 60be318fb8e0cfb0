"""The .fsn artifact: one deterministic, versioned file; every defect raises ArtifactDecodeError."""

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstspike.compiler import COMPILER_VERSION, ArtifactDecodeError, CompiledNetwork, compile, effective_weights
from firstspike.compiler.artifact import ARTIFACT_MAGIC, ARTIFACT_VERSION
from firstspike.hal.config import ConfigDecodeError
from firstspike.hal.encoding import decode_arrays, encode_arrays

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def yy_bytes():
    import numpy as np

    from firstspike.compiler import Layer, Network

    rng = np.random.default_rng(0)
    net = Network(4, (Layer(rng.normal(1.5, 0.8, (5, 12)), bias_time=0.9, name="h"),
                      Layer(rng.normal(0.5, 0.8, (13, 3)), bias_time=0.9)))
    return compile(net).to_bytes()


def test_round_trip_is_byte_exact_and_complete(tmp_path, make_net):
    net = make_net("yinyang")
    c = compile(net, weight_scale=30.0)
    p = tmp_path / "net.fsn"
    c.save(p)
    back = CompiledNetwork.load(p)
    assert back.to_bytes() == p.read_bytes() == compile(net, weight_scale=30.0).to_bytes()
    assert back == c
    assert back.source == net and back.source_sha256 == net.sha256() and back.compiler_version == COMPILER_VERSION
    assert back.tau_s_ticks == 752.0 and back.options == c.options
    assert back.bias_inputs == [(4, 0.9), (5, 0.9)] and back.layer_shapes == [(5, 120), (121, 3)]
    assert back.weight_steps == c.weight_steps == [1 / 30, 1 / 30]
    assert [x.tolist() for x in back.output_neuron_ids] == [list(range(120)), [120, 121, 122]]
    assert back.warnings == c.warnings and back.quantization == c.quantization
    # the loaded artifact alone supports readback and the training fast path
    assert all(np.array_equal(a, b) for a, b in zip(effective_weights(back.config, back), c.quantize(net.weights),
                                                       strict=True))
    assert back.update_weights(net.weights) == c.config


def test_without_source_and_split_network(tmp_path):
    from firstspike.compiler import Layer, Network

    net = Network(100, (Layer(np.ones((100, 250))), Layer(np.ones((250, 200)))))
    c = compile(net, keep_source=False)
    back = CompiledNetwork.from_bytes(c.to_bytes())
    assert back.source is None and back.n_stages == 2 and back.to_bytes() == c.to_bytes()
    assert [s.config == t.config for s, t in zip(back.stages, c.stages, strict=True)] == [True, True]


@FAST
@given(st.data())
def test_corrupted_or_truncated_files_raise_typed_error(yy_bytes, data):
    raw = bytearray(yy_bytes)
    mode = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    if mode == "truncate":
        bad = bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    elif mode == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
        bad = bytes(raw)
    else:
        bad = bytes(raw) + data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(ArtifactDecodeError):
        CompiledNetwork.from_bytes(bad)


def _reencode(data: bytes, edit) -> bytes:
    """Decode, let ``edit`` change the header dict / arrays, re-encode with a valid checksum."""
    _, header, arrays = decode_arrays(data, ARTIFACT_MAGIC, (ARTIFACT_VERSION,))
    h = json.loads(header)
    edit(h, arrays)
    return encode_arrays(ARTIFACT_MAGIC, ARTIFACT_VERSION, arrays,
                         header=json.dumps(h, sort_keys=True, separators=(",", ":")).encode())


EDITS = {
    "missing key": lambda h, a: h.pop("tau_s_ticks"),
    "negative q": lambda h, a: h["layers"][0].__setitem__("q", -1.0),
    "bad format": lambda h, a: h.__setitem__("format", "other"),
    "bad neuron id": lambda h, a: a.__setitem__("layer0.neuron_ids", a["layer0.neuron_ids"] + 600),
    "rows shape": lambda h, a: a.__setitem__("layer1.source_rows", a["layer1.source_rows"][:2]),
    "missing array": lambda h, a: a.pop("stage0.config"),
    "corrupt config": lambda h, a: a.__setitem__("stage0.config", a["stage0.config"][:-1]),
    "code range": lambda h, a: h["layers"][0]["codes"].__setitem__("gain", 5000),
    "unknown code": lambda h, a: h["layers"][0]["codes"].__setitem__("extra", 1),
    "layer count": lambda h, a: h["quantization"].pop(),
    "stage ref": lambda h, a: h["layers"][0].__setitem__("stage", 3),
    "not canonical": lambda h, a: h.__setitem__("extra", 1),
    "stage layers": lambda h, a: h["stages"][0].__setitem__("layers", [0]),
    "rows vs neurons": lambda h, a: a.__setitem__("layer0.source_rows", np.full_like(a["layer0.source_rows"], -1)),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_well_formed_container_with_bad_content_raises_typed_error(yy_bytes, name):
    with pytest.raises(ArtifactDecodeError):
        CompiledNetwork.from_bytes(_reencode(yy_bytes, EDITS[name]))


def test_wrong_version_and_magic(yy_bytes):
    newer = yy_bytes[:4] + struct.pack("<H", ARTIFACT_VERSION + 1) + yy_bytes[6:]
    with pytest.raises(ArtifactDecodeError, match="unsupported format version"):
        CompiledNetwork.from_bytes(newer)
    with pytest.raises(ArtifactDecodeError, match="bad magic"):
        CompiledNetwork.from_bytes(b"FSCF" + yy_bytes[4:])
    assert issubclass(ArtifactDecodeError, ConfigDecodeError)
    _, _, arrays = decode_arrays(yy_bytes, ARTIFACT_MAGIC, (ARTIFACT_VERSION,))
    with pytest.raises(ArtifactDecodeError):
        CompiledNetwork.from_bytes(encode_arrays(ARTIFACT_MAGIC, ARTIFACT_VERSION, arrays, header=b"\xff{"))
