"""``firstspike serve --ready-file`` and the ``firstspike_server`` fixtures: readiness, contents, bad paths, errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firstspike.runtime.remote import GrpcBackend, RemoteAuthError
from firstspike.runtime.serve.ready import check_ready_path, probe_target, write_ready_file
from firstspike.runtime.testing.fixtures import FirstspikeServer, FirstspikeServerError, start_server


def _serve(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FIRSTSPIKE_TOKEN", "FIRSTSPIKE_DEVICE")}
    return subprocess.Popen([sys.executable, "-m", "firstspike", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_ready_file_holds_the_startup_line_and_goes_when_the_server_stops(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = _serve("--backend", "null://", "--port", "0", "--ready-file", str(ready), "--grace", "1")
    try:
        line = proc.stdout.readline() if proc.stdout else ""  # printed once the server answered its health check
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:  # written right after the line
            time.sleep(0.02)
        content = ready.read_text(encoding="utf-8")
        assert content.endswith("\n") and content.count("\n") == 1
        info = json.loads(content)
        assert content.strip() == line.strip()
        assert info["event"] == "listening" and info["pid"] == proc.pid and info["tls"] is False
        assert info["uri"] == f"grpc://127.0.0.1:{info['port']}" and info["port"] > 0
        with GrpcBackend(info["uri"].removeprefix("grpc://")) as dev:
            assert dev.health() == "SERVING" and dev.info().model == "null-mock"
        assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]  # no temporary file left behind
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not ready.exists()


@pytest.mark.parametrize("case", ["missing-folder", "a-folder"])
def test_bad_ready_file_path_is_one_line_and_exit_2_before_starting(tmp_path: Path, case: str) -> None:
    path = tmp_path / "no" / "such" / "ready.json" if case == "missing-folder" else tmp_path
    proc = _serve("--backend", "null://", "--port", "0", "--ready-file", str(path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert out == ""  # nothing started, nothing announced
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("firstspike serve: --ready-file"), err
    assert ("does not exist" in lines[0]) if case == "missing-folder" else ("is a folder" in lines[0])


def test_ready_file_is_refused_for_the_serial_device_side(tmp_path: Path) -> None:
    proc = _serve("--backend", "null://", "--serial-tcp", "0", "--ready-file", str(tmp_path / "r.json"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--ready-file is for the gRPC server" in err and len(err.splitlines()) == 1


def test_ready_file_helpers(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    assert check_ready_path(str(target)) is None
    write_ready_file(str(target), '{"a": 1}')
    write_ready_file(str(target), '{"a": 2}\n')  # replaces, one line
    assert target.read_text() == '{"a": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert "does not exist" in (check_ready_path(str(tmp_path / "x" / "r.json")) or "")
    assert probe_target("0.0.0.0", 5) == "127.0.0.1:5" and probe_target("::1", 5) == "[::1]:5"


# ---- the fixtures (the plugin is installed, so this suite has them too) -------------------------------------------


def test_session_server_is_a_live_simulated_chip(firstspike_server_session: FirstspikeServer) -> None:
    srv = firstspike_server_session
    assert str(srv) == srv.uri == f"grpc://127.0.0.1:{srv.port}" and srv.running
    assert srv.backend == "sim://?serial=0"
    with GrpcBackend(srv.address) as dev:
        assert dev.info().model == "firstspike-sim" and dev.info().serial == 0


def test_a_token_server_refuses_a_client_without_it(firstspike_server_factory) -> None:
    srv = firstspike_server_factory(backend="null://", token="tok en&=")
    assert srv.uri == f"grpc://127.0.0.1:{srv.port}?token=tok+en%26%3D"
    from firstspike.runtime import open as open_device

    with open_device(srv.uri) as dev:  # the URI carries the token (quoted)
        assert dev.info().model == "null-mock"
    with pytest.raises(RemoteAuthError), GrpcBackend(srv.address, token="", retries=0) as bare:
        bare.info()
    assert "tok en" not in " ".join(Path(f"/proc/{srv.pid}/cmdline").read_text().split("\0"))  # not in ps


def test_factory_stops_its_servers(firstspike_server_factory) -> None:
    srv = firstspike_server_factory(backend="null://")
    assert srv.stop() == 0 and not srv.running
    with pytest.raises(ConnectionRefusedError):  # nothing listens on its port any more
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_a_server_that_cannot_start_fails_with_its_stderr() -> None:
    with pytest.raises(FirstspikeServerError) as err:
        start_server(backend="nosuchscheme://")
    msg = str(err.value)
    assert "exited with code 2 before it was ready" in msg and "cannot open backend 'nosuchscheme://'" in msg
    with pytest.raises(FirstspikeServerError, match=r"did not answer health checks within 0\.01 s"):
        start_server(backend="null://", startup_timeout_s=0.01)
