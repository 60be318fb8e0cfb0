"""Where one in-the-loop training step spends its time, in process and through gRPC (both ends).

    python scripts/itl_step_profile.py [--task yinyang|mnist16] [--epochs 10] [--train-size N]

Trains an in-the-loop task (yin-yang by default, as ``benchmarks/itl_throughput.py`` does; ``--train-size``
defaults to 5000, or 10 000 for MNIST16) once on ``sim://`` and once through ``grpc://`` to a server subprocess
started here (on a free loopback port, stopped at the end). Wall-clock timers wrap the functions a step goes
through: in the trainer (``step.*``: the device forward, the backward pass and optimizer step, the weight upload),
in the session and the Backend (``client.*``, among them the re-quantisation, the configuration digest and diff,
and in process the engine run and its weight patch), and in the server (``server.*``: the Run handler, its diff
decoding and application, the device run, input decoding, result encoding). Prints one JSON line per side and
timer: ``{"side", "timer", "calls", "ms_per_call", "total_s"}``, then one line per side with the training rate.
The timers add a few microseconds per call; compare sides of one invocation, not against the benchmarks.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOTALS: dict[str, float] = collections.defaultdict(float)
CALLS: dict[str, int] = collections.defaultdict(int)


def _timed(owner: Any, name: str, key: str) -> None:
    """Replace ``owner.name`` by a wrapper that adds its wall time to ``TOTALS[key]``."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TOTALS[key] += time.perf_counter() - t0
            CALLS[key] += 1

    setattr(owner, name, wrapper)


def _rows(side: str) -> list[dict[str, Any]]:
    return [{"side": side, "timer": k, "calls": CALLS[k], "ms_per_call": round(1e3 * TOTALS[k] / max(1, CALLS[k]), 3),
             "total_s": round(TOTALS[k], 3)} for k in sorted(TOTALS)]


def serve(out: str, argv: list[str]) -> int:
    """The server side: ``firstspike serve`` with timers; writes them to ``out`` at exit."""
    from firstspike.hal.config import ConfigDiff
    from firstspike.runtime import wire
    from firstspike.runtime.commands.serve import main
    from firstspike.runtime.serve import host, servicer

    _timed(servicer.DeviceServicer, "_run_one", "server.run_handler")
    _timed(wire, "unpack_inputs", "server.decode_inputs")
    _timed(wire, "result_to_pb", "server.encode_result")
    _timed(ConfigDiff, "from_bytes", "server.decode_diff")
    _timed(host.DeviceHost, "update_config", "server.apply_diff")
    _timed(host.DeviceHost, "run", "server.host_run")
    init = host.DeviceHost.__init__

    def timed_init(self: host.DeviceHost, backend: Any, **kw: Any) -> None:
        init(self, backend, **kw)
        _timed(type(backend), "run", "server.device_run")
        _timed(type(backend), "sync", "server.device_configure")

    host.DeviceHost.__init__ = timed_init  # type: ignore[method-assign]
    atexit.register(lambda: Path(out).write_text(json.dumps(_rows("server"))))
    return int(main(argv))


def train(device: str, task: str, epochs: int, train_size: int) -> list[dict[str, Any]]:
    """The trainer's side: one training run of ``task`` on ``device`` with timers."""
    from firstspike.compiler.artifact import CompiledNetwork
    from firstspike.hal import backend as hal_backend
    from firstspike.hal.config import ChipConfig
    from firstspike.runtime import remote, session, wire
    from firstspike.runtime.allocator import tune_malloc
    from firstspike.runtime.devices import open as open_device
    from firstspike.runtime.training import forward, loop
    from firstspike.runtime.training.tasks import train_task
    from firstspike.sim_device import backend as sim_backend

    tune_malloc()
    _timed(forward.DeviceForward, "train_forward", "step.device_forward")
    _timed(loop, "train_step", "step.backward_and_optimizer")
    _timed(forward.DeviceForward, "sync", "step.weight_upload")
    _timed(session.Session, "run", "client.session_run")
    _timed(hal_backend.Backend, "sync", "client.backend_sync")
    _timed(remote.GrpcBackend, "_call", "client.grpc_call")
    _timed(wire, "result_from_pb", "client.decode_result")
    _timed(CompiledNetwork, "update_stage_parameters", "client.requantise")
    _timed(ChipConfig, "digest", "client.config_digest")
    _timed(ChipConfig, "diff", "client.config_diff")
    _timed(sim_backend, "run_engine", "client.engine_run")  # in process only
    _timed(sim_backend, "update_weights", "client.engine_weight_patch")  # in process only
    dev = open_device(device)
    _timed(type(dev), "run", "client.backend_run")
    try:
        m = train_task(task, device=dev, epochs=epochs, seed=0, train_size=train_size, eval_size=1000, threads=1,
                       progress=False, log=lambda _: None)
    finally:
        dev.close()
    side = "grpc" if device.startswith("grpc") else "inprocess"
    return [*_rows(side), {"side": side, "train_samples_per_s": round(m["train_samples_per_s"], 1),
                           "loadavg_1min": round(os.getloadavg()[0], 2)}]


def _server(out: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(out), "--backend", "sim://", "--port", "0",
                             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env, cwd=str(ROOT))
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(120)
    if not line or not line[0].strip():
        proc.kill()
        raise RuntimeError("the profiled server did not start")
    return proc, int(json.loads(line[0])["port"])


def _child(args: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, cwd=str(ROOT),
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"training failed:\n{res.stderr[-3000:]}")
    return [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return serve(argv[1], argv[2:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("yinyang", "mnist16"), default="yinyang", help="the in-the-loop task")
    p.add_argument("--epochs", type=int, default=10, help="training epochs per side (default 10)")
    p.add_argument("--train-size", type=int, default=None,
                   help="training samples (default: yin-yang 5000, MNIST16 10000)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.train_size is None:
        args.train_size = 10000 if args.task == "mnist16" else 5000
    if args.worker:
        for row in train(args.worker, args.task, args.epochs, args.train_size):
            print(json.dumps(row), flush=True)
        return 0
    child = ["--task", args.task, "--epochs", str(args.epochs), "--train-size", str(args.train_size)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out: Callable[[dict[str, Any]], None] = lambda row: print(json.dumps(row), flush=True)  # noqa: E731
    for row in _child(["--worker", "sim://", *child], env):
        out(row)
    timers = ROOT / f".itl_step_profile_{os.getpid()}.json"
    proc, port = _server(timers, env)
    try:
        rows = _child(["--worker", f"grpc://127.0.0.1:{port}", *child], env)
    finally:
        proc.terminate()
        proc.wait(30)
    for row in rows:
        out(row)
    if timers.exists():
        for row in json.loads(timers.read_text()):
            out(row)
        timers.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
