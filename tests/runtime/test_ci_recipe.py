"""docs/ci.md works as printed: its pytest file passes in a scratch project with nothing but the installed plugin (and
every server it started is gone afterwards); its GitHub Actions workflow's steps, run with bash as the runner would,
start the server, run a user's tests against the URI from the ready file, and stop it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "ci.md"
VENV_BIN = Path(sys.executable).parent
_BLOCK = re.compile(r"<!-- ci-test: (?P<name>[^ ]+) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.S)


def doc_blocks() -> dict[str, str]:
    """The fenced blocks of docs/ci.md marked ``<!-- ci-test: NAME -->``, by NAME."""
    blocks = {m["name"]: m["body"] + "\n" for m in _BLOCK.finditer(DOC.read_text(encoding="utf-8"))}
    assert set(blocks) == {"test_on_device.py", "workflow", "tests/device/test_device.py"}, set(blocks)
    return blocks


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FIRSTSPIKE_", "PYTEST_")) and k not in ("PYTHONPATH", "GITHUB_ENV", "RUNNER_TEMP")}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env.update(extra)
    return env


def _wait_gone(pid: int, timeout_s: float = 15.0) -> bool:
    """Whether the process ends within ``timeout_s`` (the server removes its ready file, then the interpreter exits)."""
    deadline = time.monotonic() + timeout_s
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _gone(pid: int) -> bool:
    """The process ended (no such process, or only a zombie entry left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


_PID_PROBE = '''
from pathlib import Path


def _record(server):
    with open(Path(__file__).parent / "pids.txt", "a") as f:
        f.write(f"{server.pid}\\n")


def test_record_a_test_server(firstspike_server):
    assert firstspike_server.running
    _record(firstspike_server)


def test_record_the_session_server(firstspike_server_session):
    _record(firstspike_server_session)
'''


def test_the_documented_test_file_passes_in_a_scratch_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_on_device.py").write_text(doc_blocks()["test_on_device.py"], encoding="utf-8")
    (project / "test_pids.py").write_text(_PID_PROBE, encoding="utf-8")
    assert not list(project.glob("conftest.py"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "."],
        cwd=project, env=_clean_env(), capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert re.search(r"\b7 passed\b", out), out[-3000:]
    pids = [int(p) for p in (project / "pids.txt").read_text().split()]
    assert len(pids) == 2 and pids[0] != pids[1]
    assert all(_gone(pid) for pid in pids), [p for p in pids if not _gone(p)]


def _steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(doc_blocks()["workflow"])
    (job,) = workflow["jobs"].values()
    return list(job["steps"])


def test_the_documented_workflow_runs_with_bash(tmp_path: Path) -> None:
    """Each ``run:`` step runs as GitHub's runner runs it (``bash --noprofile --norc -eo pipefail``), in order, with
    ``$RUNNER_TEMP`` and ``$GITHUB_ENV`` (lines KEY=VALUE appended there reach the later steps); ``if: always()``
    steps run even after a failure. Only the install step is skipped: this venv's firstspike is on PATH instead."""
    blocks = doc_blocks()
    project = tmp_path / "project"
    user_test = project / "tests" / "device" / "test_device.py"
    user_test.parent.mkdir(parents=True)
    user_test.write_text(blocks["tests/device/test_device.py"], encoding="utf-8")
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    github_env = tmp_path / "github_env"
    github_env.touch()
    env = _clean_env(RUNNER_TEMP=str(runner_temp), GITHUB_ENV=str(github_env))
    steps = _steps()
    installs = [s for s in steps if str(s.get("name", "")).startswith("Install")]
    assert len(installs) == 1 and "pip install firstspike" in installs[0]["run"]
    ran: dict[str, subprocess.CompletedProcess[str]] = {}
    failed = False
    try:
        for i, step in enumerate(steps):
            if "run" not in step or step in installs:
                continue
            if failed and step.get("if") != "always()":
                continue
            script = tmp_path / f"step{i}.sh"
            script.write_text(step["run"], encoding="utf-8")
            for line in github_env.read_text().splitlines():
                key, _, value = line.partition("=")
                env[key] = value
            proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=project,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
            ran[step["name"]] = proc
            failed = failed or proc.returncode != 0
    finally:
        pid_file = runner_temp / "firstspike" / "pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        if pid is not None and not _gone(pid):
            os.kill(pid, 9)  # the recipe failed to stop it: do not leave it behind
    report = "\n".join(f"--- {name} (exit {p.returncode})\n{p.stdout[-2000:]}" for name, p in ran.items())
    assert not failed, report
    assert list(ran) == ["Start the simulated device server", "Wait until it answers health checks",
                         "Run the tests against the device", "Stop the device server"]
    assert re.search(r"\b1 passed\b", ran["Run the tests against the device"].stdout), report
    assert "FIRSTSPIKE_DEVICE=grpc://127.0.0.1:" in github_env.read_text()
    assert pid is not None and _wait_gone(pid), report
    assert not (runner_temp / "firstspike" / "ready.json").exists()  # removed by the server once it had stopped
    assert '"event": "stopped"' in (runner_temp / "firstspike" / "server.log").read_text()
