"""Helpers for running the conformance suite in a subprocess, as a backend author would.

The example backend is installed with pip into a temporary target directory (from a copy of
``examples/firstspike-example-backend``, so the source tree stays clean); putting that directory on
``PYTHONPATH`` makes ``importlib.metadata`` see its ``firstspike.backends`` entry point, and nothing is
installed into the project's environment.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = ROOT / "examples" / "firstspike-example-backend"
HERE = Path(__file__).resolve().parent


@dataclass
class SuiteRun:
    """The outcome of one run of the suite: exit code, JSON report and console output."""

    returncode: int
    report: dict[str, Any]
    output: str

    def outcomes(self, outcome: str) -> list[str]:
        return sorted(k for k, v in self.report.get("tests", {}).items() if v["outcome"] == outcome)

    def passed(self, fragment: str) -> bool:
        return any(fragment in k for k in self.outcomes("passed"))

    def explain(self) -> str:
        return f"exit {self.returncode}\n{self.output[-6000:]}"


@pytest.fixture(scope="session")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the pip-installed example backend (package + dist-info with its entry point)."""
    work = tmp_path_factory.mktemp("example-build")
    src = work / "src-copy"
    shutil.copytree(EXAMPLE_DIR, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-q",
        "--target",
        str(target),
        str(src),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip install of the example failed:\n{proc.stdout}\n{proc.stderr}"
    return target


def suite_env(*paths: Path) -> dict[str, str]:
    """The environment for a subprocess that sees the given extra import paths (and no FIRSTSPIKE_DEVICE)."""
    env = dict(os.environ)
    env.pop("FIRSTSPIKE_DEVICE", None)
    env.pop("PYTEST_ADDOPTS", None)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), *([old] if old else [])])
    return env


def _run_suite(
    uri: str,
    tmp_path: Path,
    *,
    paths: tuple[Path, ...] = (),
    args: tuple[str, ...] = (),
    target: str = "firstspike.runtime.conformance",
    timeout: float = 300,
) -> SuiteRun:
    """``python -m pytest --pyargs <target> --device URI`` in a subprocess (cwd: a scratch directory)."""
    report = tmp_path / f"report-{abs(hash((uri, args, target)))}.json"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        target,
        "--device",
        uri,
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEs",
        "--conformance-report",
        str(report),
        *args,
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=suite_env(*paths), capture_output=True, text=True, timeout=timeout)
    data = json.loads(report.read_text()) if report.exists() else {}
    return SuiteRun(proc.returncode, data, proc.stdout + proc.stderr)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def run_suite(tmp_path: Path) -> Callable[..., SuiteRun]:
    """``run_suite(uri, paths=(...), args=(...), target=...)``: the suite in a subprocess (see _run_suite)."""

    def go(uri: str, **kwargs: Any) -> SuiteRun:
        return _run_suite(uri, tmp_path, **kwargs)

    return go


@pytest.fixture
def env_with() -> Callable[..., dict[str, str]]:
    """``env_with(*paths)``: see :func:`suite_env`."""
    return suite_env


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()


@dataclass
class Served:
    """A device server started by a test: its announced address line, the process and its log file."""

    line: str
    proc: subprocess.Popen[bytes]
    log: Path


def start_server(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60.0) -> Served:
    """Start ``python -m firstspike.runtime.cli serve ARGS`` and wait for its first stdout line (the address).

    Output goes to files, not pipes: a server logging into a pipe nobody reads would block once the pipe is full.
    """
    n = len(list(cwd.glob("server-*.out")))
    out, log = cwd / f"server-{n}.out", cwd / f"server-{n}.log"
    with open(out, "wb") as fo, open(log, "wb") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "firstspike.runtime.cli", "serve", *args],
            cwd=cwd,
            env=env,
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if "\n" in text:
            return Served(text.splitlines()[0].strip(), proc, log)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_server(proc)
    raise RuntimeError(f"server {args} did not announce itself; log:\n{log.read_text(errors='replace')[-3000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server this test started (SIGTERM, then SIGKILL after 10 s), by its own process handle."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve(args, paths=())``: a ``firstspike serve`` subprocess, stopped at the end of the test."""
    started: list[Served] = []

    def go(args: list[str], paths: tuple[Path, ...] = ()) -> Served:
        s = start_server(args, suite_env(*paths), tmp_path)
        started.append(s)
        return s

    yield go
    for s in started:
        stop_server(s.proc)


def run_in_process(
    uri: str, tmp_path: Path, *args: str, reference: str | None = None, claims: tuple[str, ...] = ()
) -> SuiteRun:
    """The suite through the programmatic API ``firstspike.runtime.conformance.run`` in this process."""
    from firstspike.runtime import conformance

    report = tmp_path / f"inproc-{abs(hash((uri, args)))}.json"
    t0 = time.monotonic()
    code = conformance.run(uri, reference=reference, claims=claims, report=str(report), extra=["-q", *args])
    data = json.loads(report.read_text()) if report.exists() else {}
    data["wall_s"] = round(time.monotonic() - t0, 3)
    (tmp_path / "last-run.json").write_text(json.dumps(data, indent=1))  # kept for diagnosis
    return SuiteRun(code, data, json.dumps(data.get("tests", {}), indent=1)[-6000:])


@pytest.fixture
def suite_in_process(tmp_path: Path) -> Callable[..., SuiteRun]:
    """``suite_in_process(uri, *pytest_args, reference=None, claims=())``: see :func:`run_in_process`."""

    def go(uri: str, *args: str, **kwargs: Any) -> SuiteRun:
        return run_in_process(uri, tmp_path, *args, **kwargs)

    return go
