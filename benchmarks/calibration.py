"""Time to calibrate all 512 neurons of a chip: in process (``sim://``) and through a device server (``grpc://``).

Each measurement is a fresh client process (and, for grpc, a fresh ``firstspike serve`` process): it opens the
device, warms it up with one tiny run (so the numba kernels are loaded from their on-disk cache, as in any real
session), then times ``calibrate(device)`` with the default rounds and verification. The cases alternate
(sim, grpc, sim, grpc, ...) because this machine's speed drifts; the summary gives the medians and the median of
the paired ratios grpc / sim.

    python benchmarks/calibration.py [--repeat 3] [--serial 0] [--rounds N] [--neurons-only-too]

``--neurons-only-too`` adds a third alternating case, ``sim_neurons_only``: the same calibration without the
per-synapse measurement (what the synapse factors cost, as a paired ratio).

Prints one JSON object per line: ``{"benchmark": "calibration", "case": "sim"|"grpc", "seconds": ...}`` per run,
then ``{"benchmark": "calibration", "case": "summary", ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def worker(uri: str, rounds: int | None, synapses: bool = True) -> dict:
    import time

    import numpy as np

    from firstspike.hal.backend import RunOptions
    from firstspike.hal.events import InputSpikes
    from firstspike.runtime import open as open_device
    from firstspike.runtime.calibration import DEFAULT_ROUNDS, calibrate

    with open_device(uri) as dev:
        dev.run(InputSpikes.from_times(np.full((1, 1), np.nan)), RunOptions(duration_ticks=64))  # warm-up
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        result = calibrate(dev, rounds=rounds or DEFAULT_ROUNDS, synapses=synapses)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    s = result.summary()
    return {"seconds": round(wall, 3), "client_cpu_s": round(cpu, 3), "rounds": result.meta["rounds"],
            "verified": result.meta["verified"], **{k: v for k, v in result.meta["device_calls"].items()},
            "after_tau_mem_max_rel": s["after"]["tau_mem"]["max_rel_error"],
            "after_span_max_lsb": s["after"]["span_error"]["max_abs_error"],
            "synapse_residual_rel": result.synapse_residual_rel,
            "sha256": s["sha256"][:16]}


def _client(uri: str, rounds: int | None, synapses: bool = True) -> dict:
    cmd = [sys.executable, __file__, "--worker", uri] + (["--rounds", str(rounds)] if rounds else []) + (
        [] if synapses else ["--no-synapses"])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=str(ROOT))
    if p.returncode != 0:
        raise SystemExit(f"worker failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


class _Server:
    def __init__(self, backend: str) -> None:
        env = dict(os.environ)
        env.pop("FIRSTSPIKE_DEVICE", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firstspike.runtime.cli", "serve", "--backend", backend, "--host", "127.0.0.1",
             "--port", "0", "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env, cwd=str(ROOT))
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(120)
        if not line or not line[0].strip():
            self.stop()
            raise SystemExit("server did not start")
        self.uri = f"grpc://127.0.0.1:{json.loads(line[0])['port']}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--serial", type=int, default=0)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--neurons-only-too", action="store_true",
                   help="also time the calibration without the per-synapse measurement (case sim_neurons_only)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-synapses", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rounds, synapses=not args.no_synapses)))
        return 0
    backend = f"sim://?serial={args.serial}"
    cases = ("sim", "sim_neurons_only", "grpc") if args.neurons_only_too else ("sim", "grpc")
    times: dict[str, list[float]] = {c: [] for c in cases}
    for i in range(args.repeat):
        for case in cases:
            if case.startswith("sim"):
                row = _client(backend, args.rounds, synapses=case == "sim")
            else:
                server = _Server(backend)
                try:
                    row = _client(server.uri, args.rounds)
                finally:
                    server.stop()
            times[case].append(row["seconds"])
            load = os.getloadavg()[0]
            print(json.dumps({"benchmark": "calibration", "case": case, "repeat": i, "load_avg_1min": round(load, 2),
                              **row}), flush=True)
    ratios = [g / s for s, g in zip(times["sim"], times["grpc"], strict=True)]
    extra = {}
    if args.neurons_only_too:
        paired = [s / n for s, n in zip(times["sim"], times["sim_neurons_only"], strict=True)]
        extra = {"sim_neurons_only_median_s": statistics.median(times["sim_neurons_only"]),
                 "sim_over_neurons_only_median_ratio": round(statistics.median(paired), 3)}
    print(json.dumps({"benchmark": "calibration", "case": "summary", "neurons": 512,
                      "sim_median_s": statistics.median(times["sim"]),
                      "grpc_median_s": statistics.median(times["grpc"]),
                      "grpc_over_sim_median_ratio": round(statistics.median(ratios), 3), **extra}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
