"""Compile time of the reference networks, and the training fast path (update_weights).

Cases: ``yinyang`` (4+1 -> 120+1 -> 3) and ``mnist16`` (256 -> 246 -> 10, the full chip with merged
columns). Each case runs in its own subprocess so ``peak_rss_mb`` is per case. Prints one JSON object per
line: p50/p90 of compile(), update_weights(), the artifact's to_bytes()/from_bytes() (ms), artifact size.

    python benchmarks/compile_time.py [--case NAME] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without relying on the install's package map
    sys.path.insert(0, str(ROOT))

CASES = ("yinyang", "mnist16")


def _network(case: str):
    import numpy as np

    from firstspike.compiler import Layer, Network

    rng = np.random.default_rng(0)
    if case == "yinyang":
        return Network(4, (Layer(rng.normal(1.5, 0.8, (5, 120)), bias_time=0.9),
                           Layer(rng.normal(0.5, 0.8, (121, 3)), bias_time=0.9)))
    if case == "mnist16":
        return Network(256, (Layer(rng.normal(0.1, 0.4, (256, 246))), Layer(rng.normal(0.6, 0.8, (246, 10)))))
    raise SystemExit(f"unknown case {case!r}; choose from {CASES}")


def _times_ms(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return sorted(out)


def _pct(xs: list[float], p: float) -> float:
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 3)


def run_case(case: str, repeat: int) -> dict:
    import numpy as np

    from firstspike.compiler import CompiledNetwork, compile

    net = _network(case)
    compile(net)  # warm-up (imports, first-call allocations)
    t_compile = _times_ms(lambda: compile(net), repeat)
    c = compile(net)
    rng = np.random.default_rng(1)
    new = [w + rng.normal(0, 0.01, w.shape) for w in net.weights]
    c.update_weights(new)  # warm-up: builds the cached synapse index maps once
    t_update = _times_ms(lambda: c.update_weights(new), repeat * 10)
    data = c.to_bytes()
    t_save = _times_ms(c.to_bytes, repeat)
    t_load = _times_ms(lambda: CompiledNetwork.from_bytes(data), repeat)
    cfg = c.update_weights(new)
    return {
        "benchmark": "compile_time",
        "case": case,
        "p50_ms": _pct(t_compile, 0.5),
        "p90_ms": _pct(t_compile, 0.9),
        "update_weights_p50_ms": _pct(t_update, 0.5),
        "update_weights_p90_ms": _pct(t_update, 0.9),
        "update_diff_entries": c.config.diff(cfg).changed_entries(),
        "to_bytes_p50_ms": _pct(t_save, 0.5),
        "from_bytes_p50_ms": _pct(t_load, 0.5),
        "artifact_bytes": len(data),
        "repeat": repeat,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=CASES, help="run one case in this process (default: all, one subprocess each)")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.repeat)), flush=True)
        return 0
    rc = 0
    for case in CASES:
        proc = subprocess.run([sys.executable, __file__, "--case", case, "--repeat", str(args.repeat)],
                              capture_output=True, text=True, check=False)
        sys.stdout.write(proc.stdout)
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            rc = proc.returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
