"""Acceptance: compile -> read the signed weights back from the ChipConfig alone -> equal to the quantised
weights exactly, for random layered networks that fit (sizes, biases, merging, stages); and the training
fast path changes synapse weights only."""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from firstspike.compiler import CompileError, Layer, Network, compile, effective_weights, update_weights
from firstspike.compiler.readback import effective_steps

PROP = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def fitting_networks(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_prev = n_in = draw(st.integers(1, 256))
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        bias = draw(st.booleans()) and n_prev < 256
        n_out = draw(st.integers(1, 256))
        spread = draw(st.sampled_from([0.01, 1.0, 10.0]))
        w = np.clip(rng.normal(draw(st.floats(-1, 1)) * spread, spread, (n_prev + bias, n_out)), -60, 60)
        if draw(st.booleans()):
            w[rng.random(w.shape) < 0.3] = 0.0  # exact zeros and their sign
        layers.append(Layer(w, bias_time=0.5 if bias else None, tau_ratio=draw(st.sampled_from([1.0, 2.0]))))
        n_prev = n_out
    scale = draw(st.sampled_from([None, 30.0, 100.0]))
    return Network(n_in, tuple(layers)), scale


def _configs(c):
    return [s.config for s in c.stages]


@PROP
@given(fitting_networks())
def test_effective_weights_equal_quantised_weights_exactly(case):
    net, scale = case
    c = compile(net, weight_scale=scale)
    event(f"stages={c.n_stages}")
    event(f"merged={any(L.merged for L in c.layers)}")
    event(f"split-half={any(not L.merged and len(set(L.neuron_ids // 256)) == 2 for L in c.layers)}")
    eff = effective_weights(_configs(c), c)
    quant = c.quantize(net.weights)
    for k, (e, q) in enumerate(zip(eff, quant, strict=True)):
        assert e.shape == net.layers[k].weights.shape
        assert np.array_equal(e, q), f"layer {k}"
    # and the quantised weights are what the report says: sign * round(|w|/q) * q, clipped at 63 steps
    for L, m, q in zip(net.layers, c.layers, quant, strict=True):
        expect = np.sign(L.weights) * np.minimum(np.rint(np.abs(L.weights) / m.q), 63) * m.q
        assert np.array_equal(q, expect)


@PROP
@given(fitting_networks(), st.integers(0, 2**32 - 1))
def test_update_weights_changes_only_synapse_weights(case, seed):
    net, scale = case
    c = compile(net, weight_scale=scale)
    rng = np.random.default_rng(seed)
    new = [w + rng.normal(0, max(float(np.abs(w).max()), 1e-3) * 0.2, w.shape) for w in net.weights]
    cfgs = c.update_stage_weights(new)
    for old_cfg, new_cfg in zip(_configs(c), cfgs, strict=True):
        d = old_cfg.diff(new_cfg)
        assert set(d.patches) <= {"synapses.weights"} and not d.replaced
        assert new_cfg == new_cfg.copy()  # valid config
    eff = effective_weights(cfgs, c)
    for e, q in zip(eff, c.quantize(new), strict=True):
        assert np.array_equal(e, q)
    same = c.update_stage_weights(net.weights)
    assert all(a == b for a, b in zip(same, _configs(c), strict=True))


def test_update_weights_single_stage_api(make_net):
    net = make_net("mnist16")
    c = compile(net)
    cfg = update_weights(c, [w * 0.5 for w in net.weights])
    assert c.config.diff(cfg).changed_entries() > 0
    cfg.synapses.weights[:] = 0  # the returned config is independent of the artifact's
    assert c.config.synapses.weights.any()
    with pytest.raises(ValueError, match="shape"):
        c.update_weights([net.weights[0][:10], net.weights[1]])
    with pytest.raises(ValueError, match="NaN"):
        c.update_weights([net.weights[0] * np.nan, net.weights[1]])
    with pytest.raises(ValueError, match="2 layers"):
        c.update_weights([net.weights[0]])


def test_split_networks_need_the_staged_update():
    net = Network(100, (Layer(np.ones((100, 250))), Layer(np.ones((250, 200)))))
    c = compile(net)
    assert c.n_stages == 2
    with pytest.raises(CompileError, match="2 stages"):
        c.update_weights(net.weights)
    with pytest.raises(CompileError, match="2 stages"):
        _ = c.config
    with pytest.raises(ValueError, match="2 stage"):
        effective_weights(c.stages[0].config, c)


def test_readback_sees_wrong_labels(make_net):
    """The readback really reads the config: breaking one label loses exactly that synapse."""
    c = compile(make_net("yinyang"))
    cfg = c.config.copy()
    L = c.layers[0]
    exc, inh = L.synapse_indices
    steps = effective_steps(cfg, L)
    i, j = np.argwhere(steps != 0)[0]
    idx = exc[i, j] if steps[i, j] > 0 else inh[i, j]
    cfg.synapses.labels.reshape(-1)[idx] = 5
    broken = effective_steps(cfg, L)
    assert broken[i, j] == 0 and np.count_nonzero(broken != steps) == 1
