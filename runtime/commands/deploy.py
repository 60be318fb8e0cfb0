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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from firstspike.compiler import CompileError
from firstspike.compiler.artifact import CompiledNetwork
from firstspike.hal import chip
from firstspike.hal.errors import HalError
from firstspike.runtime.commands._args import (
    CommandError,
    figure_file,
    int_list,
    non_negative_float,
    non_negative_int,
    open_device,
    positive_float,
    positive_int,
)
from firstspike.runtime.models import TASK_NAMES, ModelLoadError, load_artifact

TASKS = TASK_NAMES
#: noise seed of deployment runs unless --seed is given: evaluation.DEFAULT_DEVICE_SEED, the in-the-loop trainer's
#: test-set seed (kept here as a number so that building the command line does not import torch)
DEFAULT_SEED = 2


class DeployError(CommandError):
    """The model, data set or device cannot be used as requested."""


def check_indices(indices: list[int], n: int, what: str) -> None:
    """Sample indices must name samples of the data set (``n`` of them)."""
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise DeployError(f"{what} {bad[0]}: the data set has {n} samples, indices 0..{n - 1}")


def check_neurons(neurons: list[int], what: str) -> None:
    """Chip neuron ids must exist on the chip."""
    bad = [i for i in neurons if not 0 <= i < chip.N_NEURONS]
    if bad:
        raise DeployError(f"{what} {bad[0]}: chip neuron ids are 0..{chip.N_NEURONS - 1}")


def deploy(args: argparse.Namespace) -> dict[str, Any]:
    """Run the deployment; returns the result dict (raises DeployError/HalError/CompileError)."""
    from firstspike.runtime.session import Session
    from firstspike.runtime.training.data import DataError
    from firstspike.runtime.training.datasets import dataset_for
    from firstspike.runtime.training.energy import EnergyModel
    from firstspike.runtime.training.evaluation import DeviceStats, evaluate

    try:
        compiled, task = load_artifact(args.model, args.weight_scale)
    except ModelLoadError as e:
        raise DeployError(str(e)) from None
    try:
        data, dataset = dataset_for(compiled.n_inputs, data_file=args.data, name=args.dataset or task,
                                    split=args.split, size=args.size, mnist_dir=args.mnist_dir)
    except DataError as e:
        raise DeployError(str(e)) from None
    energy = EnergyModel(**({"static_w": args.static_power_w} if args.static_power_w is not None else {}))
    entries = args.raster_entries
    if args.raster:
        check_indices(entries, len(data), "--raster-entries")
    if args.trace_neurons:
        check_neurons(args.trace_neurons, "--trace-neurons")
    device = open_device(args.device)
    uri = args.device or device.scheme + "://"
    try:
        info = device.info()
        t_load = time.perf_counter()
        session = Session(device, compiled)
        load_s = time.perf_counter() - t_load
        n = len(data)
        windows: list[int] = []
        fingerprint = hashlib.sha256()

        def record(start: int, res: Any) -> None:
            windows.append(res.duration_ticks)
            for ev in res.stage_events:  # global sample index, so the fingerprint does not depend on batching
                shifted = ev.events.copy()
                shifted["batch"] += start
                fingerprint.update(shifted.tobytes())

        # warm-up (first-call costs such as JIT loading are not throughput); results are independent of it
        session.run(data.times[:1].numpy(), seed=args.seed)
        stats = DeviceStats()
        t0 = time.perf_counter()
        ev = evaluate(None, data, session, seed=args.seed, batch_size=args.batch_size, stats=stats, on_batch=record,
                      progress=not args.no_progress)
        wall = time.perf_counter() - t0
        first = ev.decision_times
        fin = first[np.isfinite(first)]
        tau_us = compiled.tau_s_ticks * chip.TICK_S * 1e6
        est = energy.estimate(asdict(stats), stats.chip_seconds, n)
        result: dict[str, Any] = {
            "model": str(args.model),
            "device": uri,
            "device_model": info.model,
            "device_serial": info.serial,
            "dataset": dataset,
            "split": args.split,
            "samples": n,
            "seed": args.seed,
            "accuracy": ev.accuracy,
            "loss": ev.loss,
            "silent_winner_fraction": ev.silent_winner_fraction,
            "samples_per_s": n / wall if wall > 0 else math.nan,
            "wall_seconds": wall,
            "load_seconds": load_s,
            "chip_us_per_sample": stats.chip_seconds / n * 1e6,
            "window_ticks": max(windows) if windows else 0,
            "decision_latency_us_median": float(np.median(fin)) * tau_us if fin.size else math.nan,
            "decision_latency_us_p99": float(np.percentile(fin, 99)) * tau_us if fin.size else math.nan,
            "spikes_per_sample": stats.spikes / n,
            "synaptic_events_per_sample": stats.synaptic_events / n,
            "input_events": stats.input_events,
            "lost_input_events": stats.lost_input_events,
            "dropped": stats.dropped,
            "events_sha256": fingerprint.hexdigest(),
            "energy_per_sample_j": est.per_sample_j,
            "energy_breakdown_per_sample_j": {
                "synaptic": est.synaptic_j / n,
                "spikes": est.spike_j / n,
                "static": est.static_j / n,
            },
            "energy_model": energy.to_dict(),
            "tau_s_ticks": compiled.tau_s_ticks,
            "weight_steps": compiled.weight_steps,
        }
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
    res = session.run(data.times[:n].numpy(), seed=args.seed, record="all")
    plot_raster(res, compiled, args.raster, entries=entries, unit=args.raster_unit,
                labels=data.labels[:n].tolist(), title=f"{Path(args.model).name} on {args.device}")
    result["raster"] = str(args.raster)


def _traces(session: Any, compiled: CompiledNetwork, data: Any, entry: int, args: argparse.Namespace, info: Any,
            result: dict[str, Any]) -> None:
    from firstspike.runtime.plots import plot_membranes

    neurons = list(args.trace_neurons or [])
    if not neurons:
        # default: the first hidden neuron and every output neuron, as long as the readout allows
        neurons = [int(compiled.layers[0].neuron_ids[0])] + [int(n) for n in compiled.layers[-1].neuron_ids]
        neurons = neurons[: max(info.membrane_readout, 0)]
    if info.membrane_readout < 1:
        raise DeployError(f"device {result['device']} has no membrane readout; --traces needs one that reads out "
                          "membranes, e.g. sim://")
    if info.membrane_readout < len(neurons):
        raise DeployError(f"device {result['device']} reads out {info.membrane_readout} membranes at once; "
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
    p.add_argument("model", metavar="MODEL", help="model.pt (TTFS model), .nir, .fsir or a compiled .fsn")
    p.add_argument("--device", default=None, metavar="URI", help="device URI (default: $FIRSTSPIKE_DEVICE or sim://)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--dataset", choices=TASKS, default=None, help="data set (default: the model's task)")
    source.add_argument("--data", default=None, metavar="FILE.npz",
                   help="your own data instead: arrays 'times' (samples, inputs; tau_s, inf = no spike) and "
                        "'labels' (SpikeDataset.save writes it)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test", help="split (default: test)")
    p.add_argument("--size", type=positive_int, default=None, metavar="N", help="use the first N samples of the split")
    p.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED,
                   help=f"device noise seed (default {DEFAULT_SEED}: the in-the-loop trainer's test seed)")
    p.add_argument("--weight-scale", type=positive_float, default=None,
                   help="fixed steps per model weight unit (default: the model's own, else automatic)")
    p.add_argument("--mnist-dir", default=None, help="directory with MNIST IDX files")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="run a trained model on a device: accuracy, throughput, latency, energy",
                       description=__doc__.splitlines()[0])
    add_run_arguments(p)
    p.add_argument("--batch-size", type=positive_int, default=1000, metavar="N",
                   help="entries per device call (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--raster", type=figure_file, metavar="PNG", help="also draw a spike raster of --raster-entries")
    p.add_argument("--raster-entries", type=int_list, default=[0],
                   help="comma-separated sample indices for the raster (default 0)")
    p.add_argument("--raster-unit", choices=("tau", "us"), default="tau", help="raster time axis unit")
    p.add_argument("--traces", type=figure_file, metavar="PNG",
                   help="also draw membrane traces (devices with membrane readout)")
    p.add_argument("--trace-neurons", type=int_list, default=None,
                   help="comma-separated chip neuron ids to read out (default: first hidden + output neurons)")
    p.add_argument("--trace-period", type=positive_int, default=8, help="membrane sample period in ticks (default 8)")
    p.add_argument("--static-power-w", type=non_negative_float, default=None,
                   help="override the energy model's static power (W); see docs/energy.md")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)
