"""The experiments behind docs/results.md ("Training on the device"): software vs in-the-loop on the simulated chip.

Each subcommand runs one experiment and appends one JSON object per line to ``--results`` (default
``runs/itl/results.jsonl``); ``table`` prints the markdown tables of docs/results.md from that file.

    python scripts/itl_experiments.py software  --task yinyang --epochs 300 --seed 0 --out runs/itl/sw-yinyang
    python scripts/itl_experiments.py deploy    runs/itl/sw-yinyang/model.pt --devices 'sim://?ideal=1,sim://'
    python scripts/itl_experiments.py itl       --task yinyang --epochs 300 --seed 0 --out runs/itl/itl-yinyang
    python scripts/itl_experiments.py itl       --task yinyang --epochs 30 --init runs/itl/sw-yinyang/model.pt \\
                                                --out runs/itl/ft-yinyang
    python scripts/itl_experiments.py itl       --task mnist16 --minutes 45 --out runs/itl/itl-mnist16
    python scripts/itl_experiments.py grpc      --task yinyang --epochs 3 --out runs/itl/grpc-yinyang
    python scripts/itl_experiments.py table

``grpc`` starts ``firstspike serve --backend URI --port 0`` on 127.0.0.1, runs the same in-the-loop training
in-process and through ``grpc://`` and records whether spikes, metrics and final weights are bit-identical.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "runs" / "itl" / "results.jsonl"


def _load_avg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def _record(args: argparse.Namespace, row: dict[str, Any]) -> None:
    row = {"experiment": args.cmd, "command": " ".join(sys.argv), "python": platform.python_version(),
           "load_avg_end": _load_avg(), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **row}
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row, allow_nan=True) + "\n")
    print(json.dumps(row, allow_nan=True))


class _Server:
    """``firstspike serve --backend URI --port 0`` on 127.0.0.1 (a context manager yielding its grpc:// URI)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend

    def __enter__(self) -> str:
        self.proc = subprocess.Popen([sys.executable, "-m", "firstspike.runtime.cli", "serve",
                                      "--backend", self.backend,
                                      "--host", "127.0.0.1", "--port", "0", "--log-level", "warning"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=str(ROOT), text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(120)
        if not line or not line[0].strip():
            self.proc.kill()
            raise RuntimeError(f"firstspike serve --backend {self.backend} did not start")
        return f"grpc://127.0.0.1:{int(json.loads(line[0])['port'])}"

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        if self.proc.stdout:
            self.proc.stdout.close()


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("task", "mode", "seed", "epochs", "epochs_requested", "test_accuracy", "val_accuracy", "best_val_accuracy",
            "selected", "selected_epoch", "final_test_accuracy",
            "final_train_accuracy", "train_samples_per_s", "train_seconds", "wall_seconds", "weight_bumps",
            "train_size", "test_size", "init_model")
    out = {k: m.get(k) for k in keys}
    if "device" in m:
        d = m["device"]
        out["device"] = {k: d[k] for k in ("uri", "model", "serial", "weight_steps", "max_abs_weight", "test_run")}
        out["device"]["training_runs"] = d["training"]["runs"]
        out["device"]["total"] = {k: d["total"][k] for k in (
            "samples", "spikes", "synaptic_events", "input_events", "lost_input_events", "dropped", "chip_seconds",
            "config_diffs", "changed_synapse_entries", "energy_j")}
    out["layer_sizes"] = m["config"]["layer_sizes"]
    return out


def cmd_software(args: argparse.Namespace) -> None:
    from firstspike.runtime.training.tasks import train_task

    t0 = time.perf_counter()
    m = train_task(args.task, epochs=args.epochs, seed=args.seed, out_dir=args.out, progress=False,
                       threads=args.threads, select=args.select)
    _record(args, {"out": args.out, **_summary(m), "elapsed_s": time.perf_counter() - t0})


def cmd_deploy(args: argparse.Namespace) -> None:

    uris = args.devices.split(",") if args.devices else []
    if args.serve:
        with _Server(args.serve) as uri:
            _deploy_all(args, [uri], label=f"grpc -> {args.serve}")
    _deploy_all(args, uris)


def _deploy_all(args: argparse.Namespace, uris: list[str], label: str | None = None) -> None:
    from firstspike.runtime.commands.deploy import deploy

    for uri in uris:
        ns = argparse.Namespace(model=args.model, device=uri, dataset=args.dataset, split="test", size=None,
                                seed=args.seed, weight_scale=None, mnist_dir=None, batch_size=1000, raster=None,
                                raster_entries="0", raster_unit="tau", traces=None, trace_neurons=None,
                                trace_period=8, static_power_w=None, no_progress=True, data=None, calibration=None,
                                nir_convention="nir")
        r = deploy(ns)
        r["device"] = label or uri
        _record(args, {k: r[k] for k in ("model", "device", "dataset", "samples", "seed", "accuracy",
                                          "samples_per_s", "chip_us_per_sample", "decision_latency_us_median",
                                          "spikes_per_sample", "synaptic_events_per_sample", "energy_per_sample_j",
                                          "lost_input_events", "dropped", "input_events",
                                          "events_sha256")}
                | {"spikes_total": round(r["spikes_per_sample"] * r["samples"]),
                   "synaptic_events_total": round(r["synaptic_events_per_sample"] * r["samples"])})


def cmd_itl(args: argparse.Namespace) -> None:
    from firstspike import runtime
    from firstspike.runtime.training.tasks import train_task

    device = runtime.open(args.device)
    try:
        t0 = time.perf_counter()
        m = train_task(args.task, device=device, epochs=args.epochs, seed=args.seed, out_dir=args.out,
                              progress=False, init_model=args.init, select=args.select, device_uri=args.device,
                              threads=args.threads, headroom=args.headroom,
                              max_seconds=None if args.minutes is None else 60.0 * args.minutes,
                              train_size=args.train_size, lr=args.lr)
    finally:
        device.close()
    _record(args, {"out": args.out, **_summary(m), "elapsed_s": time.perf_counter() - t0})


def cmd_grpc(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from firstspike import runtime
    from firstspike.runtime.training.tasks import train_task
    from firstspike.runtime.ttfs.layers import TTFSNetwork

    def train(uri: str, out: Path) -> dict[str, Any]:
        dev = runtime.open(uri)
        try:
            return train_task(args.task, device=dev, epochs=args.epochs, seed=args.seed, out_dir=out, progress=False,
                                     device_uri=uri, threads=args.threads, train_size=args.train_size)
        finally:
            dev.close()

    out = Path(args.out)
    t0 = time.perf_counter()
    local = train(args.device, out / "in-process")
    t_local = time.perf_counter() - t0
    with _Server(args.device) as uri:
        t1 = time.perf_counter()
        remote = train(uri, out / "grpc")
        t_remote = time.perf_counter() - t1
    a = TTFSNetwork.load(out / "in-process" / "model.pt")
    b = TTFSNetwork.load(out / "grpc" / "model.pt")
    same_weights = all(torch.equal(x.weight, y.weight) for x, y in zip(a.layers, b.layers, strict=True))
    same_hist = local["history"]["train_loss"] == remote["history"]["train_loss"] and np.array_equal(
        local["history"]["val_accuracy"], remote["history"]["val_accuracy"])
    keys = ("spikes", "synaptic_events", "input_events", "lost_input_events", "dropped")
    same_events = all(local["device"]["total"][k] == remote["device"]["total"][k] for k in keys)
    _record(args, {"out": args.out, "task": args.task, "epochs": args.epochs, "device": args.device,
                   "in_process": _summary(local), "grpc": _summary(remote), "grpc_uri": "grpc://127.0.0.1:<free port>",
                   "identical_final_weights": same_weights, "identical_history": same_hist,
                   "identical_event_counts": same_events,
                   "identical_test_accuracy": local["test_accuracy"] == remote["test_accuracy"],
                   "in_process_seconds": t_local, "grpc_seconds": t_remote})


def cmd_table(args: argparse.Namespace) -> None:
    rows = [json.loads(ln) for ln in Path(args.results).read_text().splitlines() if ln.strip()]
    print("| run | device | epochs | test accuracy | command |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r["experiment"] == "deploy":
            print(f"| deploy {Path(r['model']).parent.name} | `{r['device']}` | - | {100 * r['accuracy']:.1f} % "
                  f"| `{r['command']}` |")
        elif r["experiment"] in ("software", "itl"):
            dev = r.get("device", {}).get("uri", "software") if isinstance(r.get("device"), dict) else "software"
            print(f"| {r['experiment']} {Path(r['out']).name} | `{dev}` | {r['epochs']} | "
                  f"{100 * r['test_accuracy']:.1f} % | `{r['command']}` |")
        elif r["experiment"] == "grpc":
            print(f"| grpc {r['task']} | `{r['device']}` vs grpc | {r['epochs']} | "
                  f"{100 * r['in_process']['test_accuracy']:.1f} % / {100 * r['grpc']['test_accuracy']:.1f} % "
                  f"(weights identical: {r['identical_final_weights']}) | `{r['command']}` |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help="JSON-lines file the results are appended to")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("software")
    s.add_argument("--task", default="yinyang")
    s.add_argument("--epochs", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--out", required=True)
    s.add_argument("--select", choices=("best-val", "final"), default="final")
    d = sub.add_parser("deploy")
    d.add_argument("model")
    d.add_argument("--devices", default="sim://?ideal=1,sim://", help="comma-separated URIs ('' for none)")
    d.add_argument("--serve", default=None, metavar="URI",
                   help="also deploy through grpc:// to a local 'firstspike serve --backend URI'")
    d.add_argument("--dataset", default=None)
    d.add_argument("--seed", type=int, default=2)
    for name in ("itl", "grpc"):
        t = sub.add_parser(name)
        t.add_argument("--task", default="yinyang")
        t.add_argument("--epochs", type=int, default=None)
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--device", default="sim://")
        t.add_argument("--threads", type=int, default=None)
        t.add_argument("--train-size", type=int, default=None)
        t.add_argument("--out", required=True)
        if name == "itl":
            t.add_argument("--init", default=None, help="start from this model.pt (fine-tuning)")
            t.add_argument("--headroom", type=float, default=None, help="default: the task's (in_the_loop)")
            t.add_argument("--lr", type=float, default=None, help="learning rate (default: the task's)")
            t.add_argument("--select", choices=("best-val", "final"), default="final",
                           help="weights kept: last epoch (default here) or best validation epoch")
            t.add_argument("--minutes", type=float, default=None, help="wall-time budget (stops after that epoch)")
    sub.add_parser("table")
    args = p.parse_args()
    commands = {"software": cmd_software, "deploy": cmd_deploy, "itl": cmd_itl, "grpc": cmd_grpc, "table": cmd_table}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
