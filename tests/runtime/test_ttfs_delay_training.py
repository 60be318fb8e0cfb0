"""Delays as trainable parameters: the layers (kinds, initialisation, range, saving, refusal to compile), the one
training loop (delays train, stay in range, own learning rate, model selection and checkpoints keep them) and the
command line (``firstspike train ... --delays KIND``; with ``--device`` only axonal delays, the chip's delay lines)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import firstspike as fs
from firstspike.compiler import DesignRuleErrors
from firstspike.runtime.cli import main
from firstspike.runtime.training.loop import train_step
from firstspike.runtime.training.presets import get_task, reference_optimizer, with_delays
from firstspike.runtime.ttfs.delays import delayed_first_spike_times
from firstspike.runtime.ttfs.layers import DEFAULT_DELAY_MAX, TTFSLinear, TTFSNetwork
from firstspike.runtime.ttfs.loss import ShiftMSELoss, TTFSLoss

KINDS = ("axonal", "synaptic", "dendritic")
QUIET = {"progress": False, "log": lambda _: None}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes in a 4-input latency code: (n, 4) times in [0.15, 2], labels (n,)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[0.2, 0.8], [0.8, 0.2], [0.8, 0.8]], dtype=torch.float64)
    x = (centres[y] + 0.12 * torch.randn(n, 2, generator=g, dtype=torch.float64)).clamp(0, 1)
    x = torch.cat([x, 1 - x], dim=1)
    return 0.15 + 1.85 * x, y


def net(kind: str | list[str], seed: int = 0, **kw: object) -> TTFSNetwork:
    return TTFSNetwork(4, [12, 3], bias_times=[0.9, 0.9], weight_means=[1.5, 0.5], weight_stds=[0.8, 0.8],
                       generator=torch.Generator().manual_seed(seed), delays=kind, **kw)  # type: ignore[arg-type]


# --- layers --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,shape", [("axonal", (6,)), ("synaptic", (6, 4)), ("dendritic", (4,))])
def test_layer_delay_shapes_include_the_bias_input(kind: str, shape: tuple[int, ...]) -> None:
    layer = TTFSLinear(5, 4, bias_time=0.9, delays=kind, generator=torch.Generator().manual_seed(0))
    assert layer.delay is not None and tuple(layer.delay.shape) == shape and layer.delay.requires_grad
    assert layer.delay_max == DEFAULT_DELAY_MAX == 4.0
    assert "delays=" + kind in repr(layer)
    x = torch.rand(7, 5, dtype=torch.float64) * 2
    expected = delayed_first_spike_times(layer.with_bias(x), layer.weight, layer.delay, kind)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)
    assert TTFSLinear(5, 4).delay is None and "delays" not in repr(TTFSLinear(5, 4))
    with pytest.raises(ValueError, match="delays must be one of"):
        TTFSLinear(5, 4, delays="somatic")
    with pytest.raises(ValueError, match="delay_max"):
        TTFSLinear(5, 4, delays="axonal", delay_max=-1.0)


def test_delays_are_initialised_as_the_reference_does() -> None:
    # reference: delay = 1 tau_s * sigmoid(x), x ~ Normal(0, 0.25): 0.5 +- 0.0621 (delta method), strictly in (0, 1)
    layer = TTFSLinear(200, 100, delays="synaptic", generator=torch.Generator().manual_seed(1))
    d = layer.delay.detach()
    assert float(d.min()) > 0.0 and float(d.max()) < 1.0
    assert float(d.mean()) == pytest.approx(0.5, abs=0.002)
    assert float(d.std()) == pytest.approx(0.0616, abs=0.002)
    scaled = TTFSLinear(200, 100, delays="synaptic", delay_init_scale=2.0, delay_init_std=1.0,
                        generator=torch.Generator().manual_seed(1))
    assert float(scaled.delay.detach().mean()) == pytest.approx(1.0, abs=0.01)
    assert float(scaled.delay.detach().std()) > 0.35


def test_network_with_delays_starts_from_the_same_weights_as_without() -> None:
    plain = net("none", seed=4)
    for kind in KINDS:
        delayed = net(kind, seed=4)
        for a, b in zip(plain.weights(), delayed.weights(), strict=True):
            assert torch.equal(a, b)
        assert delayed.has_delays and delayed.delay_kinds == [kind, kind] and len(delayed.delays()) == 2
    mixed = net(["axonal", "none"], seed=4)
    assert mixed.delay_kinds == ["axonal", "none"] and len(mixed.delays()) == 1
    assert not plain.has_delays and plain.delays() == [] and plain.snapshot()[0].equal(plain.weight_snapshot()[0])


def test_constrain_keeps_delays_in_range() -> None:
    model = net("synaptic", delay_max=[2.0, 0.5])
    with torch.no_grad():
        model.delays()[0].fill_(-3.0)
        model.delays()[1].fill_(7.0)
    model.constrain_()
    assert torch.all(model.delays()[0] == 0.0) and torch.all(model.delays()[1] == 0.5)
    with pytest.raises(ValueError, match="one entry per layer"):
        net("axonal", delay_max=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_with_delays(kind: str, tmp_path: Path) -> None:
    model = net(kind, delay_max=3.0)
    with torch.no_grad():
        model.delays()[0].add_(0.25)
    model.save(tmp_path / "m.pt")
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    assert data["architecture"]["delays"] == [kind, kind] and data["architecture"]["delay_max"] == [3.0, 3.0]
    assert len(data["delays"]) == 2
    back = fs.load_model(tmp_path / "m.pt")
    for a, b in zip(back.snapshot(), model.snapshot(), strict=True):
        assert torch.equal(a, b)
    x = torch.rand(5, 4, dtype=torch.float64) * 2
    torch.testing.assert_close(back.output_times(x), model.output_times(x), rtol=0, atol=0)
    damaged = dict(data, delays=[None, None])
    with pytest.raises(ValueError, match="delays of kind"):
        TTFSNetwork.from_dict(damaged)


def test_models_saved_before_delays_existed_still_load(tmp_path: Path) -> None:
    # exactly the dict TTFSNetwork.save wrote before delays (commit b3e4ae7): no delay keys anywhere
    old = {
        "format": "firstspike.ttfs.v1",
        "architecture": {"n_inputs": 4, "layer_sizes": [3, 2], "bias_times": [0.9, None], "tau_ratio": 1,
                         "weight_means": [1.5, 0.5], "weight_stds": [0.8, 0.8], "max_dw_norm": 0.2},
        "weights": [torch.full((5, 3), 1.25, dtype=torch.float64), torch.full((3, 2), 0.75, dtype=torch.float64)],
        "metadata": {"task": "yinyang"},
    }
    torch.save(old, tmp_path / "old.pt")
    model = fs.load_model(tmp_path / "old.pt")
    assert not model.has_delays and model.delay_kinds == ["none", "none"]
    assert torch.equal(model.weights()[0], old["weights"][0])
    # and a model without delays writes that same dict again
    re_saved = model.to_dict()
    assert set(re_saved) == set(old) and re_saved["architecture"] == old["architecture"]


@pytest.mark.parametrize("kind", ["synaptic", "dendritic"])
def test_compiling_a_model_with_chipless_delays_is_refused_by_rule(kind: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    model = net(["none", kind])
    ir = model.to_network()
    assert ir.layers[0].delays is None and ir.layers[1].delay_kind == kind
    with pytest.raises(DesignRuleErrors, match=f"FS-R014 delay-kind: layer 1.*{kind} delays"):
        fs.compile(model)
    model.save(tmp_path / "m.pt")
    assert main(["compile", str(tmp_path / "m.pt"), "-o", str(tmp_path / "m.fsn")]) == 2
    err = capsys.readouterr().err
    assert f"{kind} delays" in err and "FS-R014" in err and not (tmp_path / "m.fsn").exists()


def test_a_model_with_axonal_delays_compiles_onto_the_delay_lines() -> None:
    model = net("axonal")
    compiled = fs.compile(model)
    want = [np.rint(d.detach().numpy() * compiled.tau_s_ticks / 8) * 8 / compiled.tau_s_ticks
            for d in model.delays()]
    for got, w in zip(compiled.realised_delays(), want, strict=True):
        assert np.array_equal(got, w)
    assert [r.layer for r in compiled.delay_quantization] == [0, 1]


# --- the training loop ---------------------------------------------------------------------------------------------


def test_optimizer_gives_delays_their_own_learning_rate() -> None:
    model = net("axonal")
    opt, _ = reference_optimizer(model, 0.01, 20, 0.95, delay_lr=0.002)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.002]
    assert opt.param_groups[1]["params"] == model.delays()
    opt2, _ = reference_optimizer(net("none"), 0.01, 20, 0.95, delay_lr=0.002)
    assert len(opt2.param_groups) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_train_step_moves_delays_and_keeps_them_in_range(kind: str) -> None:
    model = net(kind, delay_max=1.0)
    x, y = blobs(60, 0)
    before = model.snapshot()
    opt = torch.optim.SGD(model.parameter_groups(0.0, 1e6), lr=0.0)  # absurd delay steps, frozen weights
    loss, _, bumped = train_step(model, opt, None, x, y, TTFSLoss())
    assert loss is not None and bumped is None
    after = model.snapshot()
    assert all(torch.equal(a, b) for a, b in zip(before[:2], after[:2], strict=True))
    moved = torch.cat([(a - b).flatten() for a, b in zip(before[2:], after[2:], strict=True)])
    assert moved.abs().max() > 0.3
    for d in model.delays():
        assert float(d.detach().min()) >= 0.0 and float(d.detach().max()) <= 1.0
    assert bool(((after[2] == 0.0) | (after[2] == 1.0)).any())  # pushed to the range's ends and clamped there


@pytest.mark.parametrize("kind", KINDS)
def test_fit_trains_delays_and_keeps_the_selected_epochs(kind: str, tmp_path: Path) -> None:
    train, val = blobs(450, 1), blobs(150, 2)
    model = net(kind)
    start = model.snapshot()
    seen: list[list[torch.Tensor]] = []
    history = fs.fit(model, train, val, epochs=4, checkpoint_dir=tmp_path, lr=0.02, delay_lr=0.01, batch_size=50,
                     callbacks=[lambda end: seen.append(end.model.snapshot())], **QUIET)
    assert history.val is not None and history.val.accuracy > 0.8
    for snap in seen:  # every epoch's delays in range
        assert all(float(d.min()) >= 0.0 and float(d.max()) <= DEFAULT_DELAY_MAX for d in snap[2:])
    assert any(not torch.equal(a, b) for a, b in zip(start[2:], seen[-1][2:], strict=True))
    # the model holds the selected epoch's weights AND delays: the evaluation repeats, the checkpoint matches
    assert fs.evaluate(model, val).accuracy == history.val.accuracy
    best = fs.load_model(tmp_path / "best.pt")
    for a, b in zip(best.snapshot(), model.snapshot(), strict=True):
        assert torch.equal(a, b)
    selected = seen[history.selected_epoch - 1]
    for a, b in zip(selected, model.snapshot(), strict=True):
        assert torch.equal(a, b)


def test_delay_lr_zero_freezes_the_delays_and_ema_averages_them() -> None:
    train, val = blobs(300, 3), blobs(100, 4)
    model = net("synaptic", seed=2)
    start = model.snapshot()
    fs.fit(model, train, val, epochs=2, delay_lr=0.0, **QUIET)
    assert all(torch.equal(a, b) for a, b in zip(start[2:], model.snapshot()[2:], strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(start[:2], model.snapshot()[:2], strict=True))
    averaged = net("synaptic", seed=2)
    h = fs.fit(averaged, train, val, epochs=2, ema=0.9, select="final", **QUIET)
    assert len(h["val_accuracy_raw"]) == 2 and h.val is not None
    assert fs.evaluate(averaged, val).accuracy == h.val.accuracy


@pytest.mark.parametrize("kind", ["synaptic", "dendritic"])
def test_fit_refuses_chipless_delays_with_a_device_in_the_loop(kind: str) -> None:
    x, y = blobs(30, 5)
    with pytest.raises(ValueError, match=f"{kind} delays: the chip's delay lines sit on the routes"):
        fs.fit(net(["axonal", kind]), (x, y), epochs=1, device="sim://", **QUIET)
    with pytest.raises(ValueError, match="delay_lr"):
        fs.fit(net("axonal"), (x, y), epochs=1, delay_lr=-1.0, **QUIET)


def test_shift_mse_loss() -> None:
    t = torch.tensor([[1.0, 1.5, 1.1], [2.0, math.inf, 1.0], [0.5, 0.9, 0.6]], dtype=torch.float64,
                     requires_grad=True)
    y = torch.tensor([0, 2, 1])
    loss = ShiftMSELoss(0.2)(t, y)
    # sample 0: wrong neurons 1, 2 should be 0.2 after t_0: (0.5-0.2)^2/2 + (0.1-0.2)^2/2; sample 1: silent -> 100;
    # sample 2: correct 0.9, wrong (0.5-0.9-0.2)^2/2 + (0.6-0.9-0.2)^2/2
    expected = (0.5 * (0.3**2 + 0.1**2) + 100.0 + 0.5 * (0.6**2 + 0.5**2)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert torch.isfinite(t.grad).all() and (t.grad[1] == 0).all()
    assert t.grad[0].sum().item() == pytest.approx(0.0, abs=1e-15)  # shift invariant
    with pytest.raises(ValueError, match="delta > 0"):
        ShiftMSELoss(0.0)


# --- presets and the command line ----------------------------------------------------------------------------------


def test_delay_presets() -> None:
    for kind in KINDS:
        cfg = with_delays("yinyang", kind)
        assert cfg.delays == kind and cfg.delay_lr is not None and cfg.delay_lr > 0
    assert with_delays("yinyang", None) == get_task("yinyang")
    with pytest.raises(ValueError, match="delays must be one of"):
        with_delays("yinyang", "somatic")


@pytest.mark.parametrize("kind", KINDS)
def test_cli_trains_yinyang_with_delays(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / kind
    rc = main(["train", "yinyang", "--hidden", "6", "--delays", kind, "--epochs", "1", "--train-size", "150",
               "--eval-size", "60", "--out", str(out), "--no-progress", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["delays"] == kind
    model = fs.load_model(out / "model.pt")
    assert model.delay_kinds == [kind, kind] and model.layer_sizes == [6, 3]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["delays"] == kind and metrics["parameters"]["delays"] == sum(
        d.numel() for d in model.delays())
    assert main(["eval", str(out / "model.pt"), "--dataset", "yinyang", "--size", "60", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"])


@pytest.mark.parametrize("kind", ["synaptic", "dendritic"])
def test_cli_refuses_chipless_delays_with_a_device(kind: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "yinyang", "--delays", kind, "--device", "sim://", "--epochs", "1",
               "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "delay lines" in err and "--device" in err and kind in err
    assert not (tmp_path / "x").exists()


def test_the_efficiency_plot_script_reads_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "plot_delay_efficiency.py"
    spec = importlib.util.spec_from_file_location("plot_delay_efficiency", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    runs = {("none", 5, 43, 0): 0.90, ("none", 5, 43, 1): 0.92, ("synaptic", 5, 86, 0): 0.95,
            ("synaptic", 5, 86, 1): 0.97, ("synaptic", 30, 486, 0): 0.99}
    for (kind, hidden, params, seed), acc in runs.items():
        run = tmp_path / f"{kind}-{hidden}-{seed}"
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({
            "delays": kind, "seed": seed, "epochs": 300, "test_accuracy": acc,
            "parameters": {"weights": 43, "delays": params - 43, "total": params},
            "config": {"layer_sizes": [hidden, 3]}}))
    (tmp_path / "unrelated.json").write_text("{}")
    assert script.main([str(tmp_path), "--out", str(tmp_path / "eff.png")]) == 0
    out = capsys.readouterr().out
    assert "| none | 5 | 43 | 2 (0,1) | 91.00 +- 1.41 % |" in out
    assert "| synaptic | 5 | 86 | 2 (0,1) | 96.00 +- 1.41 % |" in out
    assert "| synaptic | 30 | 486 | 1 (0) | 99.00 +- nan % |" in out
    assert (tmp_path / "eff.png").stat().st_size > 1000
    assert script.main([str(tmp_path / "none-5-0" / "nothing")]) == 2
