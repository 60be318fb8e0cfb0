"""``firstspike deploy`` and ``firstspike plot`` smoke tests on the simulator."""

from __future__ import annotations

import json

import pytest
import torch

from firstspike.runtime.cli import main
from firstspike.runtime.training.forward import compile_for_device
from firstspike.runtime.training.presets import build_network, get_task


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    net = build_network(get_task("yinyang"), torch.Generator().manual_seed(0))
    path = tmp_path_factory.mktemp("deploy") / "model.pt"
    net.save(path)
    return path


def test_deploy_json_reports_accuracy_throughput_latency_and_energy(model_path, capsys):
    assert main(["deploy", str(model_path), "--device", "sim://", "--size", "60", "--batch-size", "25",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["dataset"] == "yinyang" and r["samples"] == 60
    assert 0.0 <= r["accuracy"] <= 1.0
    assert r["samples_per_s"] > 0
    # run window = latest input (<= 2.0) + 6 tau_s margin, 8 ns ticks
    assert 6.0 * 752 * 8e-3 < r["chip_us_per_sample"] < 8.1 * 752 * 8e-3
    assert r["spikes_per_sample"] > 0 and r["synaptic_events_per_sample"] > 0
    b = r["energy_breakdown_per_sample_j"]
    assert r["energy_per_sample_j"] == pytest.approx(b["synaptic"] + b["spikes"] + b["static"])
    # same seed, other batching -> same accuracy (entry offsets key the noise)
    assert main(["deploy", str(model_path), "--device", "sim://", "--size", "60", "--batch-size", "60",
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] == r["accuracy"] and again["events_sha256"] == r["events_sha256"]


def test_deploy_compiled_artifact_with_raster_and_traces(model_path, tmp_path, capsys):
    from firstspike.runtime.ttfs.layers import TTFSNetwork

    fsn = tmp_path / "net.fsn"
    compile_for_device(TTFSNetwork.load(model_path)).save(fsn)
    raster, traces = tmp_path / "raster.png", tmp_path / "traces.png"
    assert main(["deploy", str(fsn), "--device", "sim://?ideal=1", "--size", "20", "--raster", str(raster),
                 "--raster-entries", "0,3", "--traces", str(traces), "--trace-neurons", "0,120"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "energy / sample" in out
    assert raster.stat().st_size > 1000 and traces.stat().st_size > 1000


def test_plot_commands_write_pngs(model_path, tmp_path, capsys):
    assert main(["plot", "raster", str(model_path), "--device", "sim://", "--size", "5", "--entries", "1,2",
                 "-o", str(tmp_path / "r.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "raster"
    assert main(["plot", "membrane", str(model_path), "--device", "sim://", "--size", "5", "--neurons", "0,121",
                 "-o", str(tmp_path / "m.png")]) == 0
    assert (tmp_path / "r.png").is_file() and (tmp_path / "m.png").is_file()


def test_deploy_errors_are_clear(model_path, tmp_path, capsys):
    assert main(["deploy", str(tmp_path / "missing.pt"), "--device", "sim://"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["deploy", str(model_path), "--device", "sim://", "--dataset", "mnist16", "--size", "3"]) == 2
    assert "data set mnist16 has 256" in capsys.readouterr().err
    assert main(["plot", "membrane", str(model_path), "--device", "null://", "--size", "3", "-o",
                 str(tmp_path / "x.png")]) == 2
    assert "no membrane readout" in capsys.readouterr().err
