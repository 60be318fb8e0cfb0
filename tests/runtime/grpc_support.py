"""Helpers for the gRPC tests: real server subprocesses on free loopback ports, test networks.

Servers run ``python -m firstspike.runtime.server --port 0 --import grpc_fake_backend ...``; the chosen port is read
from the JSON line the server prints on stdout. Logs go to a temporary file (a full stderr pipe would block
the server). Always stop servers in ``finally`` (the fixtures do).
"""

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

import numpy as np

from firstspike.hal import chip
from firstspike.hal.backend import RunOptions
from firstspike.hal.config import ChipConfig
from firstspike.hal.events import InputSpikes

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import grpc_fake_backend  # noqa: E402  (registers fake:// in this process too)

STARTUP_TIMEOUT_S = 60.0


class ServerProcess:
    """A ``python -m firstspike.runtime.server`` subprocess."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 module: str = "firstspike.runtime.server") -> None:
        self.args = args
        self.log = tempfile.NamedTemporaryFile(prefix="fs-grpc-server-", suffix=".log", delete=False)  # noqa: SIM115
        full_env = dict(os.environ)
        full_env.pop("FIRSTSPIKE_DEVICE", None)
        full_env.pop("FIRSTSPIKE_TOKEN", None)
        full_env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), full_env.get("PYTHONPATH", "")])
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=full_env,
            cwd=str(REPO),
            text=True,
        )
        self.announcement: dict | None = None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(STARTUP_TIMEOUT_S)
        if not line or not line[0].strip():
            self.kill()
            raise RuntimeError(f"server {args} did not start: {self.log_text()[-3000:]}")
        self.first_line = line[0].strip()
        try:
            self.announcement = json.loads(self.first_line)
            self.port = int(self.announcement["port"])
        except (json.JSONDecodeError, KeyError, TypeError):
            self.port = 0  # not a gRPC server (e.g. the serial device side prints a URI)

    @classmethod
    def start(
        cls, backend: str = "fake://", *extra: str, port: int = 0, env: dict[str, str] | None = None
    ) -> ServerProcess:
        args = ["--backend", backend, "--port", str(port), "--import", "grpc_fake_backend", "--grace", "5", *extra]
        return cls(args, env)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def uri(self, **params: object) -> str:
        q = "&".join(f"{k}={v}" for k, v in params.items())
        return f"grpc://{self.target}" + (f"?{q}" if q else "")

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def log_records(self) -> list[dict]:
        out = []
        for ln in self.log_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(ln))
        return out

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait (kill after ``timeout``); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.terminate()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


@contextlib.contextmanager
def running_server(backend: str = "fake://", *extra: str, port: int = 0) -> Iterator[ServerProcess]:
    srv = ServerProcess.start(backend, *extra, port=port)
    try:
        yield srv
    finally:
        srv.close()


def fake_config(seed: int, n_neurons: int = 12) -> ChipConfig:
    """A random network for the fake device: ``n_neurons`` enabled neurons (seeded choice), random weights."""
    rng = np.random.default_rng(seed)
    cfg = ChipConfig()
    ids = rng.choice(chip.N_NEURONS, size=n_neurons, replace=False)
    cfg.neurons.values["enabled"][ids] = True
    cfg.neurons.values["threshold"][ids] = rng.integers(200, 900, size=n_neurons)
    cfg.synapses.weights[:] = rng.integers(0, chip.WEIGHT_MAX + 1, size=cfg.synapses.weights.shape, dtype=np.uint8)
    return cfg


def fake_inputs(seed: int, batch: int, n: int = 16, horizon: int = 2000) -> InputSpikes:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, horizon, size=(batch, n))
    t[rng.random((batch, n)) < 0.2] = np.nan
    return InputSpikes.from_times(t, channels=rng.choice(chip.N_INPUT_CHANNELS, size=n, replace=False))


FAKE_OPTIONS = RunOptions(duration_ticks=3000, seed=5)


def sim_case(seed: int = 1, batch: int = 12):  # -> firstspike.runtime.conformance.networks.Case
    """A yin-yang-like network on the simulator (the conformance suite's hand-built reference network)."""
    from firstspike.runtime.conformance.networks import yinyang_like_case

    return yinyang_like_case(seed=seed, batch=batch)


_ = grpc_fake_backend  # imported for its registration side effect
