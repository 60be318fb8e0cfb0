"""Sweeps without Ray: seeds and option values as text, the options a task takes, the plan of run folders, one run
(``run_one``, what each Ray task executes) called directly, the table and its markdown, the command's refusals,
and what happens without Ray installed."""

from __future__ import annotations

import ast
import json
import math
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.runtime.cli import main
from firstspike.runtime.sweep import (
    OptionSpec,
    RayMissingError,
    RunRecord,
    RunSpec,
    SweepError,
    SweepResult,
    format_seeds,
    format_value,
    parse_grid_arg,
    parse_seeds,
    plan_runs,
    read_metrics,
    run_one,
    sweep,
    task_options,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``import ray`` fails, as on an install without the cluster extra."""
    monkeypatch.setitem(sys.modules, "ray", None)
    yield


# --- seeds and values as text -----------------------------------------------------------------------------------


def test_seeds_text() -> None:
    assert parse_seeds("0-9") == list(range(10))
    assert parse_seeds("3") == [3]
    assert parse_seeds(" 0, 2,5-7 ") == [0, 2, 5, 6, 7]
    for bad, why in [("3-1", "above the last"), ("a-b", "expected A-B"), ("", "expected A-B"), ("-1", "expected"),
                     ("0-2,2", "appears twice"), ("0-9999999999", "more than"), ("1.5", "expected")]:
        with pytest.raises(SweepError, match=why):
            parse_seeds(bad)


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=40, unique=True))
@settings(max_examples=200)
def test_seeds_round_trip(seeds: list[int]) -> None:
    text = format_seeds(seeds)
    assert parse_seeds(text) == seeds
    assert len(text) <= len(",".join(map(str, seeds)))


@given(st.text(max_size=20))
@settings(max_examples=300)
def test_seed_parser_takes_any_text_without_crashing(text: str) -> None:
    try:
        seeds = parse_seeds(text)
    except SweepError:
        return
    assert seeds and len(set(seeds)) == len(seeds) and min(seeds) >= 0


VALUES = {
    "int": st.integers(-10**6, 10**6),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "bool": st.booleans(),
    "ints": st.lists(st.integers(0, 1000), min_size=1, max_size=4),
    "floats": st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=4),
    "str": st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:/?=._-", min_size=1, max_size=20).filter(
        lambda s: s != "none"),
}


@given(st.data())
@settings(max_examples=300)
def test_option_values_round_trip_through_text(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(sorted(VALUES)))
    value = data.draw(VALUES[kind])
    spec = OptionSpec("x", kind, optional=True)
    assert spec.parse(format_value(value)) == value
    assert spec.parse("none") is None


@given(st.text(max_size=12), st.sampled_from(["int", "float", "bool", "ints", "floats"]))
@settings(max_examples=300)
def test_option_parser_refuses_with_one_line(text: str, kind: str) -> None:
    try:
        OptionSpec("x", kind).parse(text)
    except SweepError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("x: expected")


def test_task_options_follow_train_task() -> None:
    import inspect

    from firstspike.runtime.training.tasks import train_task

    opts = task_options()
    for name in ("epochs", "hidden", "lr", "ema", "headroom", "train_size", "eval_size", "select", "device",
                 "layer_sizes", "max_weights", "margin_tau"):
        assert name in opts, name
    assert not {"seed", "out_dir", "log", "progress", "device_uri", "energy"} & set(opts)
    kinds = {n: opts[n].kind for n in ("epochs", "lr", "select", "device", "layer_sizes", "max_weights")}
    assert kinds == {"epochs": "int", "lr": "float", "select": "str", "device": "device", "layer_sizes": "ints",
                     "max_weights": "floats"}
    # every option is a keyword of train_task with its default: new keywords appear here by themselves
    params = inspect.signature(train_task).parameters
    assert all(params[n].default == spec.default for n, spec in opts.items())


def test_grid_text() -> None:
    opts = task_options()
    assert parse_grid_arg("hidden=30,60", opts) == ("hidden", [30, 60])
    assert parse_grid_arg("train-size=100", opts) == ("train_size", [100])
    assert parse_grid_arg("ema=none,0.99", opts) == ("ema", [None, 0.99])
    assert parse_grid_arg("layer_sizes=60:3,120:3", opts) == ("layer_sizes", [[60, 3], [120, 3]])
    with pytest.raises(SweepError, match=r"unknown option 'hiden'; allowed: .*epochs.*hidden.*lr"):
        parse_grid_arg("hiden=3", opts)
    with pytest.raises(SweepError, match=r"hidden: expected an integer or none, got '3x'"):
        parse_grid_arg("hidden=3x", opts)
    for bad in ("hidden", "=3", "hidden=", "hidden=3,,4"):
        with pytest.raises(SweepError, match="NAME=V1,V2"):
            parse_grid_arg(bad, opts)


def test_plan_folders_and_collisions(tmp_path: Path) -> None:
    runs = plan_runs(tmp_path, [0, 1], {"hidden": [30, 60], "lr": [0.005]})
    assert [r.rel for r in runs] == ["hidden=30/lr=0.005/seed=0", "hidden=60/lr=0.005/seed=0",
                                     "hidden=30/lr=0.005/seed=1", "hidden=60/lr=0.005/seed=1"]
    assert runs[1].point == (("hidden", 60), ("lr", 0.005)) and runs[1].out_dir == str(tmp_path / runs[1].rel)
    assert plan_runs(tmp_path, [4], {})[0].rel == "seed=4"
    assert plan_runs(tmp_path, [0], {"device": ["sim://?serial=1"]})[0].rel == "device=sim____serial_1/seed=0"
    with pytest.raises(SweepError, match="share the folder"):
        plan_runs(tmp_path, [0], {"device": ["sim://a", "sim:/_a"]})
    with pytest.raises(SweepError, match="repeat"):
        plan_runs(tmp_path, [0], {"hidden": [3, 3]})


# --- one run, in this process ------------------------------------------------------------------------------------


def test_run_one_function_writes_metrics_reports_errors_and_is_not_repeated(tmp_path: Path) -> None:
    calls: list[int] = []

    def fn(seed: int, out_dir: str, x: int) -> dict[str, Any]:
        calls.append(seed)
        if x == 0:
            raise ValueError("x must not be 0")
        return {"test_accuracy": 0.5 + seed / 100 + x / 1000, "selected_epoch": 3}

    ok = RunSpec(2, (("x", 7),), str(tmp_path / "x=7/seed=2"), "x=7/seed=2")
    out = run_one(fn, ok, {})
    assert out["status"] == "ok" and not out["reused"] and calls == [2]
    written = read_metrics(ok.out_dir)
    assert written is not None and written["test_accuracy"] == 0.527 and written["wall_seconds"] >= 0
    again = run_one(fn, ok, {})
    assert again["reused"] and again["metrics"]["test_accuracy"] == 0.527 and calls == [2]

    bad = RunSpec(1, (("x", 0),), str(tmp_path / "x=0/seed=1"), "x=0/seed=1")
    out = run_one(fn, bad, {})
    assert out["status"] == "error" and out["error"] == "ValueError: x must not be 0"
    assert "Traceback" in (tmp_path / "x=0/seed=1/error.txt").read_text()
    assert read_metrics(bad.out_dir) is None

    def no_dict(seed: int, out_dir: str) -> float:
        return 0.9

    out = run_one(no_dict, RunSpec(0, (), str(tmp_path / "n"), "n"), {})
    assert out["status"] == "error" and "must return a dict with 'test_accuracy'" in out["error"]


def test_metrics_json_is_complete_or_not(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    assert read_metrics(tmp_path) is None
    for text, complete in [('{"test_accuracy": 0.9', False), ("[1]", False), ('{"val_accuracy": 0.9}', False),
                           ('{"test_accuracy": "0.9"}', False), ('{"test_accuracy": 0.9}', True),
                           ('{"test_accuracy": NaN}', True), ('{"test_accuracy": null}', True)]:
        path.write_text(text)
        assert (read_metrics(tmp_path) is not None) == complete, text


def test_run_one_trains_the_task_on_its_own_device(tmp_path: Path) -> None:
    """A task run opens the device from its URI itself (as each Ray task does) and trains in the loop."""
    spec = RunSpec(3, (("hidden", 5),), str(tmp_path / "hidden=5/seed=3"), "hidden=5/seed=3")
    out = run_one("yinyang", spec, {"device": "sim://?serial=1", "epochs": 1, "train_size": 60, "eval_size": 40,
                                    "threads": 1})
    assert out["status"] == "ok", out["error"]
    m = json.loads((tmp_path / "hidden=5/seed=3/metrics.json").read_text())
    assert m["mode"] == "in-the-loop" and m["device"]["uri"] == "sim://?serial=1" and m["seed"] == 3
    assert m["config"]["layer_sizes"][0] == 5 and m["test_accuracy"] == out["metrics"]["test_accuracy"]
    assert (tmp_path / "hidden=5/seed=3/network.fsn").exists()
    assert "in the loop on sim://?serial=1" in (tmp_path / "hidden=5/seed=3/log.txt").read_text()


# --- the table ---------------------------------------------------------------------------------------------------


def test_table_statistics_and_markdown(tmp_path: Path) -> None:
    """The docs' first yin-yang table (97.0 / 96.1 / 97.3 %) comes out as it is printed there: 96.80 +- 0.62 %."""
    accs = {0: (0.970, 0.966, 0.953, 261), 1: (0.961, 0.971, 0.957, 192), 2: (0.973, 0.971, 0.959, 281)}
    runs = [RunRecord(s, {"hidden": 120}, f"hidden=120/seed={s}", "ok", test_accuracy=t, val_accuracy=v,
                      final_test_accuracy=f, selected_epoch=e, epochs=300, wall_seconds=30.0)
            for s, (t, v, f, e) in accs.items()]
    runs.append(RunRecord(0, {"hidden": 7}, "hidden=7/seed=0", "error", error="ValueError: a | b"))
    runs.append(RunRecord(1, {"hidden": 7}, "hidden=7/seed=1", "not run"))
    res = SweepResult("yinyang", tmp_path, [0, 1, 2], {"hidden": [120, 7]}, {"epochs": 300}, runs)
    p120, p7 = res.points
    tests = [a[0] for a in accs.values()]
    assert p120.test.n == 3 and p120.test.mean == pytest.approx(statistics.fmean(tests))
    assert p120.test.std == pytest.approx(statistics.stdev(tests)) and (p120.test.min, p120.test.max) == (0.961, 0.973)
    assert (p7.runs, p7.ok, p7.failed, p7.not_run, p7.test.mean) == (2, 0, 1, 1, None)
    md = res.markdown()
    assert "| 120 | 3 of 3 | **96.80 +- 0.62 %** | 96.1 % | 97.3 % | 96.93 +- 0.29 % | 95.63 +- 0.31 % |" in md
    assert "| 0 | 261 | 96.6 % | **97.0 %** | 95.3 % | 30.0 s | ok |" in md
    assert "| 0 | - | - | - | - | - | error: ValueError: a \\| b |" in md
    assert "test acc (final epoch, 300)" in md and "| 7 | 0 of 2 | **-** |" in md
    res.write()
    assert json.loads((tmp_path / "summary.json").read_text()) == res.to_dict()
    assert (tmp_path / "summary.md").read_text() == md
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"


# --- input checks and Ray missing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["--seeds", "3-1"], "above the last"),
    (["--seeds", "x"], "expected A-B"),
    (["--seeds", "0-1", "--grid", "hiden=3"], "unknown option 'hiden'; allowed: "),
    (["--seeds", "0-1", "--grid", "hidden=3x"], "hidden: expected"),
    (["--seeds", "0-1", "--grid", "hidden=0"], "must be a positive integer"),
    (["--seeds", "0-1", "--grid", "hidden=3", "--grid", "hidden=4"], "given twice"),
    (["--seeds", "0-1", "--grid", "select=best"], "one of best-val, final"),
    (["--seeds", "0-1", "--epochs", "two"], "--epochs: expected"),
    (["--seeds", "0-1", "--set", "margin_tau=a"], "margin_tau: expected a number"),
    (["--seeds", "0-1", "--set", "seed=3"], "unknown option 'seed'"),
    (["--seeds", "0-1", "--grid", "lr=0.1", "--lr", "0.2"], "both fixed and in the grid"),
    (["--seeds", "0-1", "--cpus-per-run", "0"], "--cpus-per-run must be a positive number"),
])
def test_bad_input_is_one_line_and_nonzero(args: list[str], expected: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], no_ray: None) -> None:
    rc = main(["sweep", "yinyang", *args, "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_without_ray_the_command_says_how_to_install_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        no_ray: None) -> None:
    rc = main(["sweep", "yinyang", "--seeds", "0-1", "--epochs", "1", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'firstspike[cluster]'" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(RayMissingError):
        sweep("yinyang", seeds=[0], epochs=1, out=tmp_path / "s")


def test_finished_runs_need_no_ray_and_other_options_are_refused(tmp_path: Path, no_ray: None) -> None:
    """A sweep whose runs are all finished only reads them back (no Ray); a folder of a sweep with other fixed
    options is refused, since its runs would be taken for this sweep's."""
    def fn(seed: int, out_dir: str, x: int, scale: float = 1.0) -> dict[str, Any]:
        return {"test_accuracy": scale * (seed + x) / 10}

    specs = plan_runs(tmp_path.resolve(), [0, 1], {"x": [1, 2]})
    for s in specs:
        assert run_one(fn, s, {"scale": 0.5})["status"] == "ok"
    with pytest.raises(RayMissingError):  # writes sweep.json (the options), then finds runs to do
        sweep(fn, seeds=[0, 1, 2], grid={"x": [1, 2]}, out=tmp_path, scale=0.5)
    res = sweep(fn, seeds=[0, 1], grid={"x": [1, 2]}, out=tmp_path, scale=0.5)
    assert [r.status for r in res.runs] == ["ok"] * 4 and all(r.reused for r in res.runs)
    assert [r.test_accuracy for r in res.runs] == [0.05, 0.1, 0.1, 0.15]
    assert res.points[0].test.mean == pytest.approx(0.075)
    assert (tmp_path / "summary.md").exists()
    with pytest.raises(SweepError, match=r"other settings \(scale 0.5 there, 1.0 here\)"):
        sweep(fn, seeds=[0, 1], grid={"x": [1, 2]}, out=tmp_path, scale=1.0)
    with pytest.raises(SweepError, match="unknown grid option 'y'; allowed: scale, x"):
        sweep(fn, seeds=[0], grid={"y": [1]}, out=tmp_path)
    with pytest.raises(SweepError, match="unknown grid option 'hiden'"):
        sweep("yinyang", seeds=[0], grid={"hiden": [1]}, out=tmp_path / "t")
    with pytest.raises(SweepError, match="device must be a URI"):
        sweep("yinyang", seeds=[0], device=object(), out=tmp_path / "u")


# --- only the sweep driver imports Ray ---------------------------------------------------------------------------


def test_nothing_else_imports_ray() -> None:
    importers = []
    for folder in ("hal", "compiler", "sim_device", "drivers", "runtime", "proto", "firstspike"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.is_symlink() or any(p.is_symlink() for p in path.parents if REPO in p.parents):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n == "ray" or n.startswith("ray.") for n in names):
                    importers.append(str(path.relative_to(REPO)))
    assert importers == ["runtime/sweep/driver.py"]
    code = ("import sys, firstspike as fs, firstspike.runtime.sweep, firstspike.runtime.commands.sweep; fs.sweep; "
            "print('ray' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_nan_free_summary_json(tmp_path: Path) -> None:
    res = SweepResult("t", tmp_path, [0], {}, {}, [RunRecord(0, {}, "seed=0", "ok", test_accuracy=None)])
    res.write(plot=False)
    text = (tmp_path / "summary.json").read_text()
    assert "NaN" not in text and json.loads(text)["points"][0]["test"]["mean"] is None
    assert not math.isnan(res.wall_seconds)


def test_an_address_nobody_answers_fails_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["sweep", "yinyang", "--seeds", "0", "--epochs", "1", "--ray-address", f"127.0.0.1:{port}",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot join the Ray cluster at 127.0.0.1:{port}: " in err and "nothing answers" in err
    assert len(err.strip().splitlines()) == 1


def test_a_local_ray_runs_at_the_sweeps_priority(tmp_path: Path) -> None:
    """Ray starts workers 15 nice levels down; a sweep's own local Ray keeps the runs at the sweep's priority."""
    import os

    import ray

    def fn(seed: int, out_dir: str) -> dict[str, Any]:
        return {"test_accuracy": 0.5, "niceness": os.nice(0)}

    assert not ray.is_initialized()
    res = sweep(fn, seeds=[0], out=tmp_path, num_cpus=1, plot=False)
    assert res.ray["address"] == "local" and not ray.is_initialized()
    assert json.loads((tmp_path / "seed=0/metrics.json").read_text())["niceness"] == os.nice(0)
    assert "RAY_worker_niceness" not in os.environ
