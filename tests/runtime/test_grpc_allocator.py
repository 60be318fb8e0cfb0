"""The server's allocator tuning: RPC worker threads reuse freed heap memory instead of page-faulting afresh.

Without it glibc gives each worker thread an arena that returns freed blocks to the OS, so a backend's per-run
temporaries (MBs for the simulator) fault in anew on every call; see ``firstspike.runtime.serve.server.tune_allocator``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from firstspike.runtime.commands import serve as serve_command

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter (the tuning is process-wide): prints "<tuned> <minor faults per iteration>".
_PROBE = """
import resource, sys, threading
import numpy as np
from firstspike.runtime.server import tune_allocator
tuned = tune_allocator() if sys.argv[1] == "1" else None
out = {}
def work():
    for k in range(40):
        if k == 10:
            f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        a = np.ones((1 << 19) + k * 1000)  # ~4 MB, sizes varying like a simulator's temporaries
        b = np.ones(1 << 17)
        del a, b
    out["faults"] = (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0) / 30
t = threading.Thread(target=work)
t.start()
t.join()
print(tuned, out["faults"])
"""


def _probe(tune: bool) -> tuple[str, float]:
    res = subprocess.run(
        [sys.executable, "-c", _PROBE, "1" if tune else "0"],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        check=True,
        timeout=120,
    )
    tuned, faults = res.stdout.split()
    return tuned, float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_worker_thread_reuses_memory_after_tuning():
    tuned, faults = _probe(tune=True)
    if tuned != "True":
        pytest.skip("not glibc: tune_allocator() reports it does not apply")
    # A 4 MB block is 1024 pages: untuned, every iteration faults them in again (measured ~560 per iteration).
    assert faults < 100, f"{faults} minor page faults per iteration after tune_allocator()"


def test_the_command_line_tunes_the_allocator_once_before_any_command(monkeypatch: pytest.MonkeyPatch):
    from firstspike.runtime import allocator, cli

    calls: list[str] = []
    monkeypatch.setattr(allocator, "tune_malloc", lambda *a: calls.append("tune") or True)
    monkeypatch.setattr(serve_command, "setup_logging", lambda level: calls.append("logging"))
    # An invalid port makes serve return before opening a backend, after the process-level setup.
    assert cli.main(["serve", "--port", "70000"]) == 2
    assert calls == ["tune", "logging"]
    calls.clear()
    monkeypatch.setattr(serve_command, "tune_allocator", lambda: calls.append("tune") or True)
    assert serve_command.main(["--port", "70000"]) == 2  # python -m firstspike.runtime.server
    assert calls == ["tune", "logging"]
