"""Telling shell scripts that the server is ready: ``firstspike serve --ready-file PATH``.

:func:`check_ready_path` runs before anything starts (one clear line if the file cannot be written there);
:func:`wait_healthy` asks the started server's own health service over its socket, as a client would;
:func:`write_ready_file` then writes the startup JSON line atomically (a temporary file in the same folder, renamed),
so a script polling for the file never reads half a line; :func:`remove_ready_file` removes it on clean shutdown.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["check_ready_path", "probe_target", "remove_ready_file", "wait_healthy", "write_ready_file"]

_WILDCARDS = {"0.0.0.0", "::", "[::]", ""}


def check_ready_path(path: str) -> str | None:
    """Why ``path`` cannot take the ready file (one line), or None if its folder exists and is writable."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"--ready-file {path!r} is a folder; give a file path such as {os.path.join(path, 'ready.json')!r}"
    if not os.path.isdir(folder):
        return f"--ready-file {path!r}: its folder {folder!r} does not exist; create it first (mkdir -p)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"--ready-file {path!r}: its folder {folder!r} is not writable"
    return None


def probe_target(host: str, port: int) -> str:
    """The address a local client reaches a server bound to ``host``:``port`` at (wildcards: loopback)."""
    if host in _WILDCARDS:
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wait_healthy(target: str, timeout_s: float = 10.0) -> None:
    """Block until the plain-text server at ``target`` answers the standard health check with SERVING.

    Raises TimeoutError (saying what was last seen) after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the server at {target} did not answer its health check within {timeout_s} s "
                                   f"({last})")
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=min(left, 2.0), wait_for_ready=True)
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"
                time.sleep(0.02)
                continue
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            time.sleep(0.02)


def write_ready_file(path: str, line: str) -> None:
    """Write ``line`` (plus a newline) to ``path`` atomically: the file appears whole or not at all."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_ready_file(path: str) -> None:
    """Remove the ready file (missing is fine: a script may have removed it already)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
