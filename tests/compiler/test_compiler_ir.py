"""The IR: construction checks, value semantics, canonical bytes and their decoder (property tests)."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstspike.compiler import IRError, Layer, Network
from firstspike.hal.errors import ConfigDecodeError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def networks(draw, max_layers: int = 3, max_size: int = 12):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_in = draw(st.integers(1, max_size))
    layers = []
    prev = n_in
    for _ in range(draw(st.integers(1, max_layers))):
        n = draw(st.integers(1, max_size))
        bias = draw(st.one_of(st.none(), st.floats(0, 3)))
        rows = prev + (bias is not None)
        tau = draw(st.sampled_from([1.0, 2.0, "per-neuron"]))
        tau_ratio = rng.choice([1.0, 2.0], n) if tau == "per-neuron" else tau
        delays = rng.random(rows) if draw(st.booleans()) else None
        layers.append(Layer(rng.normal(0, 1, (rows, n)), bias, tau_ratio, draw(st.floats(-1, 0.9)), delays,
                            draw(st.text(max_size=5))))
        prev = n
    return Network(n_in, tuple(layers), draw(st.text(max_size=5)))


@FAST
@given(networks())
def test_bytes_round_trip_is_exact_and_canonical(net):
    data = net.to_bytes()
    back = Network.from_bytes(data)
    assert back == net
    assert back.to_bytes() == data
    assert hash(back) == hash(net)
    assert back.sha256() == net.sha256()


@FAST
@given(networks())
def test_dict_round_trip(net):
    assert Network.from_dict(net.to_dict()) == net


@FAST
@given(networks(max_layers=2, max_size=6), st.data())
def test_corrupt_or_truncated_bytes_raise_typed_error(net, data):
    raw = bytearray(net.to_bytes())
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(raw) - 1))
        bad = bytes(raw[:cut])
    else:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
        bad = bytes(raw)
    with pytest.raises(ConfigDecodeError):
        Network.from_bytes(bad)


def test_shape_mismatch_names_layer_and_sizes():
    with pytest.raises(IRError, match=r"layer 1 \('b'\) has 4 inputs .* layer 0's 3 neurons give 3"):
        Network(2, (Layer(np.ones((2, 3)), name="a"), Layer(np.ones((4, 2)), name="b")))
    with pytest.raises(IRError, match="n_inputs"):
        Network(0, (Layer(np.ones((1, 1))),))
    with pytest.raises(IRError, match="at least one layer"):
        Network(3, ())
    with pytest.raises(IRError, match="2-d"):
        Layer(np.ones(3))
    with pytest.raises(IRError, match="bias row"):
        Layer(np.ones((1, 3)), bias_time=0.5)
    with pytest.raises(IRError, match=r"tau_ratio: shape \(2,\)"):
        Layer(np.ones((2, 3)), tau_ratio=[1.0, 2.0])


def test_value_semantics_and_immutability():
    w = np.arange(6.0).reshape(3, 2)
    a = Network(3, (Layer(w, name="x"),))
    w[0, 0] = 99.0  # the layer holds its own copy
    b = Network(3, (Layer(np.arange(6.0).reshape(3, 2), name="x"),))
    assert a == b and hash(a) == hash(b) and a.sha256() == b.sha256()
    with pytest.raises(ValueError):
        a.layers[0].weights[0, 0] = 1.0
    # -0.0 and 0.0 are the same weight; a uniform per-neuron array is the same as its scalar
    z1 = Network(1, (Layer(np.array([[-0.0, 1.0]]), tau_ratio=[2.0, 2.0]),))
    z2 = Network(1, (Layer(np.array([[0.0, 1.0]]), tau_ratio=2.0),))
    assert z1 == z2 and z1.to_bytes() == z2.to_bytes()
    assert a != Network(3, (Layer(np.arange(6.0).reshape(3, 2), name="y"),))


def test_from_dict_accepts_torch_tensors_and_with_weights():
    t = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    net = Network.from_dict({"n_inputs": 4, "layers": [{"weights": t, "bias_time": 0.9}]})
    assert net.layers[0].has_bias and net.layers[0].n_in == 4 and net.layers[0].n_out == 4
    assert np.array_equal(net.layers[0].weights, t.detach().numpy())
    net2 = net.with_weights([np.zeros((5, 4))])
    assert net2.layers[0].bias_time == 0.9 and not net2.layers[0].weights.any()
    with pytest.raises(IRError, match="misses key"):
        Network.from_dict({"layers": []})


def test_save_load(tmp_path, yinyang_net):
    p = tmp_path / "net.fsir"
    yinyang_net.save(p)
    assert Network.load(p) == yinyang_net
