"""NIR import/export: graphs made with the nir package compile; export -> import gives the same IR;
unsupported nodes and parameters are rejected by node name and reason."""

import re

import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstspike.compiler import DesignRuleErrors, Layer, Network, NIRImportError, compile, effective_weights
from firstspike.compiler.nir_io import BIAS_TIME_KEY, from_nir, read_nir, to_nir, write_nir

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cubalif(n, tau_syn=5e-3, tau_mem=1e-2, **kw):
    args = {"tau_syn": np.full(n, tau_syn), "tau_mem": np.full(n, tau_mem), "r": np.ones(n), "v_leak": np.zeros(n),
            "v_threshold": np.ones(n)}
    args.update({k: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy() for k, v in kw.items()})
    return nir.CubaLIF(**args)


@st.composite
def ir_networks(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_prev = n_in = draw(st.integers(1, 20))
    layers = []
    for k in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 20))
        bias = draw(st.one_of(st.none(), st.floats(0, 3, allow_subnormal=False)))
        rows = n_prev + (bias is not None)
        delays = None
        if draw(st.booleans()):
            delays = rng.random(rows)
            if bias is not None:
                delays[-1] = 0.0  # a bias has no delay of its own (shift its time instead)
        layers.append(Layer(rng.normal(0, 2, (rows, n)), bias, draw(st.sampled_from([1.0, 2.0])),
                            draw(st.floats(-1, 0.9, allow_subnormal=False)), delays,
                            draw(st.sampled_from(["", "hidden", f"l{k}"]))))
        n_prev = n
    return Network(n_in, tuple(layers), draw(st.sampled_from(["", "net"])))


@FAST
@given(ir_networks(), st.sampled_from([1.0, 0.5, 4.0]))
def test_export_then_import_gives_the_same_ir(net, tau_syn):
    assert from_nir(to_nir(net, tau_syn=tau_syn)) == net


def test_export_then_import_through_a_file(tmp_path, make_net):
    for net in (make_net("yinyang"), make_net("mnist16")):
        p = tmp_path / "net.nir"
        write_nir(net, p, tau_syn=6e-3)
        back = read_nir(p)
        assert back == net
        assert compile(back).to_bytes() == compile(net).to_bytes()


def test_graph_built_with_the_nir_package_compiles(tmp_path):
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0, 1, (10, 4)), rng.normal(0, 1, (3, 10))
    g = nir.NIRGraph.from_list(
        nir.Affine(weight=w1, bias=np.zeros(10)),
        cubalif(10, w_in=5e-3),
        nir.Linear(weight=w2),
        cubalif(3, w_in=5e-3, v_reset=-0.2),
    )
    nir.write(tmp_path / "g.nir", g)
    net = read_nir(tmp_path / "g.nir")
    # w_in * r / (tau_syn * (v_th - v_leak)) = 1 here, so model weights are the NIR weights transposed
    assert net.sizes == (4, 10, 3) and np.allclose(net.layers[0].weights, w1.T) and net.layers[1].v_reset == -0.2
    assert [L.tau_ratio for L in net.layers] == [2.0, 2.0] and [L.name for L in net.layers] == ["cubalif", "cubalif_1"]
    c = compile(net)
    assert all(np.array_equal(a, b) for a, b in zip(effective_weights(c.config, c), c.quantize(net.weights),
                                                       strict=True))


def test_voltage_and_time_units_scale_weights():
    g = nir.NIRGraph.from_list(nir.Linear(weight=np.array([[1.0, -2.0]])),
                               cubalif(1, tau_syn=2.0, tau_mem=2.0, v_leak=-1.0, v_threshold=3.0, r=4.0,
                                       v_reset=-1.0, w_in=0.5))
    (L,) = from_nir(g).layers
    # factor = w_in * r / (tau_syn * (v_th - v_leak)) = 0.5 * 4 / (2 * 4) = 0.25
    assert L.weights[:, 0].tolist() == [0.25, -0.5] and L.tau_ratio == 1.0 and L.v_reset == 0.0


def test_bias_spike_convention():
    net = Network(2, (Layer(np.array([[1.0], [2.0], [3.0]]), bias_time=0.7),))
    g = to_nir(net)
    bias_inputs = [k for k, v in g.nodes.items() if isinstance(v, nir.Input) and BIAS_TIME_KEY in v.metadata]
    assert bias_inputs == ["bias_0"] and g.nodes["bias_0"].metadata[BIAS_TIME_KEY] == 0.7
    assert np.array_equal(g.nodes["bias_linear_0"].weight, [[3.0]])
    assert ("bias_linear_0", "lif_0") in g.edges and ("linear_0", "lif_0") in g.edges


def test_delays_import_and_compile_onto_the_delay_lines():
    g = nir.NIRGraph.from_list(nir.Delay(delay=np.array([0.0, 2.0])), nir.Linear(weight=np.ones((1, 2))),
                               cubalif(1, tau_syn=2.0, tau_mem=2.0))
    net = from_nir(g)
    assert net.layers[0].delays.tolist() == [0.0, 1.0] and net.layers[0].delay_kind == "axonal"
    c = compile(net)
    codes = c.config.routing.routes["delay"]
    assert sorted(set(codes.tolist())) == [0, round(c.tau_s_ticks / 8)]  # 1 tau_s = 752 ticks = 94 steps
    too_long = nir.NIRGraph.from_list(nir.Delay(delay=np.array([0.0, 20.0])), nir.Linear(weight=np.ones((1, 2))),
                                      cubalif(1, tau_syn=2.0, tau_mem=2.0))
    with pytest.raises(DesignRuleErrors, match=r"FS-R011 delay-range: layer 0 \('cubalif'\) input 1: value 10.0"):
        compile(from_nir(too_long))


def test_a_delay_between_linear_and_lif_is_refused_by_name():
    g = nir.NIRGraph.from_list(nir.Linear(weight=np.ones((1, 2))), nir.Delay(delay=np.array([1.0])),
                               cubalif(1, tau_syn=2.0, tau_mem=2.0))
    with pytest.raises(NIRImportError, match="dendritic delay"):
        from_nir(g)


def test_a_bias_delay_exports_as_a_later_bias_spike():
    net = Network(2, (Layer(np.array([[1.0], [2.0], [3.0]]), bias_time=0.7, delays=[0.25, 0.5, 0.125]),))
    back = from_nir(to_nir(net))
    assert back.layers[0].bias_time == 0.7 + 0.125 and back.layers[0].delays.tolist() == [0.25, 0.5, 0.0]


def _lin_lif(n_in=2, n=3, **kw):
    return [nir.Linear(weight=np.ones((n, n_in))), cubalif(n, **kw)]


REJECT = {
    "affine bias": ([nir.Affine(weight=np.ones((3, 2)), bias=np.ones(3)), cubalif(3)], "affine",
                    "nonzero bias"),
    "LIF": ([nir.Linear(weight=np.ones((3, 2))), nir.LIF(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3),
                                                        v_threshold=np.ones(3))], "lif", "unsupported node type LIF"),
    "tau ratio": (_lin_lif(tau_mem=1.5e-2), "cubalif", "tau_mem / tau_syn = 3"),
    "non-uniform": (_lin_lif(v_threshold=[1.0, 1.0, 2.0]), "cubalif", "v_threshold must be uniform"),
    "threshold": (_lin_lif(v_threshold=-1.0), "cubalif", "must exceed v_leak"),
    "resistance": (_lin_lif(r=-1.0), "cubalif", "r (resistance) must be positive"),
    "two linears": ([nir.Linear(weight=np.ones((3, 2))), nir.Linear(weight=np.ones((3, 3))), cubalif(3)],
                    "linear_1", "expected CubaLIF after 'linear'"),
    "lif first": ([cubalif(2), *_lin_lif()], "cubalif", "expected Linear or Affine after 'input'"),
    "tau_syn differs": ([*_lin_lif(), nir.Linear(weight=np.ones((2, 3))), cubalif(2, tau_syn=1e-3, tau_mem=1e-3)],
                        "cubalif_1", "one synaptic time constant"),
    "nan weight": ([nir.Linear(weight=np.full((3, 2), np.nan)), cubalif(3)], "linear", "NaN"),
}


@pytest.mark.parametrize("case", sorted(REJECT))
def test_unsupported_graphs_are_rejected_by_node_and_reason(case):
    nodes, node, reason = REJECT[case]
    with pytest.raises(NIRImportError, match=re.escape(reason)) as ei:
        from_nir(nir.NIRGraph.from_list(*nodes))
    assert ei.value.node == node and f"'{node}'" in str(ei.value)


def test_branching_and_extra_inputs_are_rejected():
    lin, lif = _lin_lif()
    g = nir.NIRGraph(nodes={"in": nir.Input(np.array([2])), "a": lin, "b": lif, "c": cubalif(3),
                            "out": nir.Output(np.array([3])), "out2": nir.Output(np.array([3]))},
                     edges=[("in", "a"), ("a", "b"), ("b", "out"), ("a", "c"), ("c", "out2")])
    with pytest.raises(NIRImportError, match="'a': has 2 successors"):
        from_nir(g)
    lin, lif = _lin_lif()
    g = nir.NIRGraph(nodes={"in": nir.Input(np.array([2])), "in2": nir.Input(np.array([2])), "a": lin, "b": lif,
                            "out": nir.Output(np.array([3]))},
                     edges=[("in", "a"), ("in2", "a"), ("a", "b"), ("b", "out")])
    with pytest.raises(NIRImportError, match="exactly one"):
        from_nir(g)
    with pytest.raises(NIRImportError, match="cannot read"):
        from_nir("/nonexistent/file.nir")
