"""``firstspike train TASK --device URI``: dispatches to the in-the-loop trainer and reports device statistics."""

from __future__ import annotations

import json

from firstspike.runtime.cli import main


def test_train_with_device_writes_the_software_trainers_outputs_plus_device_statistics(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "yinyang", "--device", "sim://?serial=2", "--epochs", "1", "--train-size", "150",
               "--eval-size", "50", "--no-progress", "--json", "--out", str(out)])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["device"] == "sim://?serial=2" and summary["epochs"] == 1
    assert summary["spikes"] > 0 and summary["synaptic_events"] > 0 and summary["dropped"] == 0
    assert summary["chip_seconds"] > 0 and summary["energy_per_classification_j"] > 0
    for name in ("model.pt", "metrics.json", "training.png", "network.fsn"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "in-the-loop" and metrics["device"]["uri"] == "sim://?serial=2"
    # the trained model deploys with the scales it was trained with: same test accuracy on the same chip
    assert main(["deploy", str(out / "model.pt"), "--device", "sim://?serial=2", "--size", "50", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == metrics["test_accuracy"]


def test_train_with_an_unknown_device_fails_cleanly(tmp_path, capsys):
    assert main(["train", "yinyang", "--device", "nosuch://", "--epochs", "1", "--out", str(tmp_path)]) == 2
    assert "no backend for scheme 'nosuch'" in capsys.readouterr().err


def test_train_with_device_and_hidden_trains_that_layout(tmp_path, capsys):
    from firstspike.runtime.ttfs.layers import TTFSNetwork

    out = tmp_path / "h"
    rc = main(["train", "yinyang", "--device", "sim://?serial=2", "--hidden", "40", "--epochs", "1", "--train-size",
               "150", "--eval-size", "50", "--no-progress", "--json", "--out", str(out)])
    assert rc == 0
    assert [layer.weight.shape for layer in TTFSNetwork.load(out / "model.pt").layers] == [(5, 40), (41, 3)]
