"""Design rules: each rule has a network that triggers it, and the message names rule, where, value, limit."""

import itertools

import numpy as np
import pytest

from firstspike.compiler import (
    RULES,
    CompileOptions,
    DesignRuleErrors,
    DesignRuleViolation,
    Layer,
    Network,
    check,
    compile,
)
from firstspike.compiler.rules import run_rules
from firstspike.hal import chip


def dense(*sizes: int, value: float = 0.5, bias: float | None = None, **layer_kw) -> Network:
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers.append(Layer(np.full((a + (bias is not None), b), value), bias_time=bias, **layer_kw))
    return Network(sizes[0], tuple(layers))


def errors_of(net: Network, **opts) -> list[DesignRuleViolation]:
    with pytest.raises(DesignRuleErrors) as ei:
        check(net, CompileOptions(**opts))
    return list(ei.value.violations)


def only(violations: list[DesignRuleViolation], rule: str) -> DesignRuleViolation:
    hits = [v for v in violations if v.rule == rule]
    assert hits, f"{rule} not reported; got {[v.rule for v in violations]}"
    return hits[0]


def test_r001_total_neurons_without_split():
    net = dense(100, 250, 200)  # 250 + 2 * 200 (layer 1's fan-in 250 > 128 needs merged columns)
    v = only(errors_of(net, allow_split=False), "FS-R001 total-neurons")
    assert v.where == "network" and v.value == 250 + 2 * 200 and v.limit == 512
    assert "allow_split=False" in str(v) and "1: 200 merged x2" in str(v)
    assert compile(net).n_stages == 2  # with splitting it compiles into two stages


def test_r001_total_neurons_single_layer_too_big_even_with_split():
    net = dense(200, 300)  # merged (fan-in 200) -> 600 circuits in one layer
    v = only(errors_of(net), "FS-R001 total-neurons")
    assert v.where == "layer 0" and v.value == 600 and "never split" in str(v) and "merged" in str(v)


def test_r002_fan_in():
    v = only(errors_of(dense(257, 3)), "FS-R002 fan-in")
    assert v.value == 257 and v.limit == 256 and "514 rows" in str(v)
    v = only(errors_of(dense(256, 3, bias=0.5)), "FS-R002 fan-in")  # the bias counts as an input
    assert v.value == 257


def test_r003_labels():
    net = dense(*([2] * 65))  # 64 layers of 2 neurons: fits in neurons, not in 63 addresses
    v = only(errors_of(net, allow_split=False), "FS-R003 labels")
    assert v.value == 64 and v.limit == 63 and "label 63 is reserved" in str(v)
    assert compile(net).n_stages == 2


def test_r004_input_channels():
    v = only(errors_of(dense(1100, 2)), "FS-R004 input-channels")
    assert v.value == 1100 and v.limit == 1024


def test_r005_finite_weights():
    w = np.ones((3, 2))
    w[1, 0] = np.nan
    w[2, 1] = np.inf
    v = only(errors_of(Network(3, (Layer(w, name="h"),))), "FS-R005 finite-weights")
    assert v.where == "layer 0 ('h') weight[1, 0]" and np.isnan(v.value) and "2 non-finite" in str(v)


def test_r006_weight_range_error_and_clipping_warning():
    v = only(errors_of(dense(3, 2, value=100.0)), "FS-R006 weight-range")
    assert v.value == 100.0 and v.severity == "error" and v.limit < 100
    warnings = check(dense(3, 2, value=3.0), CompileOptions(weight_scale=30))
    assert [w.rule for w in warnings] == ["FS-R006 weight-range"]
    assert warnings[0].severity == "warning" and "6 weight(s) clipped" in str(warnings[0])
    c = compile(dense(3, 2, value=3.0), weight_scale=30)
    assert c.quantization[0].clipped == 6 and "clipped" in c.warnings[0]


def test_r007_tau_ratio():
    v = only(errors_of(dense(3, 2, tau_ratio=1.5)), "FS-R007 tau-ratio")
    assert v.value == 1.5 and "(1, 2)" in str(v)


def test_r008_uniform_parameters():
    net = Network(3, (Layer(np.ones((3, 4)), tau_ratio=[1.0, 1.0, 2.0, 1.0], v_reset=[0, 0, 0, -0.5]),))
    vs = [v for v in errors_of(net) if v.rule == "FS-R008 uniform-parameters"]
    assert [v.where for v in vs] == ["layer 0 neuron 2", "layer 0 neuron 3"]
    assert "tau_ratio=2.0" in str(vs[0]) and "v_reset=-0.5" in str(vs[1])


@pytest.mark.parametrize("t", [-0.1, float("inf"), float("nan")])
def test_r009_bias_time(t):
    v = only(errors_of(dense(3, 2, bias=t)), "FS-R009 bias-time")
    assert "finite" in str(v.limit)


def test_r010_reset_potential():
    v = only(errors_of(dense(3, 2, v_reset=1.0)), "FS-R010 reset-potential")
    assert v.value == 1.0 and v.limit == "[-1, 1)"
    only(errors_of(dense(3, 2, v_reset=-1.5)), "FS-R010 reset-potential")


def test_r011_delay_range():
    tau = compile(dense(3, 2)).tau_s_ticks  # the realised tau_s: 752 ticks
    top = chip.DELAY_MAX_TICKS / tau  # 4088 ticks, ~5.44 tau_s
    compile(Network(3, (Layer(np.ones((3, 2)), delays=[0.0, 0.25, top]),)))  # within the delay lines
    for bad in (top + 8 / tau, -0.01, np.nan, np.inf):
        net = Network(3, (Layer(np.ones((3, 2)), delays=[0.0, bad, 0.0]),))
        v = only(errors_of(net), "FS-R011 delay-range")
        assert v.where == "layer 0 input 1" and "4088 ticks" in v.detail


def test_r014_delay_kind():
    for kind, d in (("synaptic", np.full((3, 2), 0.5)), ("dendritic", np.array([0.0, 0.5]))):
        net = Network(3, (Layer(np.ones((3, 2)), delays=d, delay_kind=kind, name="h"),))
        v = only(errors_of(net), "FS-R014 delay-kind")
        assert v.where == "layer 0 ('h')" and v.value == f"{kind} delays"
        compile(Network(3, (Layer(np.ones((3, 2)), delays=0 * d, delay_kind=kind),)))  # all zero: nothing to hold


def test_r012_time_constant():
    v = only(errors_of(dense(3, 2), tau_s_ticks=5000.0), "FS-R012 time-constant")
    assert v.where == "option tau_s_ticks"
    v = only(errors_of(dense(3, 2, tau_ratio=2.0), tau_s_ticks=3000.0), "FS-R012 time-constant")
    assert v.value == 1500 and v.limit == 1022


def test_r013_weight_scale():
    v = only(errors_of(dense(3, 2, 2), weight_scale=(30.0,)), "FS-R013 weight-scale")
    assert v.where == "option weight_scale" and "2 values" in str(v.limit)
    v = only(errors_of(dense(3, 2), weight_scale=-1.0), "FS-R013 weight-scale")
    assert v.value == -1.0


def test_every_violation_is_reported_at_once():
    w = np.ones((300, 600))
    w[0, 0] = np.nan
    net = Network(300, (Layer(w, tau_ratio=3.0, v_reset=2.0, name="big"),))
    with pytest.raises(DesignRuleErrors) as ei:
        compile(net)
    rules = set(ei.value.rules)
    assert {"FS-R001 total-neurons", "FS-R002 fan-in", "FS-R005 finite-weights", "FS-R007 tau-ratio",
            "FS-R010 reset-potential"} <= rules
    text = str(ei.value)
    assert text.count("\n  - ") == len(ei.value.violations) >= 5


def test_every_rule_has_an_id_and_a_docstring():
    ids = set()
    for rule in RULES:
        assert rule.__doc__ and rule.__doc__.startswith("FS-R")
        ids.add(rule.__doc__.split(":")[0])
    assert len(ids) == len(RULES)


def test_clean_networks_have_no_violations(yinyang_net, mnist16_net):
    assert run_rules(yinyang_net) == []
    assert run_rules(mnist16_net) == []
