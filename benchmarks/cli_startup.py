"""Start-up time of the command line: how long ``firstspike --help`` (and other commands that do no work) take.

Each measurement is a fresh Python process running ``firstspike.runtime.cli.main(ARGS)`` (what the console script
does); the wall time includes the interpreter's own start. ``--against DIR`` also times the source tree in DIR (an
older checkout, e.g. ``git archive COMMIT | tar -x -C DIR``), alternating run by run so that the machine's drift hits
both alike, and prints the ratio of the medians. Prints one JSON object per case.

    python benchmarks/cli_startup.py [--repeat N] [--case help] [--against DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "help": ["--help"],
    "version": ["--version"],
    "deploy-help": ["deploy", "--help"],
    "info": ["info"],
}
HEAVY = ("torch", "numba", "grpc", "numpy")
CODE = """
import json, sys, time
t = time.perf_counter()
from firstspike.runtime.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps({"in_process_s": time.perf_counter() - t, "heavy": [m for m in %r if m in sys.modules]}),
      file=sys.stderr)
"""


def once(args: list[str], tree: Path) -> tuple[float, dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CODE % (HEAVY,), *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tree)
    wall = time.perf_counter() - t0
    return wall, json.loads(proc.stderr.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--case", choices=sorted(CASES), action="append", default=None)
    ap.add_argument("--against", type=Path, default=None, help="an older source tree to time alternately")
    opts = ap.parse_args()
    trees = {"current": ROOT} | ({"against": opts.against.resolve()} if opts.against else {})
    for case in opts.case or sorted(CASES):
        walls: dict[str, list[float]] = {k: [] for k in trees}
        inproc: dict[str, list[float]] = {k: [] for k in trees}
        heavy: dict[str, object] = {}
        for _ in range(opts.repeat):
            for name, tree in trees.items():
                wall, info = once(CASES[case], tree)
                walls[name].append(wall)
                inproc[name].append(float(info["in_process_s"]))  # type: ignore[arg-type]
                heavy[name] = info["heavy"]
        row: dict[str, object] = {"benchmark": "cli_startup", "case": case, "args": " ".join(CASES[case]),
                                  "repeat": opts.repeat}
        for name in trees:
            row[f"{name}_wall_s_median"] = round(statistics.median(walls[name]), 4)
            row[f"{name}_in_process_s_median"] = round(statistics.median(inproc[name]), 4)
            row[f"{name}_heavy_modules"] = heavy[name]
        if "against" in trees:
            row["wall_ratio_against_over_current"] = round(
                statistics.median(walls["against"]) / statistics.median(walls["current"]), 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
