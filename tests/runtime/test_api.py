"""The Python API at the package top (``import firstspike as fs``): a user's own network and data through the one
training loop, in software and with the simulated chip in the loop; evaluation that matches ``firstspike deploy``;
the README quickstart and the examples run as written."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import firstspike as fs
from firstspike.runtime.cli import main
from firstspike.runtime.training.data import DataError

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def moons(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A small two-class problem (two noisy half circles), encoded as mirrored latency codes: (n, 4) times."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, math.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper[:, None], np.stack([np.cos(a), np.sin(a)], 1), np.stack([1 - np.cos(a), 0.5 - np.sin(a)], 1))
    x = (x + rng.normal(0, 0.1, x.shape) - [-1.5, -1.0]) / [4.0, 2.5]
    return fs.LatencyEncoder(mirror=True)(np.clip(x, 0, 1)), torch.from_numpy((~upper).astype(np.int64))


def two_hidden(seed: int = 0) -> fs.TTFSNetwork:
    return fs.TTFSNetwork(4, [16, 12, 2], bias_times=[0.9, 0.9, 0.9], weight_means=[1.0, 0.5, 0.5],
                          weight_stds=[0.8, 0.8, 0.8], generator=torch.Generator().manual_seed(seed))


def test_the_front_door_names_resolve_and_are_documented():
    api_doc = (ROOT / "docs" / "api.md").read_text()
    for name in fs.__all__:
        assert getattr(fs, name) is not None, name
        if name != "__version__":
            assert f"`fs.{name}" in api_doc, f"docs/api.md does not document fs.{name}"
    assert fs.compile is fs.runtime.models.compile_model and fs.open_device is fs.runtime.devices.open


def test_two_hidden_layers_train_on_user_data_in_software():
    train, val = moons(600, 0), moons(200, 1)
    model = two_hidden()
    history = fs.fit(model, train, val, epochs=6, progress=False, log=lambda _: None)
    assert history.epochs_run == 6 and len(history["val_accuracy"]) == 6
    losses = [v for v in history["train_loss"] if math.isfinite(v)]  # an epoch of weight bumping only has none
    assert len(losses) >= 2 and losses[-1] < losses[0]
    assert history.val is not None and history.val.accuracy > 0.75  # two moons: chance is 0.5
    assert history.selected == "best-val" and history["val_accuracy"][history.selected_epoch - 1] == max(
        history["val_accuracy"])
    assert history.device is None and 0.0 <= history["silent_hidden_fraction"][-1] <= 1.0
    # the model holds the selected weights: evaluating them again gives the history's number
    assert fs.evaluate(model, val).accuracy == history.val.accuracy


def test_two_hidden_layers_train_with_the_simulated_chip_in_the_loop_and_deploy_agrees(tmp_path, capsys):
    train, val, test = moons(300, 0), moons(100, 1), moons(150, 2)
    model = two_hidden(1)
    fs.fit(model, train, val, epochs=4, progress=False, log=lambda _: None)
    with fs.open_device("sim://?serial=3") as chip:
        history = fs.fit(model, train, val, test=test, epochs=2, device=chip, progress=False, log=lambda _: None)
        assert history.device is not None and history.device_stats is not None
        assert history.device_stats["training"].runs == 2 * 2  # two minibatches of 150 per epoch
        assert history.device_stats["total"].config_diffs >= 1  # only changed synapses travelled
        assert len(history["changed_weights_per_step"]) == 2
        for w, lim in zip(model.weights(), history.device["max_abs_weight"], strict=True):
            assert float(w.detach().abs().max()) <= lim + 1e-12  # within what the fixed scale represents
        on_chip = fs.evaluate(model, test, device=chip)
    assert history.test is not None and on_chip.accuracy == history.test.accuracy  # same chip, seed, weights
    assert on_chip.device is not None and on_chip.device.spikes > 0 and on_chip.n == 150
    # the saved model and data through the command line: the same numbers as fs.evaluate on the device
    model.save(tmp_path / "model.pt")
    fs.SpikeDataset(*test).save(tmp_path / "test.npz")
    assert main(["deploy", str(tmp_path / "model.pt"), "--data", str(tmp_path / "test.npz"), "--device",
                 "sim://?serial=3", "--json", "--no-progress"]) == 0
    deployed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert deployed["accuracy"] == on_chip.accuracy and deployed["loss"] == on_chip.loss
    assert deployed["spikes_per_sample"] * deployed["samples"] == on_chip.device.spikes


def test_deploy_of_a_preset_model_matches_fs_evaluate(tmp_path, capsys):
    from firstspike.runtime.training.presets import build_network, get_task

    model = build_network(get_task("yinyang"), torch.Generator().manual_seed(0))
    model.save(tmp_path / "model.pt")
    assert main(["deploy", str(tmp_path / "model.pt"), "--device", "sim://", "--size", "200", "--json",
                 "--no-progress"]) == 0
    deployed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ev = fs.evaluate(fs.load_model(tmp_path / "model.pt"), fs.load_dataset("yinyang", "test", size=200),
                     device="sim://")
    assert (deployed["accuracy"], deployed["loss"], deployed["device"]) == (ev.accuracy, ev.loss, "sim://")


def test_data_in_every_form_gives_the_same_training():
    times, labels = moons(300, 3)

    class Pairs(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, i: int):
            return times[i], int(labels[i])

    runs = []
    for data in ((times, labels), (times.numpy(), labels.numpy()), Pairs(), fs.SpikeDataset(times, labels)):
        model = two_hidden(2)
        h = fs.fit(model, data, epochs=2, seed=5, progress=False, log=lambda _: None)
        runs.append(h["train_loss"])
    assert all(r == runs[0] for r in runs[1:])
    # a DataLoader is iterated as given (its own batching and order)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(times, labels), batch_size=50, shuffle=False)
    h = fs.fit(two_hidden(2), loader, epochs=1, progress=False, log=lambda _: None)
    assert h.samples_seen == 300 and h.selected == "final"


def test_callbacks_checkpoints_schedulers_and_averaging(tmp_path):
    train, val = moons(300, 4), moons(100, 5)
    seen: list[int] = []

    def stop_after_two(end) -> bool:
        seen.append(end.epoch)
        return end.epoch == 2

    model = two_hidden(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    h = fs.fit(model, train, val, epochs=5, optimizer=opt, scheduler=sched, callbacks=[stop_after_two],
               checkpoint_dir=tmp_path / "ckpt", ema=0.9, progress=False, log=lambda _: None)
    assert seen == [1, 2] and h.epochs_run == 2 and len(h["val_accuracy_raw"]) == 2
    last = fs.load_model(tmp_path / "ckpt" / "last.pt")
    assert [w.shape for w in last.weights()] == [w.shape for w in model.weights()]
    assert (tmp_path / "ckpt" / "best.pt").is_file()


def test_bad_data_and_options_fail_with_one_clear_message():
    times, labels = moons(50, 6)
    model = two_hidden()
    quiet = {"progress": False, "log": lambda _: None}
    with pytest.raises(ValueError, match="training data is empty"):
        fs.fit(model, (times[:0], labels[:0]), epochs=1, **quiet)
    with pytest.raises(ValueError, match="4 inputs; the data has 3"):
        fs.fit(model, (times[:, :3], labels), epochs=1, **quiet)
    bad = times.clone()
    bad[0, 0] = math.nan
    with pytest.raises(DataError, match="NaN; use inf"):
        fs.fit(model, (bad, labels), epochs=1, **quiet)
    with pytest.raises(DataError, match="labels must be"):
        fs.fit(model, (times, labels[:10]), epochs=1, **quiet)
    with pytest.raises(ValueError, match="needs validation data"):
        fs.fit(model, (times, labels), epochs=1, select="best-val", **quiet)
    with pytest.raises(ValueError, match="ema"):
        fs.fit(model, (times, labels), epochs=1, ema=1.5, **quiet)
    with pytest.raises(ValueError, match="evaluation data is empty"):
        fs.evaluate(model, (times[:0], labels[:0]))


def test_session_results_name_their_fields():
    times, _ = moons(7, 8)
    model = two_hidden()
    with fs.open_device("sim://?ideal=1") as chip:
        res = fs.Session(chip, fs.compile(model)).run(times.numpy())
    assert [t.shape for t in res.layer_times] == [(7, 16), (7, 12), (7, 2)]
    assert res.output_times is res.layer_times[-1]
    assert not np.isnan(res.output_times).any()  # silent is inf, never NaN


def _python_block(markdown: str, heading: str) -> str:
    section = markdown.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block under {heading}"
    return match.group(1)


def test_the_readme_quickstart_runs_as_written(tmp_path):
    code = _python_block((ROOT / "README.md").read_text(), "## Python quickstart")
    assert len(code.strip().splitlines()) <= 25
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    software = float(next(line for line in lines if line.startswith("software:")).split()[-1])
    chip = float(next(line for line in lines if line.startswith("on the chip:")).split()[-1])
    assert software > 0.8 and chip > 0.7, run.stdout


@pytest.mark.parametrize("script", ["two_moons.py", "spike_timing.py"])
def test_the_examples_run(script: str, tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--quick", *(
        ["--out", str(tmp_path / "out")] if script == "spike_timing.py" else [])],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "software: test accuracy" in run.stdout and "in the loop" in run.stdout, run.stdout
    if script == "spike_timing.py":
        assert main(["deploy", str(tmp_path / "out" / "model.pt"), "--data", str(tmp_path / "out" / "test.npz"),
                     "--device", "sim://", "--json", "--no-progress"]) == 0
