"""NIR import conventions: the option parser, each exporter's unit mapping on graphs built in that exporter's
pattern, detection and the hints, float32 tau ratios, the FS-R006 hint, biases, and ``firstspike export``."""

from __future__ import annotations

import argparse
import math

import nir
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstspike.compiler import CompiledNetwork, DesignRuleErrors, Layer, Network, NIRImportError, compile
from firstspike.compiler.nir_conventions import (
    CONVENTIONS,
    SNNTORCH_DT,
    CubaLIFParams,
    lambertw0,
    parse_convention,
    rockpool_dt,
)
from firstspike.compiler.nir_io import BIAS_TIME_KEY, compile_nir, from_nir, import_nir, read_nir, to_nir, write_nir
from firstspike.runtime.commands import compile as compile_cmd

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
F32 = np.float32


# ---- the option ------------------------------------------------------------------------------------------------
@FAST
@given(st.text(max_size=20))
def test_parse_convention_accepts_exactly_the_names(text):
    try:
        got = parse_convention(text)
    except ValueError as e:
        assert text.strip().lower() not in CONVENTIONS
        assert all(c in str(e) for c in CONVENTIONS) and "\n" not in str(e)
    else:
        assert got == text.strip().lower() and got in CONVENTIONS


@FAST
@given(st.sampled_from(CONVENTIONS), st.lists(st.booleans(), min_size=8, max_size=8), st.sampled_from(["", " ", "\t"]))
def test_parse_convention_ignores_case_and_blanks(name, upper, pad):
    text = pad + "".join(c.upper() if u else c for c, u in zip(name, upper, strict=False)) + pad
    assert parse_convention(text) == name


@FAST
@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=5)))
def test_parse_convention_refuses_non_text(value):
    with pytest.raises(ValueError, match="choose one of nir, snntorch, rockpool, norse"):
        parse_convention(value)


def test_the_cli_option_refuses_a_bad_value_in_one_line(capsys):
    parser = argparse.ArgumentParser(prog="firstspike")
    compile_cmd.register(parser.add_subparsers())
    with pytest.raises(SystemExit) as ei:
        parser.parse_args(["compile", "x.nir", "-o", "x.fsn", "--nir-convention", "lava"])
    assert ei.value.code == 2
    assert "unknown NIR convention 'lava'; choose one of nir, snntorch, rockpool, norse" in capsys.readouterr().err
    args = parser.parse_args(["compile", "x.nir", "-o", "x.fsn", "--nir-convention", " Rockpool "])
    assert args.nir_convention == "rockpool"


# ---- graphs in each exporter's pattern (float32, as the exporters write them) ---------------------------------
def _chain(weights: list[np.ndarray], lifs: list[nir.CubaLIF], affine: bool = False, names: tuple[str, str] = ("",
           "")) -> nir.NIRGraph:
    nodes: dict = {"input": nir.Input(input_type={"input": np.array([weights[0].shape[1]])})}
    edges, prev = [], "input"
    for k, (w, lif) in enumerate(zip(weights, lifs, strict=True)):
        lin = f"{2 * k}{names[0]}"
        neu = f"{2 * k + 1}{names[1]}"
        nodes[lin] = nir.Affine(weight=w, bias=np.zeros(w.shape[0], F32)) if affine else nir.Linear(weight=w)
        nodes[neu] = lif
        edges += [(prev, lin), (lin, neu)]
        prev = neu
    nodes["output"] = nir.Output(output_type={"output": np.array([weights[-1].shape[0]])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def snntorch_graph(weights, alpha, beta, thr):
    lifs = []
    for w in weights:
        n = w.shape[0]
        a, b = np.full(n, alpha, F32), np.full(n, beta, F32)
        tau_syn, tau_mem = SNNTORCH_DT / (1 - a), SNNTORCH_DT / (1 - b)  # float32, as snntorch/export_nir.py
        lifs.append(nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / SNNTORCH_DT, v_leak=np.zeros(n, F32),
                                v_threshold=np.full(n, thr, F32), w_in=tau_syn / SNNTORCH_DT))
    return _chain(weights, lifs)


def rockpool_graph(weights, tau_syn, tau_mem, dt, thr, names=("_LinearTorch", "_LIFTorch")):
    lifs = []
    for w in weights:
        n = w.shape[0]
        tm = torch.full((n,), tau_mem)
        r = (tm * torch.exp(-dt / tm) / dt).numpy()  # as rockpool/nn/modules/torch/nir.py
        lifs.append(nir.CubaLIF(tau_syn=np.full(n, tau_syn, F32), tau_mem=tm.numpy(), r=r, v_leak=np.zeros(n, F32),
                                v_threshold=np.full(n, thr, F32)))
    return _chain(weights, lifs, names=names)


def norse_graph(weights, tau_syn, tau_mem, dt, thr):
    lifs = []
    for w in weights:
        n = w.shape[0]
        ts_inv, tm_inv = torch.full((n,), 1 / tau_syn), torch.full((n,), 1 / tau_mem)
        lifs.append(nir.CubaLIF(tau_syn=(dt / ts_inv).numpy(), tau_mem=(dt / tm_inv).numpy(), r=np.ones(n, F32),
                                v_leak=np.zeros(n, F32), v_threshold=np.full(n, thr, F32)))
    return _chain(weights, lifs, affine=True)


@st.composite
def exporter_graphs(draw):
    """(exporter, graph, NIR weights, model weight per NIR weight derived from the exporter's discrete dynamics)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sizes = [draw(st.integers(1, 6)) for _ in range(draw(st.integers(2, 3)))]
    weights = [rng.normal(0, 0.05, (sizes[k + 1], sizes[k])).astype(F32) for k in range(len(sizes) - 1)]
    thr = draw(st.sampled_from([0.5, 1.0, 2.0, 3.7]))
    ratio = draw(st.sampled_from([1, 2]))
    which = draw(st.sampled_from(["snntorch", "rockpool", "norse"]))
    if which == "snntorch":  # mem gains syn each step, syn gains W: a model weight of W tau_mem / (dt thr)
        steps = draw(st.sampled_from([10, 20, 50, 100]))
        alpha, beta = 1 - 1 / steps, 1 - 1 / (ratio * steps)
        g = snntorch_graph(weights, alpha, beta, thr)
        factor = 1.0 / ((1 - float(F32(beta))) * thr)
    else:
        tau_syn = draw(st.sampled_from([2e-3, 5e-3, 2e-2]))
        dt = tau_syn / draw(st.sampled_from([5, 20, 100]))
        if which == "rockpool":  # vmem gains isyn each step, isyn gains W: W tau_mem / (dt thr)
            g = rockpool_graph(weights, tau_syn, ratio * tau_syn, dt, thr)
            factor = ratio * tau_syn / (dt * thr)
        else:  # i jumps by W, tau_mem dv/dt = -v + i: W / thr
            g = norse_graph(weights, tau_syn, ratio * tau_syn, dt, thr)
            factor = 1.0 / thr
    return which, g, weights, factor, ratio


@FAST
@given(exporter_graphs())
def test_each_convention_maps_its_exporters_graph_to_the_derived_weights(case):
    which, g, weights, factor, ratio = case
    imp = import_nir(g, convention=which)
    assert imp.detection.convention == which
    for L, w in zip(imp.network.layers, weights, strict=True):
        np.testing.assert_allclose(L.weights, w.T.astype(np.float64) * factor, rtol=2e-5, atol=0)
        assert L.tau_ratio == ratio and L.v_reset == 0.0
    for other in CONVENTIONS:
        if other not in ("nir", which):
            with pytest.raises(NIRImportError, match=f"--nir-convention {which}"):
                import_nir(g, convention=other)


@FAST
@given(st.floats(1e-6, 0.5), st.floats(1e-4, 10.0))
def test_rockpool_dt_is_recovered_from_r(x, tau_mem):
    dt = x * tau_mem
    p = CubaLIFParams("n", tau_mem, tau_mem, 0.0, 1.0, np.array([tau_mem * math.exp(-x) / dt]), np.ones(1))
    assert rockpool_dt(p)[0] == pytest.approx(dt, rel=1e-12)
    assert lambertw0(np.array([1e-300, 1.0, 1e300])) == pytest.approx([1e-300, 0.5671432904097838, 684.2472]
                                                                      , rel=1e-6)


# ---- metadata ------------------------------------------------------------------------------------------------
_meta_values = st.one_of(st.text(max_size=8), st.floats(allow_nan=False), st.integers(-5, 5), st.binary(max_size=4))


@FAST
@given(st.dictionaries(st.text(max_size=12).filter(lambda k: not k.startswith("firstspike.")), _meta_values,
                       max_size=4), st.sampled_from(CONVENTIONS))
def test_foreign_metadata_changes_nothing(meta, convention):
    g = norse_graph([np.full((2, 3), 0.5, F32)], 5e-3, 5e-3, 5e-5, 1.0)
    g.metadata = dict(meta)
    for node in g.nodes.values():
        node.metadata = dict(meta)
    if convention in ("nir", "norse"):
        assert from_nir(g, convention=convention).layers[0].weights.shape == (3, 2)
    else:
        with pytest.raises(NIRImportError, match="--nir-convention norse"):
            from_nir(g, convention=convention)


@FAST
@given(st.one_of(st.floats(0, 10), st.integers(0, 10), st.text(max_size=6), st.binary(max_size=4),
                 st.lists(st.floats(0, 10), min_size=1, max_size=2)))
def test_bias_time_metadata_is_a_number_or_a_clear_error(value):
    g = to_nir(Network(2, (Layer(np.ones((3, 2)), bias_time=0.5),)))
    g.nodes["bias_0"].metadata = {BIAS_TIME_KEY: value}
    try:
        expected = float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        with pytest.raises(NIRImportError, match="must be a number"):
            from_nir(g)
    else:
        assert from_nir(g).layers[0].bias_time == expected


# ---- the literal reading and its hints --------------------------------------------------------------------------
def test_firstspike_exports_are_recognised_and_refused_by_the_other_readings(make_net):
    g = to_nir(make_net("yinyang"), tau_syn=4.0)  # r = 4, w_in = 1: Rockpool's pattern, were it not for the metadata
    imp = import_nir(g)
    assert imp.detection.convention == "nir" and imp.hint == "" and imp.network == make_net("yinyang")
    for other in ("snntorch", "rockpool", "norse"):
        with pytest.raises(NIRImportError, match="--nir-convention nir"):
            import_nir(g, convention=other)


def test_weight_range_error_names_the_option_when_the_unit_factor_is_far_from_1():
    # literal units with tau_syn = 1 ms and r = 1: every weight is multiplied by 1000
    lif = nir.CubaLIF(tau_syn=np.full(2, 1e-3), tau_mem=np.full(2, 1e-3), r=np.ones(2), v_leak=np.zeros(2),
                      v_threshold=np.ones(2))
    g = nir.NIRGraph.from_list(nir.Linear(weight=np.full((2, 3), 0.5)), lif)
    assert import_nir(g).detection.convention is None
    with pytest.raises(DesignRuleErrors) as ei:
        compile_nir(g)
    (v,) = ei.value.violations
    assert v.rule == "FS-R006 weight-range" and v.value == 500.0
    assert "multiplies its weights by 1e+03" in str(v) and "--nir-convention snntorch|rockpool|norse" in str(v)
    # plain compile() of the same network: today's message, no hint
    with pytest.raises(DesignRuleErrors) as ei:
        compile(from_nir(g))
    assert "--nir-convention" not in str(ei.value)


def test_weight_range_error_without_a_hint_when_the_reading_fits():
    g = to_nir(Network(2, (Layer(np.full((2, 1), 100.0)),)), tau_syn=3e-3)
    with pytest.raises(DesignRuleErrors) as ei:
        compile_nir(g)
    assert "FS-R006 weight-range" in str(ei.value) and "--nir-convention" not in str(ei.value)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_nonzero_affine_bias_is_refused_under_every_convention(convention):
    g = norse_graph([np.full((2, 3), 0.5, F32)], 5e-3, 5e-3, 5e-5, 1.0)
    g.nodes["0"] = nir.Affine(weight=np.full((2, 3), 0.5, F32), bias=np.array([0.0, 0.1], F32))
    with pytest.raises(NIRImportError, match="Affine with a nonzero bias: a constant bias current has no exact TTFS"):
        import_nir(g, convention=convention)


def test_float32_tau_ratio_of_two_is_accepted_and_a_real_difference_is_not():
    w = [np.full((3, 2), 0.01, F32)]
    g = snntorch_graph(w, 0.8, 0.9, 1.0)  # tau_mem / tau_syn = 1.9999993 in float32
    ratio = float(g.nodes["1"].tau_mem[0] / g.nodes["1"].tau_syn[0])
    assert ratio != 2.0 and abs(ratio - 2.0) < 1e-6 * 2
    assert from_nir(g, convention="snntorch").layers[0].tau_ratio == 2.0
    assert from_nir(g).layers[0].tau_ratio == 2.0  # the literal reading too (it refuses the weights, not the ratio)
    lif = nir.CubaLIF(tau_syn=np.ones(3), tau_mem=np.full(3, 2.0 * (1 + 1e-5)), r=np.ones(3), v_leak=np.zeros(3),
                      v_threshold=np.ones(3))
    with pytest.raises(NIRImportError, match=r"tau_mem / tau_syn = 2\.00002; supported ratios are 1 and 2"):
        from_nir(nir.NIRGraph.from_list(nir.Linear(weight=np.ones((3, 2))), lif))


def test_snntorch_ratio_tolerance_covers_float32_decay_factors():
    # alpha = 1 - 1/80, beta = 1 - 1/160 in float32: 1 - beta carries up to 2^-24 absolute, ratio off by 4.8e-6
    g = snntorch_graph([np.full((3, 2), 0.01, F32)], 1 - 1 / 80, 1 - 1 / 160, 1.0)
    lif = g.nodes["1"]
    assert abs(float(lif.tau_mem[0] / lif.tau_syn[0]) - 2.0) > 4e-6
    assert from_nir(g, convention="snntorch").layers[0].tau_ratio == 2.0
    with pytest.raises(NIRImportError, match=r"supported ratios are 1 and 2 .*--nir-convention snntorch"):
        from_nir(g)  # the literal reading keeps 1e-6, and says what the file looks like


# ---- firstspike export ------------------------------------------------------------------------------------------
def _export(*argv: str) -> int:
    from firstspike.runtime.cli import main

    try:
        return main(["export", *argv])
    except SystemExit as e:  # argparse refusals
        return int(e.code or 0)


def test_export_command_round_trip_is_exact(tmp_path, capsys, make_net):
    from firstspike.runtime.ttfs import TTFSNetwork

    model = TTFSNetwork(4, [7, 3], [0.9, 0.9])
    model.save(tmp_path / "m.pt")
    assert _export(str(tmp_path / "m.pt"), "-o", str(tmp_path / "m.nir"), "--tau-syn", "6e-3") == 0
    assert "4 -> 7 -> 3, 2 bias input(s), tau_syn = 0.006 s" in capsys.readouterr().out
    assert float(nir.read(tmp_path / "m.nir").nodes["lif_0"].tau_syn[0]) == 6e-3
    assert read_nir(tmp_path / "m.nir") == model.to_network()
    net = make_net("mnist16")
    net.save(tmp_path / "n.fsir")
    assert _export(str(tmp_path / "n.fsir"), "-o", str(tmp_path / "n.nir")) == 0
    assert compile(read_nir(tmp_path / "n.nir")).to_bytes() == compile(net).to_bytes()


def test_export_re_reads_a_foreign_file_literally(tmp_path):
    g = norse_graph([np.full((2, 3), 0.5, F32)], 5e-3, 1e-2, 5e-5, 2.0)
    nir.write(tmp_path / "norse.nir", g)
    assert _export(str(tmp_path / "norse.nir"), "-o", str(tmp_path / "lit.nir"), "--nir-convention", "norse") == 0
    back = read_nir(tmp_path / "lit.nir")
    assert back == from_nir(g, convention="norse") and back.layers[0].weights[0, 0] == 0.25


def test_export_failures_are_one_line_and_exit_2(tmp_path, capsys):
    assert _export(str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x.nir")) == 2
    assert capsys.readouterr().err.strip() == f"firstspike export: {tmp_path / 'missing.pt'}: no such file"
    Network(1, (Layer(np.ones((1, 1))),)).save(tmp_path / "a.fsir")
    assert _export(str(tmp_path / "a.fsir"), "-o", str(tmp_path / "x.nir"), "--tau-syn", "0") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--tau-syn" in err and "must be a number > 0" in err
    assert not (tmp_path / "x.nir").exists()


def test_compile_of_an_exported_file_gives_the_same_artifact(tmp_path, make_net):
    net = make_net("yinyang")
    write_nir(net, tmp_path / "y.nir", tau_syn=2e-3)
    assert CompiledNetwork.from_bytes(compile_nir(tmp_path / "y.nir").to_bytes()).source == net


def test_rockpool_is_recognised_by_its_names_or_a_round_time_step():
    w = [np.full((3, 2), 0.01, F32), np.full((2, 3), 0.01, F32)]
    assert import_nir(rockpool_graph(w, 0.02, 0.02, 1e-3, 1.0, names=("", ""))).detection.convention == "rockpool"
    unnamed = rockpool_graph(w, 0.02, 0.02, 3e-4, 1.0, names=("", ""))
    assert import_nir(unnamed).detection.convention is None  # dt = 0.3 ms: not evidence enough
    assert import_nir(unnamed, convention="rockpool").network.layers[0].weights[0, 0] == pytest.approx(
        0.01 * 0.02 / 3e-4, rel=1e-5)
