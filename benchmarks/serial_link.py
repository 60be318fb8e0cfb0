"""The serial link end to end over a pseudo-terminal: driver (pyserial) <-> pty <-> device side.

The device side wraps its end of the pty with a fault injector (bit errors at the case's rate, both
directions) and serves :class:`firstspike.drivers.faults.EchoBackend`, a cheap deterministic device, so the numbers
measure the protocol stack, not a simulator. Every result is compared with the fault-free reference.

Workload per run (``hitl``): a hardware-in-the-loop style batch of 50 patterns x 256 input channels, ~30 %
silent (about 9 000 input events in, as many spikes back). ``small``: 1 pattern x 5 inputs (latency).

Cases: ``ber0``, ``ber1e-4``, ``ber1e-3`` (hitl, default link options), ``ber1e-3-fixed`` (same, adaptive
fragment size off), ``ber0-small``. Each case runs in its own subprocess (``peak_rss_mb`` per case) for
about ``--seconds`` seconds. Metrics: ``runs_per_s``, ``payload_mb_per_s`` (message bytes both ways),
``efficiency`` (message bytes / all bytes both ends wrote: frames, acks, retransmissions, keep-alives),
``lost`` (runs without a result) and ``wrong`` (results differing from the reference), ``p50_ms``/``p90_ms``
per run, ``cpu_ms_per_run`` (CPU time of the process per run, both link ends and the device included: less
dependent on the machine's load than the wall-clock rates), ``est_uart_3mbaud_runs_per_s`` (wire bytes per run at
300 000 bytes/s: what a 3 Mbaud UART would allow, derived, not measured on a UART), ``packing_ratio`` (raw 10-byte
events / packed events).

    python benchmarks/serial_link.py [--case NAME] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CASES = {
    "ber0": {"ber": 0.0, "adaptive": True, "workload": "hitl"},
    "ber1e-4": {"ber": 1e-4, "adaptive": True, "workload": "hitl"},
    "ber1e-3": {"ber": 1e-3, "adaptive": True, "workload": "hitl"},
    "ber1e-3-fixed": {"ber": 1e-3, "adaptive": False, "workload": "hitl"},
    "ber0-small": {"ber": 0.0, "adaptive": True, "workload": "small"},
}
UART_BYTES_PER_S = 3_000_000 / 10  # 8N1: 10 bit times per byte


def _inputs(rng, workload: str):
    import numpy as np

    from firstspike.hal.events import InputSpikes

    batch, n = (50, 256) if workload == "hitl" else (1, 5)
    t = rng.uniform(0, 3000, (batch, n))
    t[rng.random((batch, n)) < 0.3] = np.inf
    return InputSpikes.from_times(t)


def run_case(name: str, seconds: float) -> dict:
    import numpy as np

    from firstspike.drivers.device_side import serve_pty
    from firstspike.drivers.faults import EchoBackend, FaultSpec, symmetric
    from firstspike.drivers.link import LinkOptions
    from firstspike.drivers.messages import EVENTS_RAW, pack_events
    from firstspike.drivers.serial_backend import SerialBackend
    from firstspike.hal.backend import RunOptions

    case = CASES[name]
    opts = LinkOptions(adaptive=case["adaptive"])
    spec = FaultSpec(ber=case["ber"])
    device = EchoBackend()
    path, stop = serve_pty(device, options=opts, wrap=lambda s: symmetric(s, spec, seed=1))
    drv = SerialBackend.open(path, timeout_s=5.0, options=opts)
    ref = EchoBackend()
    rng = np.random.default_rng(0)
    pool = [_inputs(rng, case["workload"]) for _ in range(8)]
    run_opts = RunOptions(duration_ticks=4000)
    wants = [ref.run(inp, run_opts) for inp in pool]
    raw = sum(len(pack_events(i.events, i.batch_size, EVENTS_RAW)) for i in pool)
    packed = sum(len(pack_events(i.events, i.batch_size)) for i in pool)
    lat: list[float] = []
    lost = wrong = runs = 0
    try:
        drv.ping()
        host0 = (drv.link_stats.bytes_sent, drv.link_stats.payload_bytes_sent, drv.link_stats.payload_bytes_received)
        ds = stop.sides[0].link.stats
        dev0 = ds.bytes_sent
        t_start, c_start = time.perf_counter(), time.process_time()
        while time.perf_counter() - t_start < seconds or runs < 5:
            k = runs % len(pool)
            t0 = time.perf_counter()
            try:
                got = drv.run(pool[k], run_opts)
            except Exception:  # a lost run is counted, not fatal for the benchmark
                lost += 1
                runs += 1
                continue
            lat.append((time.perf_counter() - t0) * 1e3)
            w = wants[k]
            if not (got.spikes == w.spikes and got.dropped == w.dropped):
                wrong += 1
            runs += 1
        elapsed = time.perf_counter() - t_start
        cpu = time.process_time() - c_start
        hs = drv.link_stats
        payload = (hs.payload_bytes_sent - host0[1]) + (hs.payload_bytes_received - host0[2])
        wire = (hs.bytes_sent - host0[0]) + (ds.bytes_sent - dev0)
        lat.sort()
        return {
            "benchmark": "serial_link",
            "case": name,
            "transport": "pty",
            "workload": case["workload"],
            "ber": case["ber"],
            "adaptive_fragment": case["adaptive"],
            "runs": runs,
            "runs_per_s": round(runs / elapsed, 2),
            "payload_mb_per_s": round(payload / elapsed / 1e6, 3),
            "efficiency": round(payload / wire, 4) if wire else None,
            "lost": lost,
            "wrong": wrong,
            "p50_ms": round(lat[len(lat) // 2], 2) if lat else None,
            "p90_ms": round(lat[int(len(lat) * 0.9)], 2) if lat else None,
            "cpu_ms_per_run": round(cpu / runs * 1e3, 3),
            "wire_bytes_per_run": round(wire / runs),
            "est_uart_3mbaud_runs_per_s": round(UART_BYTES_PER_S / (wire / runs), 2),
            "packing_ratio": round(raw / packed, 2),
            "retransmits": hs.retransmits + ds.retransmits,
            "final_fragment_bytes": [hs.fragment, ds.fragment],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        drv.close()
        stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(CASES), help="run one case in this process")
    ap.add_argument("--seconds", type=float, default=8.0, help="measuring time per case")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.seconds)), flush=True)
        return 0
    for name in CASES:
        out = subprocess.run([sys.executable, __file__, "--case", name, "--seconds", str(args.seconds)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(json.dumps({"benchmark": "serial_link", "case": name, "error": out.stderr.strip()[-500:]}))
        else:
            print(out.stdout.strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
