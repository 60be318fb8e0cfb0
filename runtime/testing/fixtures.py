"""pytest fixtures that run a simulated device server for a test: ``firstspike_server`` and friends.

Registered as the pytest plugin ``firstspike_server`` (entry point ``pytest11``), so any project that installs
firstspike can use them without a conftest::

    import firstspike.runtime as fr

    def test_my_network_on_the_device(firstspike_server):
        with fr.open(firstspike_server.uri) as dev:      # str(firstspike_server) is the same URI
            assert dev.info().serial == 0

    @pytest.mark.firstspike_server(serial=3, ideal=True, token="s3cret")
    def test_with_options(firstspike_server): ...

    def test_two_chips(firstspike_server_factory):
        a, b = firstspike_server_factory(serial=1), firstspike_server_factory(serial=2)

    def test_shared(firstspike_server_session): ...          # one server for the whole session

Each server is ``python -m firstspike serve --backend sim://?serial=N[&ideal=1] --host 127.0.0.1 --port 0
--ready-file ...`` in a subprocess: the server picks a free port itself (no race with other processes), and the
fixture waits for its ready file, which the server writes only once it answers its health check over its socket.
If the server exits first, or does not get ready within ``startup_timeout_s``, the fixture fails with the server's
stderr. At the end the server gets SIGTERM, then SIGKILL after ``stop_timeout_s``. A token is passed in a
private file (not on the command line) and appended to the URI as ``?token=...``.

This module imports only the standard library and pytest, so the plugin costs nothing in other test runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "DEFAULT_STARTUP_TIMEOUT_S",
    "FirstspikeServer",
    "FirstspikeServerError",
    "ServerFactory",
    "start_server",
]

#: seconds a server may take to answer its health check (a fresh machine imports torch, numba and grpc first)
DEFAULT_STARTUP_TIMEOUT_S = 120.0
#: seconds between SIGTERM and SIGKILL at the end
DEFAULT_STOP_TIMEOUT_S = 15.0
_MARKER = "firstspike_server"
_LOG_TAIL = 4000  # characters of the server's stderr quoted in a startup failure


class FirstspikeServerError(RuntimeError):
    """The server did not start (exited, or not ready in time); the message quotes its stderr."""


class FirstspikeServer:
    """A running simulated device server. ``str(server)`` and ``server.uri`` are the URI a client opens
    (``grpc://127.0.0.1:PORT``, plus ``?token=...`` when the server requires one)."""

    def __init__(self, proc: subprocess.Popen[bytes], workdir: Path, ready: dict[str, Any], backend: str,
                 token: str | None) -> None:
        self.proc = proc
        self.backend = backend  #: the device URI the server serves, e.g. ``sim://?serial=3&ideal=1``
        self.token = token
        self.port: int = int(ready["port"])
        self.host = "127.0.0.1"
        self.pid: int = proc.pid
        self._workdir = workdir
        base = str(ready.get("uri") or f"grpc://{self.host}:{self.port}")
        sep = "&" if "?" in base else "?"
        self.uri: str = base + (sep + urllib.parse.urlencode({"token": token}) if token else "")

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` (for a raw gRPC channel)."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.proc.returncode}"
        return f"FirstspikeServer({self.address}, backend={self.backend!r}, pid={self.pid}, {state})"

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """The server's stderr so far (JSON lines: one per RPC, start and shutdown)."""
        path = self._workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit code. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)
        return int(self.proc.returncode)


def sim_uri(serial: int = 0, ideal: bool = False) -> str:
    """The simulated chip's URI: ``sim://?serial=N`` (+ ``&ideal=1``: no mismatch, no noise)."""
    if not 0 <= int(serial) < 2**63:
        raise ValueError(f"serial {serial} out of range [0, 2^63)")
    return f"sim://?serial={int(serial)}" + ("&ideal=1" if ideal else "")


def start_server(
    *,
    serial: int = 0,
    ideal: bool = False,
    token: str | None = None,
    backend: str | None = None,
    args: tuple[str, ...] = (),
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> FirstspikeServer:
    """Start ``firstspike serve`` on 127.0.0.1 and a free port and wait until it answers health checks.

    ``backend`` (a device URI) replaces the simulated chip given by ``serial``/``ideal``; ``args`` are extra
    ``firstspike serve`` options. Raises :class:`FirstspikeServerError` with the server's stderr if it exits or is
    not ready within ``startup_timeout_s`` seconds. The caller stops it (:meth:`FirstspikeServer.stop`).
    """
    device = backend if backend is not None else sim_uri(serial, ideal)
    workdir = Path(tempfile.mkdtemp(prefix="firstspike-server-"))
    ready_file = workdir / "ready.json"
    cmd = [sys.executable, "-m", "firstspike", "serve", "--backend", device, "--host", "127.0.0.1", "--port", "0",
           "--ready-file", str(ready_file), "--grace", "2", *args]
    if token:
        token_file = workdir / "token"
        token_file.touch(mode=0o600)
        token_file.write_text(token, encoding="utf-8")
        cmd += ["--token-file", str(token_file)]
    full_env = dict(os.environ if env is None else env)
    full_env.pop("FIRSTSPIKE_TOKEN", None)  # the server requires a token only when asked to
    log = (workdir / "server.log").open("wb")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=full_env)
    except OSError as e:
        shutil.rmtree(workdir, ignore_errors=True)
        raise FirstspikeServerError(f"cannot start {cmd[0]} -m firstspike serve: {e}") from e
    finally:
        log.close()
    server: FirstspikeServer | None = None
    try:
        ready = _wait_ready(proc, ready_file, startup_timeout_s, workdir / "server.log", device)
        server = FirstspikeServer(proc, workdir, ready, device, token)
        return server
    finally:
        if server is None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen[bytes], ready_file: Path, timeout_s: float, log: Path,
                device: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        if ready_file.exists():
            with contextlib.suppress(json.JSONDecodeError, OSError):
                return dict(json.loads(ready_file.read_text(encoding="utf-8")))
        code = proc.poll()
        if code is not None:
            raise FirstspikeServerError(
                f"firstspike serve --backend {device} exited with code {code} before it was ready; "
                f"its stderr:\n{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise FirstspikeServerError(
                f"firstspike serve --backend {device} did not answer health checks within {timeout_s} s; "
                f"its stderr so far:\n{_tail(log)}"
            )
        time.sleep(0.02)


def _tail(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text[-_LOG_TAIL:] or "(empty)"


ServerFactory = Callable[..., FirstspikeServer]


@contextlib.contextmanager
def _factory() -> Iterator[ServerFactory]:
    started: list[FirstspikeServer] = []

    def make(**options: Any) -> FirstspikeServer:
        server = start_server(**options)
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in reversed(started):
            server.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(serial=0, ideal=False, token=None, backend=None, args=(), startup_timeout_s=120): options of "
        "the firstspike_server fixture's simulated device server",
    )


@pytest.fixture
def firstspike_server_factory() -> Iterator[ServerFactory]:
    """A function ``(serial=0, ideal=False, token=None, backend=None, args=(), startup_timeout_s=120) ->
    FirstspikeServer`` that starts a server; every server it started is stopped at the end of the test."""
    with _factory() as make:
        yield make


@pytest.fixture
def firstspike_server(request: pytest.FixtureRequest, firstspike_server_factory: ServerFactory) -> FirstspikeServer:
    """A simulated device server for this test (options from ``@pytest.mark.firstspike_server(...)``)."""
    marker = request.node.get_closest_marker(_MARKER)
    options = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        raise pytest.UsageError(f"@pytest.mark.{_MARKER} takes keyword arguments only (serial=, ideal=, token=, ...)")
    return firstspike_server_factory(**options)


@pytest.fixture(scope="session")
def firstspike_server_options() -> dict[str, Any]:
    """The options of :func:`firstspike_server_session` (override this fixture in a conftest to change them)."""
    return {}


@pytest.fixture(scope="session")
def firstspike_server_session(firstspike_server_options: dict[str, Any]) -> Iterator[FirstspikeServer]:
    """One simulated device server shared by the whole test session (started on first use)."""
    with _factory() as make:
        yield make(**firstspike_server_options)
