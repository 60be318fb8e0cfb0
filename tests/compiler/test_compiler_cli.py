"""``firstspike compile``: model files in (.fsir, .nir, .pt), artifact + report + plot out, typed failures."""

import argparse
import json

import numpy as np
import pytest
import torch

from firstspike.compiler import CompiledNetwork
from firstspike.compiler.nir_io import write_nir
from firstspike.runtime.commands import compile as compile_cmd


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="firstspike")
    compile_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["compile", *argv])
    return args.func(args)


def test_compile_fsir_prints_report_and_writes_artifact_and_plot(tmp_path, capsys, make_net):
    net = make_net("mnist16")
    net.save(tmp_path / "m.fsir")
    out, png = tmp_path / "m.fsn", tmp_path / "m.png"
    assert cli(str(tmp_path / "m.fsir"), "-o", str(out), "--plot", str(png)) == 0
    text = capsys.readouterr().out
    assert "256 / 256" in text and "merged columns 256" in text and "max err" in text
    assert CompiledNetwork.load(out).source == net
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compile_nir_and_pt_give_the_same_artifact(tmp_path, capsys, make_net):
    net = make_net("yinyang")
    write_nir(net, tmp_path / "y.nir")
    torch.save({"network_ir": net.to_dict()}, tmp_path / "y.pt")
    for src in ("y.nir", "y.pt"):
        assert cli(str(tmp_path / src), "-o", str(tmp_path / f"{src}.fsn"), "--weight-scale", "30", "--json") == 0
        report = json.loads(capsys.readouterr().out)
        assert report["layers"][0]["q"] == 1 / 30 and report["stages"][0]["halves"][0]["neurons"] == 123
    assert (tmp_path / "y.nir.fsn").read_bytes() == (tmp_path / "y.pt.fsn").read_bytes()


def test_compile_a_saved_ttfs_model(tmp_path):
    ttfs = pytest.importorskip("firstspike.runtime.ttfs")
    model = ttfs.TTFSNetwork(4, [7, 3], [0.9, 0.9])
    model.save(tmp_path / "model.pt")
    assert cli(str(tmp_path / "model.pt"), "-o", str(tmp_path / "model.fsn")) == 0
    c = CompiledNetwork.load(tmp_path / "model.fsn")
    assert c.layer_shapes == [(5, 7), (8, 3)] and c.bias_inputs == [(4, 0.9), (5, 0.9)]
    assert np.array_equal(c.source.layers[0].weights, model.layers[0].weight.detach().numpy())


def test_failures_exit_2_with_the_reason(tmp_path, capsys):
    bad = tmp_path / "big.pt"
    torch.save({"network_ir": {"n_inputs": 300, "layers": [{"weights": np.ones((300, 4)).tolist()}]}}, bad)
    assert cli(str(bad), "-o", str(tmp_path / "x.fsn")) == 2
    assert "FS-R002 fan-in" in capsys.readouterr().err
    assert cli(str(tmp_path / "missing.nir"), "-o", str(tmp_path / "x.fsn")) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "m.txt").write_text("x")
    assert cli(str(tmp_path / "m.txt"), "-o", str(tmp_path / "x.fsn")) == 2
    assert "unknown model type" in capsys.readouterr().err
    torch.save({"something": 1}, tmp_path / "other.pt")
    assert cli(str(tmp_path / "other.pt"), "-o", str(tmp_path / "x.fsn")) == 2
    assert "network_ir" in capsys.readouterr().err
    assert not (tmp_path / "x.fsn").exists()


def test_compile_uses_the_fixed_scales_of_a_model_trained_in_the_loop(tmp_path):
    from firstspike.runtime.ttfs import TTFSNetwork

    model = TTFSNetwork(4, [7, 3], [0.9, 0.9], metadata={"task": "yinyang", "device_weight_scale": [20.0, 12.5]})
    model.save(tmp_path / "itl.pt")
    assert cli(str(tmp_path / "itl.pt"), "-o", str(tmp_path / "itl.fsn")) == 0
    assert CompiledNetwork.load(tmp_path / "itl.fsn").weight_steps == pytest.approx([1 / 20.0, 1 / 12.5])
    # an explicit --weight-scale wins over the model's own
    assert cli(str(tmp_path / "itl.pt"), "-o", str(tmp_path / "x.fsn"), "--weight-scale", "30") == 0
    assert CompiledNetwork.load(tmp_path / "x.fsn").weight_steps == pytest.approx([1 / 30, 1 / 30])
    # without fixed scales each layer gets its own from max |w| (so generally not the model's)
    plain = TTFSNetwork(4, [7, 3], [0.9, 0.9])
    plain.save(tmp_path / "plain.pt")
    assert cli(str(tmp_path / "plain.pt"), "-o", str(tmp_path / "plain.fsn")) == 0
    assert CompiledNetwork.load(tmp_path / "plain.fsn").weight_steps != pytest.approx([1 / 20.0, 1 / 12.5])


def test_bad_fixed_scale_metadata_is_a_clear_error(tmp_path, capsys):
    from firstspike.runtime.ttfs import TTFSNetwork

    TTFSNetwork(4, [7, 3], [0.9, 0.9], metadata={"device_weight_scale": ["big", 1]}).save(tmp_path / "bad.pt")
    assert cli(str(tmp_path / "bad.pt"), "-o", str(tmp_path / "bad.fsn")) == 2
    assert "device_weight_scale" in capsys.readouterr().err
