"""``firstspike deploy MODEL --device URI``: compile, load, run a data set on a device, report accuracy and cost.

    firstspike deploy runs/demo/model.pt --device sim:// [--dataset yinyang] [--split test] [--size N]
                      [--seed S] [--raster raster.png] [--traces traces.png --trace-neurons 0,1,120] [--json]

MODEL: a TTFS ``model.pt`` (compiled here; a model trained in the loop carries its fixed weight scales in its
metadata and is compiled with them, so the chip sees exactly the weights it was trained with), another model
file ``firstspike compile`` reads (``.nir``, ``.fsir``, ``.pt`` with ``network_ir``), or a compiled ``.fsn``.
Prints accuracy, throughput (samples per second of host wall time, after one warm-up sample), chip time per
sample (the run window) and the median decision latency (first output spike), spikes and synaptic events per
sample, and the energy per classification from the event-count model of docs/energy.md (estimates).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from firstspike.compiler import CompileError, CompileOptions, compile
from firstspike.compiler.artifact import CompiledNetwork
from firstspike.hal import chip
from firstspike.hal.errors import HalError

TASKS = ("yinyang", "mnist16")
#: inputs of each data set's encoding (checked before loading the data)
TASK_INPUTS = {"yinyang": 4, "mnist16": 256}

#: noise seed of deployment runs unless --seed is given (the in-the-loop trainer's test-set seed)
DEFAULT_SEED = 2


class DeployError(ValueError):
    """The model, data set or device cannot be used as requested."""


def load_artifact(path: str | Path, weight_scale: float | None = None) -> tuple[CompiledNetwork, str | None]:
    """Model file -> (compiled network, task name if known). ``weight_scale`` overrides the model's own."""
    p = Path(path)
    if not p.is_file():
        raise DeployError(f"{p}: no such file")
    if p.suffix.lower() == ".fsn":
        compiled = CompiledNetwork.load(p)
        name = compiled.source.name if compiled.source is not None else ""
        return compiled, name if name in TASKS else None
    from firstspike.runtime.commands.compile import ModelLoadError, load_model, model_weight_scale

    try:
        network, metadata = load_model(p)
        scale: Any = weight_scale if weight_scale is not None else model_weight_scale(metadata)
    except ModelLoadError as e:
        raise DeployError(str(e)) from None
    name = metadata.get("task") or network.name
    return compile(network, CompileOptions(weight_scale=scale)), name if name in TASKS else None


def _parse_ints(text: str | None, what: str) -> list[int]:
    if not text:
        return []
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DeployError(f"{what}: expected comma-separated integers, got {text!r}") from None


def deploy(args: argparse.Namespace) -> dict[str, Any]:
    """Run the deployment; returns the result dict (raises DeployError/HalError/CompileError)."""
    import torch

    from firstspike import runtime
    from firstspike.runtime.session import Session
    from firstspike.runtime.training.datasets import load_dataset
    from firstspike.runtime.training.energy import EnergyModel
    from firstspike.runtime.ttfs.loss import predict

    compiled, task = load_artifact(args.model, args.weight_scale)
    dataset = args.dataset or task
    if dataset is None:
        raise DeployError("cannot tell which data set this model is for; pass --dataset yinyang|mnist16")
    if TASK_INPUTS[dataset] != compiled.n_inputs:
        raise DeployError(f"the network has {compiled.n_inputs} inputs; data set {dataset} has {TASK_INPUTS[dataset]}")
    if args.batch_size < 1:
        raise DeployError(f"--batch-size must be >= 1, got {args.batch_size}")
    data = load_dataset(dataset, args.split, size=args.size, mnist_dir=args.mnist_dir)
    if data.times.shape[1] != compiled.n_inputs:
        raise DeployError(f"the network has {compiled.n_inputs} inputs; data set {dataset} has {data.times.shape[1]}")
    energy = EnergyModel(**({"static_w": args.static_power_w} if args.static_power_w is not None else {}))
    device = runtime.open(args.device)
    try:
        info = device.info()
        t_load = time.perf_counter()
        session = Session(device, compiled)
        load_s = time.perf_counter() - t_load
        n = len(data)
        bs = args.batch_size
        correct = silent = 0
        stats: dict[str, int] = {}
        dropped = 0
        chip_s = 0.0
        first_out: list[np.ndarray] = []
        windows: list[int] = []
        fingerprint = hashlib.sha256()
        if n:  # warm-up (first-call costs such as JIT loading are not throughput); results are independent of it
            session.run(data.times[:1].numpy(), seed=args.seed)
        t0 = time.perf_counter()
        for i in range(0, n, bs):
            res = session.run(data.times[i : i + bs].numpy(), seed=args.seed, entry_offset=i)
            pred = predict(torch.from_numpy(res.output_times))
            y = data.labels[i : i + bs]
            correct += int((pred == y).sum())
            silent += int((pred < 0).sum())
            for k, v in res.stats.items():
                stats[k] = stats.get(k, 0) + int(v)
            dropped += res.dropped
            chip_s += res.chip_seconds
            windows.append(res.duration_ticks)
            first_out.append(res.output_times.min(axis=1))
            for ev in res.stage_events:  # global sample index, so the fingerprint does not depend on batching
                shifted = ev.events.copy()
                shifted["batch"] += i
                fingerprint.update(shifted.tobytes())
        wall = time.perf_counter() - t0
        first = np.concatenate(first_out) if first_out else np.empty(0)
        fin = first[np.isfinite(first)]
        tau_us = compiled.tau_s_ticks * chip.TICK_S * 1e6
        est = energy.estimate(stats, chip_s, n)
        result: dict[str, Any] = {
            "model": str(args.model),
            "device": args.device,
            "device_model": info.model,
            "device_serial": info.serial,
            "dataset": dataset,
            "split": args.split,
            "samples": n,
            "seed": args.seed,
            "accuracy": correct / n if n else math.nan,
            "silent_winner_fraction": silent / n if n else math.nan,
            "samples_per_s": n / wall if wall > 0 else math.nan,
            "wall_seconds": wall,
            "load_seconds": load_s,
            "chip_us_per_sample": chip_s / n * 1e6 if n else math.nan,
            "window_ticks": max(windows) if windows else 0,
            "decision_latency_us_median": float(np.median(fin)) * tau_us if fin.size else math.nan,
            "decision_latency_us_p99": float(np.percentile(fin, 99)) * tau_us if fin.size else math.nan,
            "spikes_per_sample": stats.get("spikes", 0) / n if n else math.nan,
            "synaptic_events_per_sample": stats.get("synaptic_events", 0) / n if n else math.nan,
            "input_events": stats.get("input_events", 0),
            "lost_input_events": stats.get("lost_input_events", 0),
            "dropped": dropped,
            "events_sha256": fingerprint.hexdigest(),
            "energy_per_sample_j": est.per_sample_j,
            "energy_breakdown_per_sample_j": {
                "synaptic": est.synaptic_j / n if n else math.nan,
                "spikes": est.spike_j / n if n else math.nan,
                "static": est.static_j / n if n else math.nan,
            },
            "energy_model": energy.to_dict(),
            "tau_s_ticks": compiled.tau_s_ticks,
            "weight_steps": compiled.weight_steps,
        }
        entries = _parse_ints(args.raster_entries, "--raster-entries") or [0]
        if args.raster:
            _raster(session, compiled, data, entries, args, result)
        if args.traces:
            _traces(session, compiled, data, entries[0], args, info, result)
    finally:
        device.close()
    return result


def _raster(session: Any, compiled: CompiledNetwork, data: Any, entries: list[int], args: argparse.Namespace,
            result: dict[str, Any]) -> None:
    from firstspike.runtime.plots import plot_raster

    n = max(entries) + 1
    if n > len(data):
        raise DeployError(f"--raster-entries {entries}: the data set has {len(data)} samples")
    res = session.run(data.times[:n].numpy(), seed=args.seed, record="all")
    plot_raster(res, compiled, args.raster, entries=entries, unit=args.raster_unit,
                labels=data.labels[:n].tolist(), title=f"{Path(args.model).name} on {args.device}")
    result["raster"] = str(args.raster)


def _traces(session: Any, compiled: CompiledNetwork, data: Any, entry: int, args: argparse.Namespace, info: Any,
            result: dict[str, Any]) -> None:
    from firstspike.runtime.plots import plot_membranes

    neurons = _parse_ints(args.trace_neurons, "--trace-neurons")
    if not neurons:
        # default: the first hidden neuron and every output neuron, as long as the readout allows
        neurons = [int(compiled.layers[0].neuron_ids[0])] + [int(n) for n in compiled.layers[-1].neuron_ids]
        neurons = neurons[: max(info.membrane_readout, 0)]
    if info.membrane_readout < len(neurons) or not neurons:
        raise DeployError(f"device {args.device} reads out {info.membrane_readout} membranes; "
                          f"{len(neurons)} requested (--trace-neurons)")
    res = session.run(data.times[entry : entry + 1].numpy(), seed=args.seed, entry_offset=entry, record="all",
                      readout=neurons, readout_period=args.trace_period)
    thresholds = []
    for n in neurons:
        layer = next((L for L in compiled.layers if n in set(L.neuron_ids.tolist())), None)
        thresholds.append(float(layer.codes.threshold) if layer is not None else float("nan"))
    plot_membranes(res.membrane, neurons, args.trace_period, args.traces, entry=0, tau_s_ticks=compiled.tau_s_ticks,
                   thresholds=thresholds, spikes=res.events,
                   title=f"sample {entry} (label {int(data.labels[entry])}) on {args.device}")
    result["traces"] = str(args.traces)


def _print(result: dict[str, Any]) -> None:
    from firstspike.runtime.training.energy import format_energy

    r = result
    print(f"{r['dataset']} {r['split']} ({r['samples']} samples) on {r['device']} ({r['device_model']}, "
          f"serial {r['device_serial']})")
    print(f"  accuracy            {100 * r['accuracy']:.2f} %   "
          f"(silent winners {100 * r['silent_winner_fraction']:.2f} %)")
    print(f"  throughput          {r['samples_per_s']:.0f} samples/s (host wall clock, {r['wall_seconds']:.2f} s)")
    print(f"  chip time / sample  {r['chip_us_per_sample']:.1f} us (run window {r['window_ticks']} ticks); "
          f"decision latency median {r['decision_latency_us_median']:.1f} us, "
          f"p99 {r['decision_latency_us_p99']:.1f} us")
    print(f"  events / sample     {r['spikes_per_sample']:.1f} spikes, {r['synaptic_events_per_sample']:.0f} synaptic "
          f"events; lost inputs {r['lost_input_events']}, dropped {r['dropped']}")
    b = r["energy_breakdown_per_sample_j"]
    print(f"  energy / sample     {format_energy(r['energy_per_sample_j'])} (estimate, docs/energy.md: synaptic "
          f"{format_energy(b['synaptic'])}, spikes {format_energy(b['spikes'])}, static {format_energy(b['static'])})")
    for k in ("raster", "traces"):
        if k in r:
            print(f"  wrote {r[k]}")


def run(args: argparse.Namespace) -> int:
    from firstspike.runtime.allocator import tune_malloc

    tune_malloc()  # as train, eval and serve: an in-process simulator's large temporaries are reused, not re-faulted
    try:
        result = deploy(args)
    except (DeployError, CompileError, HalError, ValueError, OSError) as e:
        print(f"firstspike deploy: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, allow_nan=True))
    else:
        _print(result)
    return 0


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``deploy`` and ``plot``: model, device, data set."""
    p.add_argument("model", help="model.pt (TTFS model), .nir, .fsir or a compiled .fsn")
    p.add_argument("--device", default=None, help="device URI (default: $FIRSTSPIKE_DEVICE or sim://)")
    p.add_argument("--dataset", choices=TASKS, default=None, help="data set (default: the model's task)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--size", type=int, default=None, help="use the first N samples of the split")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"device noise seed (default {DEFAULT_SEED}: the in-the-loop trainer's test seed)")
    p.add_argument("--weight-scale", type=float, default=None,
                   help="fixed steps per model weight unit (default: the model's own, else automatic)")
    p.add_argument("--mnist-dir", default=None, help="directory with MNIST IDX files")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="run a trained model on a device: accuracy, throughput, latency, energy",
                       description=__doc__.splitlines()[0])
    add_run_arguments(p)
    p.add_argument("--batch-size", type=int, default=1000, help="entries per device call (default 1000)")
    p.add_argument("--raster", metavar="PNG", help="also draw a spike raster of --raster-entries")
    p.add_argument("--raster-entries", default="0", help="comma-separated sample indices for the raster (default 0)")
    p.add_argument("--raster-unit", choices=("tau", "us"), default="tau", help="raster time axis unit")
    p.add_argument("--traces", metavar="PNG", help="also draw membrane traces (devices with membrane readout)")
    p.add_argument("--trace-neurons", default=None,
                   help="comma-separated chip neuron ids to read out (default: first hidden + output neurons)")
    p.add_argument("--trace-period", type=int, default=8, help="membrane sample period in ticks (default 8)")
    p.add_argument("--static-power-w", type=float, default=None,
                   help="override the energy model's static power (W); see docs/energy.md")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)
