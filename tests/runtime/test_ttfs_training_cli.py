"""Layers, network save/load, weight bumping, the trainer and the ``firstspike train/eval`` commands."""

from __future__ import annotations

import json
import math
import pickletools
import zipfile
from pathlib import Path

import pytest
import torch

from firstspike.runtime.cli import main
from firstspike.runtime.ttfs.layers import TTFSLinear, TTFSNetwork
from firstspike.runtime.ttfs.loss import WeightBumper, accuracy, predict
from firstspike.runtime.ttfs.spiketime import first_spike_times

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_net(seed: int = 0) -> TTFSNetwork:
    g = torch.Generator().manual_seed(seed)
    return TTFSNetwork(4, [12, 3], [0.9, 0.9], weight_means=[1.5, 0.5], weight_stds=[0.8, 0.8], generator=g,
                       metadata={"task": "yinyang"})


def test_layer_shapes_bias_and_forward() -> None:
    layer = TTFSLinear(4, 6, bias_time=0.9, weight_mean=1.0, weight_std=0.5)
    assert layer.weight.shape == (5, 6) and layer.weight.dtype == torch.float64
    x = torch.rand(7, 4, dtype=torch.float64) * 2
    out = layer(x)
    with_bias = torch.cat([x, torch.full((7, 1), 0.9, dtype=torch.float64)], 1)
    torch.testing.assert_close(out.detach(), first_spike_times(with_bias, layer.weight.detach()))
    assert TTFSLinear(4, 6).weight.shape == (4, 6)


def test_network_returns_all_layers_and_accepts_measured_times() -> None:
    net = small_net()
    x = 0.15 + torch.rand(10, 4, dtype=torch.float64) * 1.85
    times = net(x)
    assert [t.shape for t in times] == [(10, 12), (10, 3)]
    # substituting the hidden layer's times changes what the output layer sees
    measured_hidden = times[0].detach() + 0.05
    times2 = net(x, [measured_hidden, None])
    torch.testing.assert_close(times2[0], measured_hidden)
    expected_out = net.layers[1](measured_hidden).detach()
    torch.testing.assert_close(times2[1].detach(), expected_out)
    # gradients flow through measured times into the first layer's weights
    torch.where(torch.isfinite(times2[1]), times2[1], 0.0).sum().backward()
    assert net.layers[0].weight.grad is not None and torch.isfinite(net.layers[0].weight.grad).all()
    assert net.layers[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="entries"):
        net(x, [None])
    with pytest.raises(ValueError, match="input times"):
        net(torch.zeros(3, 5, dtype=torch.float64))


def test_save_load_round_trip_is_plain_data(tmp_path: Path) -> None:
    net = small_net(3)
    path = tmp_path / "model.pt"
    net.save(path)
    loaded = TTFSNetwork.load(path)
    assert loaded.architecture() == net.architecture()
    assert loaded.metadata == {"task": "yinyang"}
    for a, b in zip(net.layers, loaded.layers, strict=True):
        torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "firstspike.ttfs.v1"
    # no code objects in the pickle: only torch's tensor rebuild helpers and collections.OrderedDict
    with zipfile.ZipFile(path) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        globals_ = {arg for op, arg, _ in pickletools.genops(zf.read(pkl)) if op.name == "GLOBAL"}
    assert all(g.startswith(("torch", "collections")) for g in globals_), globals_
    with pytest.raises(ValueError, match="not a firstspike"):
        TTFSNetwork.from_dict({"format": "other"})


def test_weight_bumper_follows_the_reference_rules() -> None:
    net = small_net()
    bumper = WeightBumper([0.3, 0.0], value=5e-4)
    hidden = torch.ones(4, 12, dtype=torch.float64)
    out = torch.ones(4, 3, dtype=torch.float64)
    assert bumper(net.weights(), [hidden, out]) is None
    out[2, 1] = math.inf  # one silent output spike > tolerance 0.0 -> bump the output layer
    before = net.layers[1].weight.detach().clone()
    assert bumper(net.weights(), [hidden, out]) == 1
    diff = net.layers[1].weight.detach() - before
    assert torch.allclose(diff[:, 1], torch.full((13,), 5e-4, dtype=torch.float64))
    assert (diff[:, [0, 2]] == 0).all()
    assert bumper(net.weights(), [hidden, out]) == 1  # repeated: doubled
    assert torch.allclose(net.layers[1].weight.detach()[:, 1] - before[:, 1],
                          torch.full((13,), 5e-4 + 1e-3, dtype=torch.float64))
    hidden[:, :5] = math.inf  # 5/12 > 0.3 of the hidden (sample, neuron) pairs: the hidden layer first
    assert bumper(net.weights(), [hidden, out]) == 0
    assert bumper.current == 5e-4  # a different layer restarts at the base value
    assert bumper.count == 3
    with pytest.raises(ValueError, match="one of each per layer"):
        bumper(net.weights()[:1], [hidden, out])


def test_predict_counts_silent_winner_as_wrong() -> None:
    t = torch.tensor([[1.0, 2.0], [math.inf, math.inf], [3.0, 0.5]], dtype=torch.float64)
    assert predict(t).tolist() == [0, -1, 1]
    assert accuracy(t, torch.tensor([0, 0, 1])) == pytest.approx(2 / 3)


def test_cli_train_and_eval_yinyang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc = main(["train", "yinyang", "--epochs", "2", "--seed", "1", "--out", str(out), "--train-size", "300",
               "--eval-size", "200", "--no-progress", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and summary["task"] == "yinyang"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "val_accuracy", "epochs", "train_samples_per_s", "final_test_accuracy"):
        assert key in metrics
    assert metrics["train_size"] == 300 and metrics["test_size"] == 200
    assert len(metrics["history"]["val_accuracy"]) == 2
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["train_samples_per_s"] > 0
    assert (out / "training.png").stat().st_size > 1000
    assert (out / "model.pt").is_file()

    rc = main(["eval", str(out / "model.pt"), "--dataset", "yinyang", "--size", "200", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["size"] == 200 and result["split"] == "test"
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"])  # first 200 of the seed-40 test set
    rc = main(["eval", str(out / "model.pt"), "--dataset", "yinyang", "--split", "val", "--dataset-seed", "7",
               "--size", "50"])
    assert rc == 0
    assert "accuracy" in capsys.readouterr().out


def test_cli_train_hidden_sets_the_hidden_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--hidden N`` trains the task's network with N hidden neurons (e.g. MNIST16's chip layout, 246)."""
    out = tmp_path / "h"
    rc = main(["train", "yinyang", "--hidden", "7", "--epochs", "1", "--out", str(out), "--train-size", "150",
               "--eval-size", "50", "--no-progress", "--json"])
    assert rc == 0
    net = TTFSNetwork.load(out / "model.pt")
    assert [layer.weight.shape for layer in net.layers] == [(5, 7), (8, 3)]  # 4 inputs + bias, 7 + bias
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "yinyang", "--hidden", "0"])
    assert "must be a positive integer" in capsys.readouterr().err


def test_cli_eval_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    assert main(["eval", str(bad), "--dataset", "yinyang"]) == 2
    err = capsys.readouterr().err
    assert "not a model file saved by firstspike" in err and len(err.strip().splitlines()) == 1
    net = small_net()
    net.save(tmp_path / "m.pt")
    assert main(["eval", str(tmp_path / "m.pt"), "--dataset", "mnist16", "--mnist-dir", str(tmp_path)]) == 2


def test_cli_train_mnist16_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the IDX-file source keeps this test fast (no 220 MB pickle): small random "digits"
    import gzip
    import struct

    import numpy as np

    rng = np.random.default_rng(0)
    raw = {}
    raw["train"] = (rng.random((120, 28, 28)) * (rng.random((120, 28, 28)) > 0.6), rng.integers(0, 10, 120))
    raw["test"] = (rng.random((40, 28, 28)) * (rng.random((40, 28, 28)) > 0.6), rng.integers(0, 10, 40))

    def idx(arr: np.ndarray) -> bytes:
        return struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()

    for which, prefix in (("train", "train"), ("test", "t10k")):
        x, y = raw[which]
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx((x * 255).astype(np.uint8))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(y.astype(np.uint8)))
    out = tmp_path / "mnist"
    rc = main(["train", "mnist16", "--epochs", "1", "--out", str(out), "--mnist-dir", str(tmp_path),
               "--no-progress", "--json"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_size"] == 120 and metrics["val_size"] == 0 and metrics["test_size"] == 40
    assert math.isnan(metrics["val_accuracy"])
    capsys.readouterr()
    rc = main(["eval", str(out / "model.pt"), "--dataset", "mnist16", "--mnist-dir", str(tmp_path), "--json"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["size"] == 40


def test_cli_train_checks_the_output_folder_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc = main(["train", "yinyang", "--epochs", "50", "--out", str(blocker / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write the output folder" in err
    assert "epoch 1/" not in err  # refused before a single epoch ran
    with pytest.raises(SystemExit):
        main(["train", "yinyang", "--train-size", "0"])
    assert "must be a positive integer" in capsys.readouterr().err
