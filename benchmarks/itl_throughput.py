"""In-the-loop training throughput: device-in-the-loop training (yin-yang, the ``make demo`` job, or MNIST16) on
the embedded simulator and through a gRPC device server, measured in one run.

    python benchmarks/itl_throughput.py [--task yinyang|mnist16] [--epochs 3] [--train-size N] [--rounds 2]

Cases: ``TASK_inprocess`` (device ``sim://``) and ``TASK_grpc`` (``grpc://`` to a
``python -m firstspike.runtime.server --backend sim://`` subprocess on a free loopback port, started and stopped here).
Every training step is a device run of one minibatch (150 entries for yin-yang, 50 for MNIST16) plus a weight update
(``configure(diff)``), so this measures the per-call costs that ``grpc_overhead.py`` measures at fixed batch sizes,
in the loop a user runs. ``--train-size`` defaults to the task's (yin-yang 5000) or 10 000 (MNIST16). The two cases
alternate ``--rounds`` times (this VM's speed drifts over minutes), each run in its own process (so
``peak_rss_mb`` is its own); one JSON line per case:
``train_samples_per_s`` (training samples per second of training time, median over rounds; the trainer's
figure), ``warm_train_samples_per_s`` (the same over the epochs after the first, median over rounds: a process's
first few hundred steps page-fault while glibc hands out fresh heap pages, which a long run amortises; NaN with
one epoch), ``wall_s`` (median whole run: start-up, training, validation and test on the device),
``peak_rss_mb``, ``rounds_train_samples_per_s`` (every round); the gRPC line adds ``ratio_vs_inprocess`` (of the
medians), ``rounds_ratio_vs_inprocess`` (each round's pair) and ``identical`` (the same
per-epoch history and device spike counts as in-process: the runs are bit-identical by design).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

#: training samples per run when --train-size is not given
DEFAULT_TRAIN_SIZE = {"yinyang": 5000, "mnist16": 10000}


def worker(args: argparse.Namespace) -> int:
    """Train once on ``args.device``; print one JSON line."""
    from firstspike.runtime.allocator import tune_malloc
    from firstspike.runtime.devices import open as open_device
    from firstspike.runtime.training.tasks import train_task

    tune_malloc()  # as `firstspike train` does
    t0 = time.perf_counter()
    dev = open_device(args.device)
    try:
        m = train_task(args.task, device=dev, epochs=args.epochs, seed=0, train_size=args.train_size,
                       eval_size=args.eval_size, threads=1, progress=False, log=lambda _: None)
    finally:
        dev.close()
    total = m["device"]["total"]
    seconds = m["history"]["epoch_seconds"]
    # every epoch sees the same number of samples: the later epochs' rate is their share over their time
    per_epoch = m["train_samples_per_s"] * sum(seconds) / len(seconds)
    print(json.dumps({
        "train_samples_per_s": m["train_samples_per_s"],
        "warm_train_samples_per_s": per_epoch * (len(seconds) - 1) / sum(seconds[1:]) if len(seconds) > 1
        else math.nan,
        "wall_s": time.perf_counter() - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # everything but wall times must match between devices
        "fingerprint": [{k: v for k, v in m["history"].items() if not k.endswith("_seconds")},
                        total["spikes"], total["synaptic_events"], total["config_diffs"]],
    }), flush=True)
    return 0


def _run(args: argparse.Namespace, device: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--device", device, "--task", args.task, "--epochs",
           str(args.epochs), "--train-size", str(args.train_size), "--eval-size", str(args.eval_size)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), check=False)
    if res.returncode != 0:
        raise RuntimeError(f"training on {device} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(DEFAULT_TRAIN_SIZE), default="yinyang",
                   help="the in-the-loop task (default yinyang)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per run (default 3)")
    p.add_argument("--train-size", type=int, default=None,
                   help="training samples (default: yin-yang 5000, the task's; MNIST16 10000)")
    p.add_argument("--eval-size", type=int, default=1000, help="validation and test samples (default 1000)")
    p.add_argument("--rounds", type=int, default=2, help="alternating in-process/gRPC runs (default 2)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--device", default="sim://", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.train_size is None:
        args.train_size = DEFAULT_TRAIN_SIZE[args.task]
    if args.worker:
        return worker(args)
    from grpc_overhead import served

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    local, remote = f"{args.task}_inprocess", f"{args.task}_grpc"
    cases = (local, remote)
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    for _ in range(args.rounds):
        runs[local].append(_run(args, "sim://"))
        with served("sim://", env=env) as (_, port):  # a fresh server per run: no state carried over
            runs[remote].append(_run(args, f"grpc://127.0.0.1:{port}"))
    rate = {c: statistics.median(r["train_samples_per_s"] for r in runs[c]) for c in cases}
    reference = runs[local][0]["fingerprint"]
    for case in cases:
        out = {
            "benchmark": "itl_throughput",
            "case": case,
            "epochs": args.epochs,
            "train_size": args.train_size,
            "rounds": args.rounds,
            "train_samples_per_s": round(rate[case], 1),
            "warm_train_samples_per_s": round(statistics.median(r["warm_train_samples_per_s"] for r in runs[case]), 1),
            "wall_s": round(statistics.median(r["wall_s"] for r in runs[case]), 2),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs[case]), 1),
        }
        out["rounds_train_samples_per_s"] = [round(r["train_samples_per_s"], 1) for r in runs[case]]
        if case == remote:
            out["ratio_vs_inprocess"] = round(rate[case] / rate[local], 3)
            # each round's gRPC run against the in-process run just before it
            out["rounds_ratio_vs_inprocess"] = [
                round(g["train_samples_per_s"] / i["train_samples_per_s"], 3)
                for g, i in zip(runs[case], runs[local], strict=True)
            ]
            out["identical"] = all(r["fingerprint"] == reference for c in cases for r in runs[c])
        out["loadavg_1min"] = round(os.getloadavg()[0], 2)
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
