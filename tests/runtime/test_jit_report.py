"""The compile report: a cold numba cache is announced on stderr (never stdout), with per-kernel progress."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firstspike.runtime import jit_report


def _fresh_kernel():
    """A tiny numba kernel that counts as firstspike's (its module name), compiled on its first call."""
    from numba import njit

    def add_one(x):
        return x + 1

    add_one.__module__ = "firstspike.fake_kernels"
    return njit(add_one)


def _wait_for(stream: io.StringIO, text: str, timeout: float = 10.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in stream.getvalue():
            break
        time.sleep(0.05)
    return stream.getvalue()


def test_a_compilation_is_announced_with_progress_and_a_summary(tmp_path: Path) -> None:
    from numba.core import event

    stream = io.StringIO()
    rep = jit_report._Reporter("deploy", stream, bar=False)
    listener = None

    class Listener(event.Listener):
        def on_start(self, ev):
            rep.on_start(ev.data["dispatcher"])

        def on_end(self, ev):
            rep.on_end(ev.data["dispatcher"])

    listener = Listener()
    event.register("numba:compile", listener)
    try:
        kernel = _fresh_kernel()
        assert kernel(1) == 2
        out = _wait_for(stream, "compiled 1 kernels")
        lines = out.splitlines()
        assert lines[0].startswith("compiling the training kernels once (about 25 s on this machine)")
        assert "kernel 1 compiled: add_one" in lines[1]
        assert lines[-1].startswith("compiled 1 kernels in ")
        # already compiled: nothing more is said
        before = stream.getvalue()
        assert kernel(2) == 3
        time.sleep(2 * jit_report.IDLE_END_S)
        assert stream.getvalue() == before
    finally:
        event.unregister("numba:compile", listener)


def test_numba_internals_and_other_packages_are_not_reported() -> None:
    class D:
        def __init__(self, module: str, name: str) -> None:
            self.py_func = type("F", (), {"__module__": module, "__name__": name})()

    assert jit_report._ours(D("firstspike.sim_device.engine", "_run_batch")) == "_run_batch"
    assert jit_report._ours(D("firstspike.sim_device.engine", "<lambda>")) is None
    assert jit_report._ours(D("numba.np.arrayobj", "impl")) is None


def test_the_estimate_is_this_machines_last_compile_time(tmp_path: Path) -> None:
    rep = jit_report._Reporter("deploy", io.StringIO(), bar=False)
    rep.cache_dir = str(tmp_path)
    assert rep._estimate() == jit_report.DEFAULT_ESTIMATE_S["deploy"]
    rep._save(12.34)
    assert json.loads((tmp_path / jit_report.TIMES_FILE).read_text()) == {"deploy": 12.3}
    assert rep._estimate() == 12.3


@pytest.mark.slow
def test_deploy_on_an_empty_cache_says_so_on_stderr_and_keeps_stdout_json(tmp_path: Path) -> None:
    """The real thing: ``deploy --json`` with an empty numba cache (compiles the simulator: about a minute)."""
    import numpy as np

    from firstspike.compiler import Layer, Network, compile

    rng = np.random.default_rng(0)
    net = Network(4, (Layer(rng.normal(1.5, 0.8, (5, 120)), bias_time=0.9),
                      Layer(rng.normal(0.5, 0.8, (121, 3)), bias_time=0.9)))
    model = tmp_path / "yy.fsn"
    compile(net).save(model)
    cache = tmp_path / "numba"
    cache.mkdir()
    exe = str(Path(sys.executable).with_name("firstspike"))
    proc = subprocess.run([exe, "deploy", str(model), "--device", "sim://", "--dataset", "yinyang", "--size", "20",
                           "--json"], capture_output=True, text=True, env={**os.environ, "NUMBA_CACHE_DIR": str(cache)},
                          check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["samples"] == 20
    assert "compiling the simulator's kernels once" in proc.stderr
    assert f"cached for later runs in {cache}" in proc.stderr
    assert "kernel 1 compiled:" in proc.stderr
    assert list(cache.rglob(jit_report.TIMES_FILE))  # this machine's compile time, the next estimate
