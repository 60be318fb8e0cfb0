"""gRPC overhead: throughput and latency of runs through a device server vs the same backend in-process.

    python benchmarks/grpc_overhead.py [--backend sim://] [--cases batch1,batch100,batch1000] [--seconds 3]

For each case a fresh server subprocess (``python -m firstspike.runtime.server --backend URI --port 0``) and a fresh
measuring subprocess (so peak RSS is per case) are started. The measuring process alternates blocks of runs
in-process and through gRPC (loopback) on the same network and inputs (``--rounds`` short blocks per side, each
after one untimed run: this VM's speed drifts by tens of percent over seconds, and short blocks spread that over
both sides), and prints one JSON line:
``samples_per_s`` (gRPC), ``inprocess_samples_per_s``, ``ratio_vs_inprocess``, ``p50_ms``/``p99_ms`` per
gRPC call, ``inprocess_p50_ms``; the same for the in-process device called from a worker thread as the server calls it
(``inprocess_worker_thread_*``, ``ratio_vs_inprocess_worker_thread``: the sim's numba kernels behave very
differently from the main thread), ``overhead_p50_ms`` (gRPC median minus in-process median, same run) and
``overhead_vs_worker_thread_p50_ms``, ``peak_rss_mb`` (measuring process: client + in-process device) and
``server_peak_rss_mb``, ``malloc`` (the measuring process keeps freed memory for reuse, as the trainers and
the server do: ``firstspike.runtime.allocator.tune_malloc``; ``--malloc default`` measures glibc's defaults, under which
every 1 MB result page-faults anew on both sides). The breakdown of a gRPC call: ``floor_p50_ms`` (a trivial
RPC, GetInfo, on the same server: what gRPC itself costs on this machine), ``device_p50_ms`` (the server's own
timing of the backend call, ``RunResponse.device_us``) and ``stack_p50_ms`` (median per call of client-measured
time minus device time: gRPC, both sides' validation and encoding, locks), with the spikes as columns as the client
asks; ``stack_records_p50_ms`` the same with the spikes as 10-byte records (alternating calls), and
``response_bytes`` / ``response_records_bytes`` the size of one response either way. The network is the yin-yang setup
4+1 -> 120 -> 3 compiled for the chip (or the conformance suite's 4+1 -> 16 -> 3 network if the compiler is missing).
Both sides compete for the same cores: on a 2-core machine with other work running, numbers are depressed and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CASES = {"batch1": 1, "batch100": 100, "batch1000": 1000, "batch10000": 10000}


def _network(seed: int = 0):
    """(ChipConfig, make_inputs(batch, rng) -> InputSpikes, RunOptions, description)."""
    from firstspike.hal.backend import RunOptions
    from firstspike.hal.events import InputSpikes

    try:
        from firstspike.compiler import Layer, Network, compile
    except ImportError:
        compile = None
    rng = np.random.default_rng(seed)
    if compile is not None:
        net = Network(
            n_inputs=4,
            layers=(
                Layer(rng.normal(1.5, 0.8, (5, 120)), bias_time=0.9),
                Layer(rng.normal(0.5, 0.8, (121, 3)), bias_time=0.9),
            ),
        )
        art = compile(net)
        channels = list(art.input_channels)
        bias = [b for b in art.bias_inputs if b is not None]
        channels += [c for c, _ in bias]
        tau = float(art.tau_s_ticks)

        def make(batch: int, r: np.random.Generator) -> InputSpikes:
            xy = r.random((batch, 2))
            v = np.concatenate([xy, 1 - xy], axis=1)
            t = 0.15 + v * 1.85
            t = np.concatenate([t, np.tile([bt for _, bt in bias], (batch, 1))], axis=1)
            return InputSpikes.from_times(t * tau, channels=np.array(channels))

        return art.config, make, RunOptions(duration_ticks=int(6 * tau), seed=1), "yinyang 4+1-120-3 (compiled)"
    from firstspike.runtime.conformance.networks import yinyang_like_case

    case = yinyang_like_case(seed=seed, batch=1)

    def make_case(batch: int, r: np.random.Generator) -> InputSpikes:
        return yinyang_like_case(seed=int(r.integers(1 << 30)), batch=batch).inputs

    return case.config, make_case, case.options, "yinyang-like 4+1-16-3 (conformance network)"


def _peak_rss_mb(pid: int | None = None) -> float:
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _block(dev, inputs, options, n: int, settle: bool = False) -> tuple[float, list[float]]:
    """(seconds for ``n`` back-to-back runs, their latencies). ``settle``: one untimed run first, so the block
    measures the steady state of back-to-back calls, not the switch from the other side's block (caches,
    thread pools and allocator state of the other path)."""
    if settle:
        dev.run(inputs[-1], options)
    lat = []
    t0 = time.perf_counter()
    for k in range(n):
        s = time.perf_counter()
        dev.run(inputs[k % len(inputs)], options)
        lat.append(time.perf_counter() - s)
    return time.perf_counter() - t0, lat


def _stub_breakdown(remote, inputs, options, n: int) -> dict[str, list[float]]:
    """Latencies in seconds of ``n`` raw stub calls each: trivial GetInfo (``floor``), and Run asking for the
    spikes as columns (what ``remote.run`` asks) and as records, alternating: ``total``/``device`` (the
    server's ``device_us``) per layout, plus the serialised response sizes in bytes.

    Uses the backend's own channel and lease, so the calls take exactly the path ``remote.run`` takes minus the
    client-side Python around the stub."""
    from firstspike.proto.firstspike.v1 import device_pb2 as pb
    from firstspike.runtime import wire

    out: dict[str, list[float]] = {"floor": []}
    for _ in range(n):
        s = time.perf_counter()
        remote._stub.GetInfo(pb.GetInfoRequest(), timeout=60)
        out["floor"].append(time.perf_counter() - s)
    opts = wire.options_to_pb(options)
    layouts = {"columns": wire.COLUMNS, "records": wire.RECORDS}
    reqs = {
        name: [
            pb.RunRequest(
                lease_id=remote.lease_id,
                config_id=remote.config_id,
                inputs=wire.pack_events(x.events, x.batch_size),
                options=opts,
                result_layout=layout,
            )
            for x in inputs
        ]
        for name, layout in layouts.items()
    }
    for k in range(n):
        for name in layouts:
            s = time.perf_counter()
            resp = remote._stub.Run(reqs[name][k % len(inputs)], timeout=600)
            out.setdefault(f"total_{name}", []).append(time.perf_counter() - s)
            out.setdefault(f"device_{name}", []).append(resp.device_us * 1e-6)
            if k == 0:
                out[f"bytes_{name}"] = [float(resp.ByteSize())]
    return out


def worker(args: argparse.Namespace) -> int:
    """Measure one case against the server at ``args.target``; print one JSON line."""
    for mod in args.imports:
        __import__(mod)
    if args.malloc == "tuned":
        # As the trainers and `firstspike serve` do; applies to both sides measured here (in-process and client).
        from firstspike.runtime.allocator import tune_malloc

        tune_malloc()
    from firstspike.hal.registry import open_backend
    from firstspike.runtime.remote import GrpcBackend

    batch = CASES[args.case]
    cfg, make, options, desc = _network()
    rng = np.random.default_rng(123)
    inputs = [make(batch, rng) for _ in range(4)]
    local = open_backend(args.backend)
    remote = GrpcBackend(args.target, run_timeout_s=600)
    local.configure(cfg)
    remote.configure(cfg)
    for dev in (local, remote):  # warm up (first-call costs: caches, connections)
        _block(dev, inputs, options, 2)
    # Both results must be identical, or the comparison is meaningless.
    same = all(local.run(x, options).spikes == remote.run(x, options).spikes for x in inputs[:2])
    # Size blocks by the slower side, so a fast backend (null://) does not make the gRPC side run for minutes.
    t_one = max(_block(local, inputs, options, 4)[0], _block(remote, inputs, options, 4)[0]) / 4
    per_block = max(1, int(args.seconds / args.rounds / max(t_one, 1e-6)))
    totals = {"local": 0.0, "thread": 0.0, "remote": 0.0}
    lats: dict[str, list[float]] = {k: [] for k in totals}

    def in_thread() -> tuple[float, list[float]]:
        box: list = []
        th = threading.Thread(target=lambda: box.append(_block(local, inputs, options, per_block, settle=True)))
        th.start()
        th.join()
        return box[0]

    for _ in range(args.rounds):
        for key, fn in (
            ("local", lambda: _block(local, inputs, options, per_block, settle=True)),
            ("thread", in_thread),
            ("remote", lambda: _block(remote, inputs, options, per_block, settle=True)),
        ):
            t, lat = fn()
            totals[key] += t
            lats[key] += lat
    n_calls = per_block * args.rounds
    rate = {k: n_calls * batch / v for k, v in totals.items()}
    raw = _stub_breakdown(remote, inputs, options, per_block)
    lats["floor"] = raw["floor"]
    lats["device"] = raw["device_columns"]
    for name, key in (("columns", "stack"), ("records", "stack_records")):
        lats[key] = [t - d for t, d in zip(raw[f"total_{name}"], raw[f"device_{name}"], strict=True)]

    def pct(key: str, q: float) -> float:
        return round(float(np.percentile(lats[key], q)) * 1e3, 3)

    out = {
        "benchmark": "grpc_overhead",
        "case": args.case,
        "batch": batch,
        "calls": n_calls,
        "samples_per_s": round(rate["remote"], 1),
        "inprocess_samples_per_s": round(rate["local"], 1),
        "ratio_vs_inprocess": round(rate["remote"] / rate["local"], 3),
        "p50_ms": pct("remote", 50),
        "p99_ms": pct("remote", 99),
        "inprocess_p50_ms": pct("local", 50),
        "inprocess_p99_ms": pct("local", 99),
        # The server calls the backend from a worker thread; the in-process device called the same way:
        "inprocess_worker_thread_samples_per_s": round(rate["thread"], 1),
        "ratio_vs_inprocess_worker_thread": round(rate["remote"] / rate["thread"], 3),
        "inprocess_worker_thread_p50_ms": pct("thread", 50),
        # what the network path adds to a median call (the device's own time is in both)
        "overhead_p50_ms": round(pct("remote", 50) - pct("local", 50), 3),
        "overhead_vs_worker_thread_p50_ms": round(pct("remote", 50) - pct("thread", 50), 3),
        # breakdown of a gRPC call (raw stub calls on the same channel and lease)
        "floor_p50_ms": pct("floor", 50),
        "device_p50_ms": pct("device", 50),
        "stack_p50_ms": pct("stack", 50),
        # the same raw calls with the spikes as 10-byte records instead of columns (alternating with them)
        "stack_records_p50_ms": pct("stack_records", 50),
        "response_bytes": int(raw["bytes_columns"][0]),
        "response_records_bytes": int(raw["bytes_records"][0]),
        "identical_results": bool(same),
        "malloc": args.malloc,
        "backend": args.backend,
        "network": desc,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "cpus": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2),  # other work on the machine depresses every number
    }
    remote.close()
    local.close()
    print(json.dumps(out), flush=True)
    return 0


@contextlib.contextmanager
def served(backend: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen, int]]:
    """``python -m firstspike.runtime.server --backend BACKEND --port 0`` as a subprocess on a free loopback port:
    yields (process, port); terminated (killed after 30 s) on exit."""
    server = subprocess.Popen(
        [sys.executable, "-m", "firstspike.runtime.server", "--backend", backend, "--port", "0",
         "--log-level", "warning", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=str(REPO),
    )
    try:
        line: list[str] = []
        t = threading.Thread(target=lambda: line.append(server.stdout.readline()), daemon=True)
        t.start()
        t.join(120)
        if not line or not line[0].strip():
            raise RuntimeError("the server did not start")
        yield server, int(json.loads(line[0])["port"])
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_case(args: argparse.Namespace, case: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *args.pythonpath, env.get("PYTHONPATH", "")])
    imports = [a for m in args.imports for a in ("--import", m)]
    with served(args.backend, *imports, env=env) as (server, port):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            case,
            "--target",
            f"127.0.0.1:{port}",
            "--backend",
            args.backend,
            "--seconds",
            str(args.seconds),
            "--rounds",
            str(args.rounds),
            "--malloc",
            args.malloc,
            *imports,
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO), check=False)
        if res.returncode != 0:
            raise RuntimeError(f"case {case} failed:\n{res.stderr[-3000:]}")
        out = json.loads(res.stdout.strip().splitlines()[-1])
        out["server_peak_rss_mb"] = round(_peak_rss_mb(server.pid), 1)
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="sim://", help="device URI served and compared in-process (default sim://)")
    p.add_argument("--cases", default="batch1,batch100,batch1000", help=f"comma-separated, of {list(CASES)}")
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per side and case (default 3)")
    p.add_argument("--rounds", type=int, default=12, help="alternating in-process/gRPC blocks (default 12)")
    p.add_argument(
        "--malloc",
        choices=("tuned", "default"),
        default="tuned",
        help="glibc malloc of the measuring process: tuned as in the trainers and the server (default), or glibc's",
    )
    p.add_argument("--import", dest="imports", action="append", default=[], help="module to import (test backends)")
    p.add_argument("--pythonpath", action="append", default=[], help="extra PYTHONPATH entry for subprocesses")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--target", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.case = args.worker
        return worker(args)
    for case in args.cases.split(","):
        if case not in CASES:
            p.error(f"unknown case {case!r}; choose from {list(CASES)}")
        print(json.dumps(run_case(args, case)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
