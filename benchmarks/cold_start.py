"""Cold start of ``firstspike deploy`` on ``sim://``: the first result with an empty numba cache, and how long the
command goes without a word on stderr meanwhile.

Each case runs the command in a subprocess with ``NUMBA_CACHE_DIR`` a fresh temporary directory (cold) and then
again with the cache that run filled (warm). stderr is read as it arrives and every chunk is timestamped:
``longest_silence_s`` is the longest gap between the start, the chunks and the exit. ``--tty`` gives the command a
pseudo-terminal for stderr (what a user at a terminal sees: a live bar), otherwise a pipe (a CI log: lines).
Prints one JSON object per case:

    {"benchmark": "cold_start", "case": "deploy_yinyang", "cold_wall_s": ..., "longest_silence_s": ...,
     "warm_wall_s": ..., "warm_longest_silence_s": ..., "stderr_mode": "pipe"|"tty", ...}

The model: ``--model PATH`` (a yin-yang ``model.pt``), else a random yin-yang network compiled to a ``.fsn``
(``--dataset yinyang``; the cold start does not depend on the weights).

    python benchmarks/cold_start.py [--model runs/demo/model.pt] [--tty] [--size 1000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pty
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _random_yinyang_fsn(path: Path) -> None:
    import numpy as np

    from firstspike.compiler import Layer, Network, compile

    rng = np.random.default_rng(0)
    net = Network(4, (Layer(rng.normal(1.5, 0.8, (5, 120)), bias_time=0.9),
                      Layer(rng.normal(0.5, 0.8, (121, 3)), bias_time=0.9)))
    compile(net).save(path)


def timed_run(cmd: list[str], env: dict[str, str], tty: bool) -> dict:
    """Run ``cmd``; returns wall seconds, the longest stretch without stderr output, the exit code and stderr."""
    t0 = time.perf_counter()
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        fd = master
    else:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
    stamps = [t0]
    err = bytearray()
    while True:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the pty's other side closed
                chunk = b""
            if not chunk:
                break
            stamps.append(time.perf_counter())
            err += chunk
    rc = proc.wait()
    end = time.perf_counter()
    if tty:
        os.close(master)
    stamps.append(end)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return {"wall_s": round(end - t0, 2), "longest_silence_s": round(max(gaps), 2), "rc": rc,
            "first_output_s": round(stamps[1] - t0, 2) if len(stamps) > 2 else None,
            "stderr": err.decode(errors="replace")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a yin-yang model.pt (default: a random yin-yang network)")
    ap.add_argument("--tty", action="store_true", help="stderr on a pseudo-terminal instead of a pipe")
    ap.add_argument("--size", type=int, default=None, help="samples to deploy (default: the whole test split)")
    ap.add_argument("--show-stderr", action="store_true", help="print the cold run's stderr to this stderr")
    args = ap.parse_args(argv)
    exe = str(Path(sys.executable).with_name("firstspike"))
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        model = args.model
        if model is None:
            model = str(Path(tmp) / "yinyang.fsn")
            _random_yinyang_fsn(Path(model))
        cmd = [exe, "deploy", model, "--device", "sim://", "--dataset", "yinyang"]
        if args.size:
            cmd += ["--size", str(args.size)]
        cache = Path(tmp) / "numba-cache"
        cache.mkdir()
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
        cold = timed_run(cmd, env, args.tty)
        if args.show_stderr:
            print(cold["stderr"], file=sys.stderr)
        warm = timed_run(cmd, env, args.tty)
    out = {
        "benchmark": "cold_start",
        "case": "deploy_yinyang",
        "stderr_mode": "tty" if args.tty else "pipe",
        "cold_wall_s": cold["wall_s"],
        "longest_silence_s": cold["longest_silence_s"],
        "cold_first_output_s": cold["first_output_s"],
        "warm_wall_s": warm["wall_s"],
        "warm_longest_silence_s": warm["longest_silence_s"],
        "cold_rc": cold["rc"],
        "warm_rc": warm["rc"],
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out), flush=True)
    return 0 if cold["rc"] == 0 and warm["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
