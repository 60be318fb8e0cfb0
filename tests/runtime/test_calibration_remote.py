"""Calibration as a user runs it: ``firstspike calibrate`` on the command line, through a ``firstspike serve``
device server (in a process where importing the simulator is impossible), and a server holding its chip's
calibration (``firstspike serve --calibration``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from firstspike.hal.noise_model import DeviceNoiseModel
from firstspike.runtime import open as open_device
from firstspike.runtime.calibration import CalibrationResult
from firstspike.runtime.calibration.serving import calibration_from_info
from firstspike.sim_device.spec import SPEC_VERSION

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from itl_server import serve  # noqa: E402

SERIAL = 5


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("FIRSTSPIKE_DEVICE", None)
    return subprocess.run([sys.executable, "-m", "firstspike.runtime.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO), env=env)


@pytest.fixture(scope="module")
def cal_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cal") / "chip5.fscal"
    plot = out.with_suffix(".png")
    p = _cli("calibrate", f"sim://?serial={SERIAL}", "-o", str(out), "--rounds", "1", "--no-verify",
             "--plot", str(plot), "--json", "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout)
    assert summary["device"] == {"model": "firstspike-sim", "serial": SERIAL, "spec_version": SPEC_VERSION}
    assert summary["after"] == {} or all(v["std"] is None for v in summary["after"].values())
    assert summary["meta"]["synapses"]["measured"] is True  # the per-synapse factors are part of the default
    assert plot.stat().st_size > 10_000
    return out


@pytest.fixture(scope="module")
def server(cal_file: Path) -> Iterator[str]:
    with serve(f"sim://?serial={SERIAL}", "--calibration", str(cal_file)) as uri:
        yield uri


_NO_SIMULATOR = textwrap.dedent("""
    import importlib.abc, sys

    class NoSimulator(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "firstspike.sim_device" or name.startswith("firstspike.sim_device."):
                raise ImportError("the calibration must not import the simulator: " + name)
            return None

    sys.meta_path.insert(0, NoSimulator())
    from firstspike.runtime.calibration import calibrate

    result = calibrate(sys.argv[1], rounds=1, verify=False)
    result.save(sys.argv[2])
    assert not [m for m in sys.modules if m.startswith("firstspike.sim_device")]
    print("ok")
""")


def test_calibrating_through_a_server_without_the_simulator_gives_the_same_calibration(server, cal_file, tmp_path):
    out = tmp_path / "remote.fscal"
    env = dict(os.environ)
    env.pop("FIRSTSPIKE_DEVICE", None)
    p = subprocess.run([sys.executable, "-c", _NO_SIMULATOR, server, str(out)], capture_output=True, text=True,
                       timeout=300, cwd=str(REPO), env=env)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-3000:]
    remote = CalibrationResult.load(out)
    local = CalibrationResult.load(cal_file)
    # the same measurements through the wire: the same calibration, bit for bit
    assert remote.calibration.to_bytes() == local.calibration.to_bytes()
    for name, a in local.before.items():
        assert a.tobytes() == remote.before[name].tobytes(), name


def test_the_server_reports_its_chips_calibration_and_noise_model(server, cal_file):
    local = CalibrationResult.load(cal_file)
    with open_device(server) as dev:
        info = dev.info()
    assert info.extra["calibration"]["sha256"] == local.calibration.sha256()
    assert calibration_from_info(info) == local.calibration
    with open_device(f"sim://?serial={SERIAL}") as sim:
        published = DeviceNoiseModel.from_extra(sim.info().extra)
    assert DeviceNoiseModel.from_extra(info.extra) == published and published is not None


def test_serve_refuses_another_chips_calibration(cal_file):
    p = _cli("serve", "--backend", "sim://?serial=6", "--port", "0", "--calibration", str(cal_file), timeout=120)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "serial 5" in lines[0] and "serial 6" in lines[0], p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("args,message", [
    (("calibrate", "nope://x", "-o", "out.fscal"), "cannot open device 'nope://x'"),
    (("calibrate", "sim://", "-o", "/nonexistent-dir/x.fscal"), "does not exist"),
    (("calibrate", "sim://", "-o", "x.fscal", "--rounds", "0"), "--rounds: must be a positive integer"),
])
def test_cli_errors_are_one_line(args, message, capsys):
    from firstspike.runtime.cli import main

    try:
        code = main(list(args))
    except SystemExit as e:  # argument types are checked by argparse, which exits itself
        code = e.code
    assert code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], lines
