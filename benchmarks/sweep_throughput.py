"""A seed study through the sweep (one Ray task per run) vs the same runs one after another in one process.

Prints one JSON object per line::

    {"benchmark": "sweep_throughput", "case": "sequential", "wall_s": ..., ...}
    {"benchmark": "sweep_throughput", "case": "sweep", "wall_s": ..., "ray_cpus": 2, ...}
    {"benchmark": "sweep_throughput", "case": "ratio", "speedup": ..., "identical": true, ...}

Both cases train the same short yin-yang runs (``--runs`` seeds, ``--epochs`` epochs, full data sets, 1 torch
thread per run) in a fresh process each, so both pay their imports; ``wall_s`` is that process's wall time (the
sweep's includes starting and stopping its local Ray with ``--cpus`` CPUs), ``work_s`` the time inside it after
the imports (the sweep's still includes Ray's start). ``speedup`` = sequential ``wall_s`` / sweep ``wall_s`` (the goal:
close to ``--cpus``); ``identical``: every seed's test accuracy is the same in both (runs are deterministic per
seed). ``load_avg`` is the 1-minute load average before and after each case: on a machine busy with other jobs
the ratio says little. ``--rounds N`` repeats both cases, alternating their order.

    python benchmarks/sweep_throughput.py [--runs 8] [--epochs 5] [--cpus 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _child(case: str, runs: int, epochs: int, cpus: int, out: Path) -> dict[str, Any]:
    """Run inside the case's own process; returns the accuracies per seed and the time after the imports."""
    from firstspike.runtime.sweep import sweep
    from firstspike.runtime.training.tasks import train_task

    t0 = time.perf_counter()
    if case == "sequential":
        accs = {s: train_task("yinyang", seed=s, epochs=epochs, threads=1, progress=False, log=lambda _: None,
                              out_dir=out / f"seed={s}")["test_accuracy"] for s in range(runs)}
    else:
        res = sweep("yinyang", seeds=range(runs), epochs=epochs, out=out, num_cpus=cpus, plot=False)
        failed = [r.error for r in res.runs if r.status != "ok"]
        if failed:
            raise RuntimeError(f"sweep runs failed: {failed}")
        accs = {r.seed: r.test_accuracy for r in res.runs}
    return {"work_s": time.perf_counter() - t0, "accuracies": accs}


def _case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"sweep-bench-{case}-") as tmp:
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--child", case, "--runs", str(args.runs), "--epochs", str(args.epochs),
             "--cpus", str(args.cpus), "--out", tmp], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{case} failed: {proc.stderr.strip()[-2000:]}")
        child = json.loads(proc.stdout.strip().splitlines()[-1])
    row: dict[str, Any] = {"benchmark": "sweep_throughput", "case": case, "runs": args.runs, "epochs": args.epochs,
                           "wall_s": round(wall, 2), "work_s": round(child["work_s"], 2),
                           "runs_per_min": round(60 * args.runs / wall, 2),
                           "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    if case == "sweep":
        row["ray_cpus"] = args.cpus
    row["accuracies"] = child["accuracies"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=8, help="runs (seeds 0..N-1)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per run")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the sweep's local Ray")
    ap.add_argument("--rounds", type=int, default=1, help="repeat both cases, alternating their order")
    ap.add_argument("--child", choices=("sequential", "sweep"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.runs, args.epochs, args.cpus, args.out)))
        return
    for r in range(args.rounds):
        rows = {}
        for case in (("sequential", "sweep") if r % 2 == 0 else ("sweep", "sequential")):
            rows[case] = _case(case, args)
            print(json.dumps({k: v for k, v in rows[case].items() if k != "accuracies"}), flush=True)
        seq, swp = rows["sequential"], rows["sweep"]
        print(json.dumps({
            "benchmark": "sweep_throughput", "case": "ratio", "round": r, "runs": args.runs, "epochs": args.epochs,
            "speedup": round(seq["wall_s"] / swp["wall_s"], 3),
            "speedup_after_imports": round(seq["work_s"] / swp["work_s"], 3),
            "identical": {int(k): v for k, v in seq["accuracies"].items()} == {
                int(k): v for k, v in swp["accuracies"].items()},
            "load_avg": [*seq["load_avg"], *swp["load_avg"]],
        }), flush=True)


if __name__ == "__main__":
    main()
