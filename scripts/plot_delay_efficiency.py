"""Parameter efficiency of delays: test accuracy against the number of trained parameters, from runs' metrics.json.

    python scripts/plot_delay_efficiency.py RUNS_DIR [--out docs/delay_efficiency.png] [--metric test_accuracy]

Reads every ``RUNS_DIR/**/metrics.json`` written by ``firstspike train`` (``train_task``), groups the runs by delay
kind (``metrics["delays"]``) and hidden-layer size (``config.layer_sizes[0]``), and prints one markdown table row
per group: runs (seeds), parameters (weights + delays, ``metrics["parameters"]``), mean +- std (sample std, n - 1)
of the metric in percent. The plot shows the mean and std of each group against its parameter count, one line per
delay kind, each point labelled with its hidden size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

KIND_ORDER = ("none", "axonal", "dendritic", "synaptic")


def load_groups(root: Path, metric: str) -> dict[tuple[str, int], dict[str, Any]]:
    """(delay kind, hidden size) -> {"params": total parameters, "values": [metric of each run], "seeds": [...]}."""
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(root.rglob("metrics.json")):
        m = json.loads(path.read_text())
        if "parameters" not in m or metric not in m:
            continue
        key = (str(m.get("delays", "none")), int(m["config"]["layer_sizes"][0]))
        g = groups.setdefault(key, {"params": int(m["parameters"]["total"]), "values": [], "seeds": [],
                                    "epochs": set()})
        if g["params"] != int(m["parameters"]["total"]):
            raise ValueError(f"{path}: {m['parameters']['total']} parameters, other runs of {key} have {g['params']}")
        g["values"].append(float(m[metric]))
        g["seeds"].append(int(m["seed"]))
        g["epochs"].add(int(m["epochs"]))
    return groups


def table(groups: dict[tuple[str, int], dict[str, Any]], metric: str) -> str:
    lines = [f"| delays | hidden | parameters | runs (seeds) | {metric} mean +- std |", "|---|---|---|---|---|"]
    for kind, hidden in sorted(groups, key=lambda k: (KIND_ORDER.index(k[0]) if k[0] in KIND_ORDER else 9, k[1])):
        g = groups[(kind, hidden)]
        v = [100 * x for x in g["values"]]
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        seeds = ",".join(str(s) for s in sorted(g["seeds"]))
        lines.append(f"| {kind} | {hidden} | {g['params']} | {len(v)} ({seeds}) | {statistics.mean(v):.2f} +- "
                     f"{sd:.2f} % |")
    return "\n".join(lines)


def plot(groups: dict[tuple[str, int], dict[str, Any]], metric: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    kinds = sorted({k for k, _ in groups}, key=lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else 9)
    for kind in kinds:
        rows = sorted((g["params"], h, g["values"]) for (k, h), g in groups.items() if k == kind)
        xs = [r[0] for r in rows]
        means = [100 * statistics.mean(r[2]) for r in rows]
        sds = [100 * statistics.stdev(r[2]) if len(r[2]) > 1 else 0.0 for r in rows]
        label = "weights only" if kind == "none" else f"weights + {kind} delays"
        ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=label)
        for x, y, r in zip(xs, means, rows, strict=True):
            ax.annotate(f"{r[1]}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("trained parameters (weights + delays), log scale")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%), mean +- std over seeds")
    ax.set_title("Yin-yang: accuracy vs parameters (labels: hidden neurons)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="folder searched recursively for metrics.json")
    parser.add_argument("--out", type=Path, default=Path("docs/delay_efficiency.png"), help="plot file (PNG)")
    parser.add_argument("--metric", default="test_accuracy",
                        help="metrics.json key to plot (test_accuracy, final_test_accuracy, val_accuracy)")
    args = parser.parse_args(argv)
    groups = load_groups(args.runs, args.metric)
    if not groups:
        print(f"plot_delay_efficiency: no metrics.json with parameter counts under {args.runs}", file=sys.stderr)
        return 2
    print(table(groups, args.metric))
    plot(groups, args.metric, args.out)
    print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
