"""Throughput of the simulated chip (``sim://``), in-process, batch 1000.

Cases: ``yinyang`` / ``yinyang_noisy`` (4+1 -> 120+1 -> 3) and ``mnist16`` / ``mnist16_noisy`` (256 -> 246 -> 10,
merged columns), on the ideal chip (``sim://?ideal=1``) and on the realistic one (mismatch and noise on). Random
networks with the reference initialisation, yin-yang-like inputs and MNIST-like inputs (35 % of the pixels
spike in 0.15..2 tau_s), duration 6000 ticks, record="first". Each case runs in its own subprocess so
``peak_rss_mb`` is per case; ``samples_per_s`` is the median over repeats of ``Backend.run`` (input noise,
simulation and result assembly included; the JIT cache is warmed first). ``samples_per_cpu_s`` divides by the
CPU time of all threads instead (comparable across loads: on an otherwise idle machine wall throughput is up to
``threads`` times it); ``load_avg_1min`` tells how busy the machine was. ``batch1_yinyang`` measures the fixed
per-call cost instead: one yin-yang sample per ``Backend.run`` on the realistic chip, ``p50_ms`` over 500 calls.

``yinyang_delays`` / ``yinyang_delays_noisy``: the yin-yang case's network and inputs with an axonal delay on every
source's routes (uniform 0..2 tau_s, the route delay lines of device spec 1.2): what delays cost.

``cold_jit`` (not run by default: about a minute) is the first use of the engine with an empty numba cache
(``NUMBA_CACHE_DIR`` a fresh temporary directory): import, the first one-sample yin-yang run on the realistic chip
(compiles the serial kernel, the noise kernels and the helpers) and the first 100-sample MNIST16 run (the parallel
kernel), wall and CPU seconds of each.

``--malloc default`` (the default) measures glibc's defaults, what a script that opens ``sim://`` gets: every
large temporary of a run (result buffers, the events' order check) page-faults anew. ``--malloc tuned`` keeps
freed memory in glibc's heaps, as ``firstspike train``, ``deploy``, ``eval`` and ``serve`` do
(:func:`firstspike.runtime.allocator.tune_malloc`). Each line names it.

    python benchmarks/sim_throughput.py [--batch 1000] [--repeats 5] [--case NAME] [--malloc default|tuned]
    python benchmarks/sim_throughput.py --case cold_jit
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

CASES = ("yinyang", "yinyang_noisy", "mnist16", "mnist16_noisy", "batch1_yinyang", "yinyang_delays",
         "yinyang_delays_noisy")
#: the delay cases' axonal delays: one code per source (all its routes), uniform in 0..DELAY_CODES (x 8 ticks),
#: i.e. 0..2 tau_s at tau_s = 752 ticks
DELAY_CODES = 188
#: cases run only when asked for by ``--case``
EXTRA_CASES = ("cold_jit",)
#: calls of the batch-1 case (one yin-yang sample per ``Backend.run``, realistic chip)
BATCH1_CALLS = 500


def _run_batch1(name: str) -> dict:
    """The fixed cost of one ``Backend.run`` call: a yin-yang network, one sample per call (realistic chip)."""
    import numpy as np

    from firstspike.hal.backend import RunOptions
    from firstspike.hal.events import InputSpikes
    from firstspike.sim_device.backend import SimBackend
    from firstspike.sim_device.examples import yinyang_inputs, yinyang_network

    rng = np.random.default_rng(1234)
    dev = SimBackend(serial=7)
    net = yinyang_network(rng)
    t = yinyang_inputs(rng, BATCH1_CALLS)
    times = np.concatenate([t, t[:, 4:5]], axis=1) * 752
    channels = np.r_[net.input_channels, net.bias_channels[0], net.bias_channels[1]]
    samples = [InputSpikes.from_times(times[b : b + 1], channels) for b in range(BATCH1_CALLS)]
    dev.configure(net.config)
    opts = RunOptions(duration_ticks=6000, record="first", seed=3)
    for s in samples[:20]:  # warm-up: JIT cache, per-duration tables
        dev.run(s, opts)
    walls = []
    c0 = time.process_time()
    for s in samples:
        t0 = time.perf_counter()
        dev.run(s, opts)
        walls.append(time.perf_counter() - t0)
    cpu = time.process_time() - c0
    return {
        "benchmark": "sim_throughput",
        "case": name,
        "batch": 1,
        "calls": BATCH1_CALLS,
        "p50_ms": round(statistics.median(walls) * 1000, 4),
        "p90_ms": round(float(np.percentile(walls, 90)) * 1000, 4),
        "cpu_ms_per_call": round(cpu / BATCH1_CALLS * 1000, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": _threads(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def _run_cold_jit(name: str) -> dict:
    """First use of the engine in a process whose numba cache is empty (the parent sets ``NUMBA_CACHE_DIR``)."""
    t0, c0 = time.perf_counter(), time.process_time()
    import numpy as np

    from firstspike.hal.backend import RunOptions
    from firstspike.hal.events import InputSpikes
    from firstspike.sim_device.backend import SimBackend
    from firstspike.sim_device.examples import mnist16_network, mnist_like_inputs, yinyang_inputs, yinyang_network

    out: dict = {"benchmark": "sim_throughput", "case": name, "import_s": round(time.perf_counter() - t0, 2)}
    rng = np.random.default_rng(1)
    yy = yinyang_network(rng)
    t = yinyang_inputs(rng, 1)
    channels = np.r_[yy.input_channels, yy.bias_channels[0], yy.bias_channels[1]]
    one = InputSpikes.from_times(np.concatenate([t, t[:, 4:5]], axis=1) * 752, channels)
    mn = mnist16_network(rng)
    hundred = InputSpikes.from_times(mnist_like_inputs(rng, 100) * 752, mn.input_channels)
    for key, net, inputs in (("first_batch1", yy, one), ("first_batch100", mn, hundred)):
        dev = SimBackend(serial=7)
        dev.configure(net.config)
        w, c = time.perf_counter(), time.process_time()
        dev.run(inputs, RunOptions(duration_ticks=6000))
        out[f"{key}_s"] = round(time.perf_counter() - w, 2)
        out[f"{key}_cpu_s"] = round(time.process_time() - c, 2)
    out["total_s"] = round(time.perf_counter() - t0, 2)
    out["total_cpu_s"] = round(time.process_time() - c0, 2)
    out["numba_cache_dir"] = os.environ.get("NUMBA_CACHE_DIR", "")
    out["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return out


def _run_case(name: str, batch: int, repeats: int) -> dict:
    import numpy as np

    from firstspike.hal.backend import RunOptions
    from firstspike.hal.events import InputSpikes
    from firstspike.sim_device.backend import SimBackend
    from firstspike.sim_device.examples import mnist16_network, mnist_like_inputs, yinyang_inputs, yinyang_network

    rng = np.random.default_rng(1234)
    noisy = name.endswith("_noisy")
    delays = "_delays" in name
    dev = SimBackend(serial=7, mismatch=noisy, noise=noisy)
    tau = 752
    if name.startswith("yinyang"):
        net = yinyang_network(rng)
        t = yinyang_inputs(rng, batch)
        times = np.concatenate([t, t[:, 4:5]], axis=1) * tau  # the bias spike enters both layers
        channels = np.r_[net.input_channels, net.bias_channels[0], net.bias_channels[1]]
    else:
        net = mnist16_network(rng)
        times = mnist_like_inputs(rng, batch) * tau
        channels = net.input_channels
    if delays:  # a generator of its own: the network and inputs are those of the case without delays
        routes = net.config.routing.routes
        key = routes["kind"].astype(np.int64) * 65536 + routes["source"].astype(np.int64)
        sources, which = np.unique(key, return_inverse=True)
        per_source = np.random.default_rng(99).integers(0, DELAY_CODES + 1, size=len(sources))
        net.config.routing = net.config.routing.with_delays(per_source[which].astype(np.int64))
    inputs = InputSpikes.from_times(times, channels)
    t0 = time.perf_counter()
    dev.configure(net.config)
    configure_s = time.perf_counter() - t0
    opts = RunOptions(duration_ticks=6000, record="first", seed=3)
    res = dev.run(inputs, opts)  # warm-up: loads (or compiles) the JIT cache
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = dev.run(inputs, opts)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    out_neurons = net.neurons[-1]
    first = res.spikes.first_spike_ticks(out_neurons)
    wall = statistics.median(walls)
    return {
        "benchmark": "sim_throughput",
        "case": name,
        "batch": batch,
        "samples_per_s": round(batch / wall, 1),
        "p50_ms": round(wall * 1000, 2),
        "min_ms": round(min(walls) * 1000, 2),
        "samples_per_cpu_s": round(batch / statistics.median(cpus), 1),
        "configure_ms": round(configure_s * 1000, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "events_per_sample": round(len(res.spikes) / batch, 1),
        "spikes_per_sample": round(res.stats["spikes"] / batch, 1),
        "synaptic_events_per_sample": round(res.stats["synaptic_events"] / batch, 1),
        "output_fired_fraction": round(float((first >= 0).mean()), 3),
        "threads": _threads(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def _threads() -> int:
    try:
        import numba

        return int(numba.get_num_threads())
    except ImportError:
        return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--case", choices=CASES + EXTRA_CASES, action="append", help="run only these cases")
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    ap.add_argument("--malloc", choices=("default", "tuned"), default="default",
                    help="glibc's defaults (as in a user's script) or tuned as the CLI and the server set it")
    args = ap.parse_args(argv)
    if args.inner:
        if args.malloc == "tuned":
            from firstspike.runtime.allocator import tune_malloc

            tune_malloc()
        if args.inner == "cold_jit":
            run = _run_cold_jit(args.inner)
        elif args.inner.startswith("batch1"):
            run = _run_batch1(args.inner)
        else:
            run = _run_case(args.inner, args.batch, args.repeats)
        print(json.dumps({**run, "malloc": args.malloc}))
        return 0
    for name in args.case or CASES:
        cmd = [sys.executable, __file__, "--inner", name, "--batch", str(args.batch), "--repeats", str(args.repeats),
               "--malloc", args.malloc]
        with tempfile.TemporaryDirectory(prefix="numba-cold-") as empty:
            env = {**os.environ, "NUMBA_CACHE_DIR": empty} if name == "cold_jit" else None
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            print(json.dumps({"benchmark": "sim_throughput", "case": name, "error": proc.stderr.strip()[-500:]}))
            continue
        print(proc.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
