"""A ``firstspike serve`` subprocess on a free loopback port, for the in-the-loop / deploy tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120.0


@contextlib.contextmanager
def serve(backend: str, *extra: str) -> Iterator[str]:
    """Start ``firstspike serve --backend BACKEND --port 0 [EXTRA...]`` on 127.0.0.1; yield its ``grpc://`` URI; stop
    it."""
    env = dict(os.environ)
    env.pop("FIRSTSPIKE_DEVICE", None)
    env.pop("FIRSTSPIKE_TOKEN", None)
    log = tempfile.TemporaryFile()  # noqa: SIM115  (closed below; a full stderr pipe would block the server)
    proc = subprocess.Popen(
        [sys.executable, "-m", "firstspike.runtime.cli", "serve", "--backend", backend, "--host", "127.0.0.1",
         "--port", "0",
         "--log-level", "warning", *extra],
        stdout=subprocess.PIPE, stderr=log, env=env, cwd=str(REPO), text=True,
    )
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(STARTUP_TIMEOUT_S)
        if not line or not line[0].strip():
            log.seek(0)
            raise RuntimeError(f"server did not start: {log.read()[-2000:]!r}")
        port = int(json.loads(line[0])["port"])
        yield f"grpc://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
        log.close()
