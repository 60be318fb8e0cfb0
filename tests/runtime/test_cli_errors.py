"""Every bad input to the command line gets one clear line on stderr, exit code 2 and no traceback.

Each case runs the real command (``firstspike.runtime.cli.main``, in this process: an exception escaping it would fail
the test, as a traceback would show in a terminal) and checks the exit code, that stderr is exactly one line, and that
the line names what is wrong. The cases are what a new user types; most are refused before any data is loaded or
any device is run.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from firstspike.runtime.cli import main
from firstspike.runtime.training.presets import build_network, get_task


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-input")
    model = d / "model.pt"
    build_network(get_task("yinyang"), torch.Generator().manual_seed(0)).save(model)
    text = d / "notes.txt"
    text.write_text("not a model\n")
    fake_pt = d / "text.pt"
    fake_pt.write_text("not a model\n")
    blocker = d / "a-file"
    blocker.write_text("")
    return {"model": model, "text": text, "fake_pt": fake_pt, "blocker": blocker, "dir": d}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command line; returns (exit code, stdout, stderr)."""
    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse exits itself
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line(err: str, *fragments: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("firstspike"), lines[0]
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# (arguments with {model} {text} {fake_pt} {blocker} {dir} placeholders, fragments the one line must contain)
CASES = [
    ("", ["required: COMMAND"]),
    ("bogus", ["invalid choice: 'bogus'", "compile"]),
    ("train yinyang --epochs 0", ["--epochs", "positive integer"]),
    ("train yinyang --epochs abc", ["--epochs", "'abc'"]),
    ("train yinyang --train-size 0", ["--train-size", "positive integer (>= 1), got 0"]),
    ("train yinyang --eval-size 0", ["--eval-size", "positive integer"]),
    ("train yinyang --lr -1", ["--lr", "> 0"]),
    ("train yinyang --lr nan", ["--lr", "finite"]),
    ("train yinyang --ema 2", ["--ema", "(0, 1)"]),
    ("train yinyang --max-minutes -1", ["--max-minutes", "> 0"]),
    ("train yinyang --headroom 0", ["--headroom", "> 0"]),
    ("train yinyang --seed -1", ["--seed", ">= 0"]),
    ("train yinyang --hidden 0", ["--hidden", "positive integer"]),
    ("train yinyang --init {dir}/missing.pt", ["--init", "no such file"]),
    ("train yinyang --init {text}", ["--init", "expected a model.pt"]),
    ("train yinyang --init {fake_pt}", ["--init", "not a torch file", "expected a model.pt"]),
    ("train yinyang --epochs 1 --device nosuch://", ["cannot open device 'nosuch://'", "available:"]),
    ("train yinyang --epochs 1 --device sim://?bogus=1", ["cannot open device", "does not take parameter"]),
    ("train yinyang --epochs 1 --out {blocker}/run", ["cannot write the output folder"]),
    ("eval {dir}/missing.pt", ["no such file"]),
    ("eval {text}", ["expected a model.pt"]),
    ("eval {model} --size 0", ["--size", "positive integer"]),
    ("eval {model} --seed -1", ["--seed", ">= 0"]),
    ("eval {model} --data {dir}/x.npz --dataset yinyang", ["not allowed with argument"]),
    ("eval {model} --size 3 --device nosuch://", ["cannot open device 'nosuch://'"]),
    ("eval {model} --dataset mnist16 --size 3", ["4 inputs", "mnist16 has 256"]),
    ("deploy {dir}/missing.pt", ["no such file"]),
    ("deploy {fake_pt}", ["not a torch file"]),
    ("deploy {model} --size 0", ["--size", "positive integer"]),
    ("deploy {model} --batch-size 0", ["--batch-size", "positive integer"]),
    ("deploy {model} --size 3 --device nosuch://", ["cannot open device 'nosuch://'", "available:"]),
    ("deploy {model} --size 3 --device sim://?serial=x", ["cannot open device", "serial='x' is not an integer"]),
    ("deploy {model} --size 3 --raster {dir}/r.png --raster-entries 5", ["--raster-entries 5", "3 samples"]),
    ("deploy {model} --size 3 --raster {dir}/r.png --raster-entries -1", ["--raster-entries", ">= 0"]),
    ("deploy {model} --size 3 --traces {dir}/t.png --raster-entries 7", ["--raster-entries 7", "3 samples"]),
    ("deploy {model} --size 3 --raster-entries abc", ["--raster-entries", "comma-separated integers"]),
    ("deploy {model} --size 3 --raster /nonexistent-folder/r.png", ["--raster", "does not exist"]),
    ("deploy {model} --size 3 --raster {dir}/r.txt", ["--raster", ".png"]),
    ("deploy {model} --size 3 --traces {dir}/t.png --trace-neurons 9999", ["--trace-neurons 9999", "0..511"]),
    ("deploy {model} --size 3 --traces {dir}/t.png --trace-period 0", ["--trace-period", "positive integer"]),
    ("deploy {model} --size 3 --static-power-w -1", ["--static-power-w", ">= 0"]),
    ("deploy {model} --size 3 --weight-scale 0", ["--weight-scale", "> 0"]),
    ("deploy {model} --size 3 --seed -1", ["--seed", ">= 0"]),
    ("deploy {model} --size 3 --data {dir}/x.npz --dataset yinyang", ["not allowed with argument"]),
    ("deploy {model} --size 3 --dataset mnist16", ["4 inputs", "mnist16 has 256"]),
    ("compile {dir}/missing.pt -o {dir}/x.fsn", ["no such file"]),
    ("compile {text} -o {dir}/x.fsn", ["unknown model type '.txt'"]),
    ("compile {model} -o /nonexistent-folder/x.fsn", ["does not exist"]),
    ("compile {model} -o {dir}/x.txt", [".fsn"]),
    ("compile {model} -o {dir}/x.fsn --plot /nonexistent-folder/p.png", ["--plot", "does not exist"]),
    ("compile {model} -o {dir}/x.fsn --tau-s-ticks 0", ["--tau-s-ticks", "> 0"]),
    ("compile {model}", ["required: -o"]),
    ("plot raster {model} --size 5 --entries 100 -o {dir}/p.png", ["--entries 100", "5 samples"]),
    ("plot raster {model} --size 5 -o /nonexistent-folder/p.png", ["does not exist"]),
    ("plot raster {model} --size 5 -o {dir}/p.txt", [".png"]),
    ("plot raster {model} --size 5 --device nosuch:// -o {dir}/p.png", ["cannot open device 'nosuch://'"]),
    ("plot membrane {model} --size 3 --neurons 9999 -o {dir}/m.png", ["--neurons 9999", "0..511"]),
    ("plot membrane {model} --size 3 --period 0 -o {dir}/m.png", ["--period", "positive integer"]),
    ("plot membrane {model} --size 3 --entry -1 -o {dir}/m.png", ["--entry", ">= 0"]),
    ("plot membrane {model} --size 3 --device null:// -o {dir}/m.png", ["no membrane readout"]),
    ("conformance nosuch://", ["cannot open device 'nosuch://'", "available:"]),
    ("conformance null:// --claim bogus", ["expected KEY=VALUE"]),
    ("conformance null:// --reference nosuch://", ["cannot open reference device 'nosuch://'"]),
    ("conformance null:// --report /nonexistent-folder/r.json", ["--report", "does not exist"]),
]


@pytest.mark.parametrize(("command", "fragments"), CASES, ids=[c for c, _ in CASES])
def test_bad_input_gets_one_line_and_exit_code_2(command: str, fragments: list[str], files: dict[str, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = command.format(**{k: str(v) for k, v in files.items()}).split()
    rc, out, err = run(capsys, *args)
    assert rc == 2, f"exit code {rc}; stdout:\n{out}\nstderr:\n{err}"
    assert_one_line(err, *fragments)
    assert not list(files["dir"].glob("x.*")) and not (files["dir"] / "p.png").exists()  # nothing half-written


def test_unreachable_grpc_device_is_one_line_everywhere(files: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"grpc://127.0.0.1:{free_port()}?timeout=2"
    lines = []
    for command in (["deploy", str(files["model"]), "--size", "3", "--device", uri], ["conformance", uri]):
        rc, _, err = run(capsys, *command)
        assert rc == 2
        assert_one_line(err, f"cannot open device '{uri}'", "UNAVAILABLE")
        lines.append(re.sub(r"after \d+ attempt", "after N attempt", err.split(": ", 1)[1]))
    assert lines[0] == lines[1]  # conformance says what deploy says


def test_deploy_without_device_names_the_default(files: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRSTSPIKE_DEVICE", raising=False)
    rc, out, err = run(capsys, "deploy", str(files["model"]), "--size", "3", "--no-progress")
    assert rc == 0, err
    assert " on sim:// " in out.splitlines()[0] and "None" not in out


def test_traces_on_a_device_without_readout_fail_after_one_line(files: dict[str, Path],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "deploy", str(files["model"]), "--size", "3", "--device", "null://", "--no-progress",
                     "--traces", str(files["dir"] / "t.png"))
    assert rc == 2
    assert_one_line(err, "no membrane readout")


@pytest.fixture
def broken_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed distribution (a dist-info on sys.path) whose backend entry point names a missing module."""
    info = tmp_path / "brokenbackend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenbackend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[firstspike.backends]\nmydev = no_such_module_xyz.backend:MyBackend\n"
                                           "noattr = json:NoSuchBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mydev"


def test_a_broken_backend_is_reported_by_info_and_fails_in_one_line(broken_entry_point: str, files: dict[str, Path],
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from firstspike.hal import registry

    status = registry.check_backends()
    assert status["sim"] is None and status["null"] is None
    assert "No module named 'no_such_module_xyz'" in str(status["mydev"])
    assert "AttributeError" in str(status["noattr"]) and "noattr = json:NoSuchBackend" in str(status["noattr"])
    rc, out, _ = run(capsys, "info")
    assert rc == 0
    backends = next(ln for ln in out.splitlines() if ln.startswith("backends:"))
    assert "mydev" not in backends and "sim" in backends
    broken = [ln for ln in out.splitlines() if ln.startswith("broken backend mydev://")]
    assert len(broken) == 1
    assert "mydev = no_such_module_xyz.backend:MyBackend" in broken[0] and "ModuleNotFoundError" in broken[0]
    rc, out, _ = run(capsys, "info", "--json")
    assert "mydev" in json.loads(out)["broken_backends"] and "mydev" not in json.loads(out)["backends"]
    rc, _, err = run(capsys, "deploy", str(files["model"]), "--size", "3", "--device", "mydev://")
    assert rc == 2
    assert_one_line(err, "cannot open device 'mydev://'", "broken", "entry point mydev =",
                    "ModuleNotFoundError: No module named 'no_such_module_xyz'")


def test_torch_load_error_is_one_line_naming_the_expected_file(files: dict[str, Path]) -> None:
    from firstspike.runtime.models import ModelLoadError, load_model

    with pytest.raises(ModelLoadError) as e:
        load_model(files["fake_pt"])
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)
    assert "expected a model.pt written by firstspike train" in str(e.value)


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firstspike.runtime.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_conformance_ignores_the_callers_pytest_configuration(tmp_path: Path) -> None:
    """A backend project whose pyproject asks for --cov (pytest-cov is not installed here) and whose conftest.py
    fails on import, with PYTEST_ADDOPTS set: none of it reaches the suite."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mybackend"\nversion = "0.1"\n\n'
                                             '[tool.pytest.ini_options]\naddopts = "--cov=mybackend -p no:nosuch"\n')
    (tmp_path / "conftest.py").write_text("raise RuntimeError('the caller conftest was loaded')\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-config --bogus-ini-option\n")
    env = {k: v for k, v in os.environ.items() if k != "FIRSTSPIKE_DEVICE"}
    env["PYTEST_ADDOPTS"] = "--bogus-env-option"
    proc = _cli(["conformance", "null://", "-k", "info"], tmp_path, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed" in proc.stdout and "caller conftest" not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].startswith("firstspike conformance: checking null://")


def test_raw_pytest_run_against_a_missing_device_stops_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FIRSTSPIKE_DEVICE", "PYTEST_ADDOPTS")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "firstspike.runtime.conformance", "--device",
                           "nosuch://", "-p", "no:cacheprovider", "-q"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, text
    assert text.count("cannot open device 'nosuch://'") == 1, text
    assert " error" not in text.lower().replace("usage_error", ""), text
