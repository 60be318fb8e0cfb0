"""Two versions of the TTFS CPU kernels in one process, on the same captured inputs, alternating: time and results.

The software-training counterpart of ``scripts/ab_engine.py``. Separate training processes of two versions drift
apart by 10-30 % between minutes on this shared 2-core VM; the kernels of both versions called alternately in one
process on the same inputs see the same conditions. The inputs are captured from real training steps of this tree
(``--steps`` steps of the MNIST16 task with ``--hidden`` hidden neurons, then the calls of the last ``--capture``
steps): every ``causal_prefix_sums`` (forward) and ``implicit_grads`` (backward) call with its arguments. The other
version is another checkout's ``runtime/ttfs/cpu_kernels.py``, copied to a directory per base tree under the
temporary directory (numba caches its kernels there: the first run compiles them); everything else comes from this
tree. Both must give the same arrays, bit for bit (checked before timing).

    python scripts/ab_ttfs_kernels.py --base-tree /work/other-worktree [--threads 1] [--rounds 15]

Prints per pass (forward, backward) the median wall microseconds per training step of each version and the median
and quartiles of the paired ratios new / base.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from ab_common import alternate, paired, work_dir, write_if_changed

Call = tuple[tuple[Any, ...], dict[str, Any]]


def _load_base(tree: Path, into: Path) -> ModuleType:
    """The other tree's ``cpu_kernels`` as a module of its own name in ``into`` (rewritten only if it changed: a
    rewrite would invalidate numba's cache of it)."""
    src = tree / "runtime" / "ttfs" / "cpu_kernels.py"
    if not src.is_file():
        sys.exit(f"ab_ttfs_kernels: {src} is missing; --base-tree must be a firstspike checkout")
    write_if_changed(into / "firstspike_ab_base_cpu_kernels.py", src.read_text())
    sys.path.insert(0, str(into))
    return importlib.import_module("firstspike_ab_base_cpu_kernels")


def _capture(hidden: int, steps: int, capture: int, threads: int) -> tuple[list[Call], list[Call]]:
    """The forward and backward kernel calls of the last ``capture`` of ``steps`` MNIST16 training steps."""
    import torch

    from firstspike.runtime.training.datasets import load_dataset
    from firstspike.runtime.training.loop import add_input_noise, train_step
    from firstspike.runtime.training.perf import configure_threads
    from firstspike.runtime.training.presets import build_network, make_optimizer, with_hidden
    from firstspike.runtime.ttfs import cpu_kernels

    configure_threads(threads)
    cfg = with_hidden("mnist16", hidden)
    data = load_dataset("mnist16", "train", size=5000)
    gen = torch.Generator().manual_seed(0)
    net = build_network(cfg, gen)
    net.train()
    opt, _ = make_optimizer(net, cfg)
    bumper, loss = cfg.bumper(), cfg.loss()
    perm = torch.randperm(len(data.labels), generator=gen)
    calls: dict[str, list[Call]] = {"causal_prefix_sums": [], "implicit_grads": []}
    originals = {name: getattr(cpu_kernels, name) for name in calls}
    recording = [False]

    def recorder(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if recording[0]:
                calls[name].append((tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a
                                          for a in args), dict(kwargs)))
            return originals[name](*args, **kwargs)

        return call

    for name in calls:
        setattr(cpu_kernels, name, recorder(name))
    try:
        for i in range(steps):
            recording[0] = i >= steps - capture
            lo = (i * 50) % (len(perm) - 50)
            idx = perm[lo : lo + 50]
            train_step(net, opt, bumper, add_input_noise(data.times[idx], cfg.input_noise, gen), data.labels[idx],
                       loss)
    finally:
        for name, fn in originals.items():
            setattr(cpu_kernels, name, fn)
    return calls["causal_prefix_sums"], calls["implicit_grads"]


def _run(fn: Callable[..., Any], calls: list[Call], threads: int) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    out = [fn(*args, **{**kwargs, "threads": threads}) for args, kwargs in calls]
    return time.perf_counter() - t0, out


def _wall_time(fns: dict[str, Callable[..., Any]], calls: list[Call], threads: int, key: str) -> float:
    """Wall seconds of every call through version ``key``'s kernel."""
    return _run(fns[key], calls, threads)[0]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b, equal_nan=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-tree", required=True, type=Path, help="the other version's checkout (worktree)")
    ap.add_argument("--hidden", type=int, default=246, help="hidden neurons of the MNIST16 network (default 246)")
    ap.add_argument("--steps", type=int, default=400, help="training steps before and during capture")
    ap.add_argument("--capture", type=int, default=20, help="the last steps whose kernel calls are timed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="where the base kernels are copied and cached (default: one per base tree in the temp dir)")
    args = ap.parse_args()
    if not 0 < args.capture <= args.steps:
        sys.exit("ab_ttfs_kernels: --capture must be between 1 and --steps")

    from firstspike.runtime.allocator import tune_malloc
    from firstspike.runtime.ttfs import cpu_kernels as new

    base = _load_base(args.base_tree, work_dir(args.base_tree, "ab-ttfs", args.work_dir))
    tune_malloc()
    forward, backward = _capture(args.hidden, args.steps, args.capture, args.threads)
    for label, name, calls in (("forward", "causal_prefix_sums", forward), ("backward", "implicit_grads", backward)):
        fns = {"base": getattr(base, name), "new": getattr(new, name)}
        outs = {k: _run(fn, calls, args.threads)[1] for k, fn in fns.items()}  # also compiles or loads both
        if not all(_same(a, b) for a, b in zip(outs["base"], outs["new"], strict=True)):
            sys.exit(f"ab_ttfs_kernels: {label}: the two versions give different results")
        wall = alternate(partial(_wall_time, fns, calls, args.threads), args.rounds)
        per_step = 1e6 / args.capture
        print(f"{label}: base {per_step * statistics.median(wall['base']):.0f} us, new "
              f"{per_step * statistics.median(wall['new']):.0f} us per training step ({len(calls)} calls over "
              f"{args.capture} steps, {args.threads} thread(s)); {paired(wall)}, same results", flush=True)


if __name__ == "__main__":
    main()
