"""``firstspike plot raster|membrane MODEL --device URI -o PNG``: pictures of a model running on a device.

    firstspike plot raster runs/demo/model.pt --device sim:// --entries 0,1,2 -o raster.png [--unit us]
    firstspike plot membrane runs/demo/model.pt --device sim:// --entry 0 --neurons 0,120,121,122 -o traces.png

``raster``: every spike (all spikes, not only the first) of the chosen samples, time against neuron, coloured by
layer, inputs and bias spikes below. ``membrane``: membrane traces (LSB) of chosen chip neurons for one sample,
with their thresholds and spike times; needs a device with membrane readout (``DeviceInfo.membrane_readout``).
"""

from __future__ import annotations

import argparse
import json
import sys

from firstspike.compiler import CompileError
from firstspike.hal.errors import HalError
from firstspike.runtime.commands.deploy import DeployError, _parse_ints, add_run_arguments
from firstspike.runtime.models import load_artifact


def run(args: argparse.Namespace) -> int:
    from firstspike import runtime
    from firstspike.runtime.calibration import on_device
    from firstspike.runtime.plots import plot_membranes, plot_raster
    from firstspike.runtime.session import Session
    from firstspike.runtime.training.datasets import dataset_for

    try:
        compiled, task = load_artifact(args.model, args.weight_scale, nir_convention=args.nir_convention)
        if compiled.n_stages != 1:
            raise DeployError(f"plots cover single-stage networks; this one has {compiled.n_stages} stages")
        data, dataset = dataset_for(compiled.n_inputs, data_file=args.data, name=args.dataset or task,
                                    split=args.split, size=args.size, mnist_dir=args.mnist_dir)
        entries = _parse_ints(args.entries, "--entries") if args.kind == "raster" else [args.entry]
        if not entries or min(entries) < 0 or max(entries) >= len(data):
            raise DeployError(f"sample indices {entries} must be in [0, {len(data) - 1}]")
        device = runtime.open(args.device)
        try:
            info = device.info()
            session = Session(device, on_device(compiled, info, args.calibration))
            if args.kind == "raster":
                n = max(entries) + 1
                res = session.run(data.times[:n].numpy(), seed=args.seed, record="all")
                plot_raster(res, compiled, args.output, entries=entries, unit=args.unit,
                            labels=data.labels[:n].tolist(), title=f"{dataset} {args.split} on {args.device or 'sim://'}")
                summary = {"kind": "raster", "entries": entries, "spikes": len(res.events)}
            else:
                neurons = _parse_ints(args.neurons, "--neurons")
                if not neurons:
                    neurons = [int(compiled.layers[0].neuron_ids[0]), *map(int, compiled.layers[-1].neuron_ids)]
                    neurons = neurons[: info.membrane_readout]
                if not neurons or len(neurons) > info.membrane_readout:
                    raise DeployError(f"the device reads out {info.membrane_readout} membranes at once; "
                                      f"{len(neurons)} neurons requested")
                e = entries[0]
                res = session.run(data.times[e : e + 1].numpy(), seed=args.seed, entry_offset=e, record="all",
                                  readout=neurons, readout_period=args.period)
                thresholds = []
                for nid in neurons:
                    layer = next((L for L in compiled.layers if nid in set(L.neuron_ids.tolist())), None)
                    thresholds.append(float(layer.codes.threshold) if layer is not None else float("nan"))
                if res.membrane is None:
                    raise DeployError(f"the device returned no membrane samples for neurons {neurons}")
                plot_membranes(res.membrane, neurons, args.period, args.output, entry=0,
                               tau_s_ticks=compiled.tau_s_ticks, thresholds=thresholds, spikes=res.events,
                               title=f"{dataset} {args.split} sample {e} (label {int(data.labels[e])})")
                summary = {"kind": "membrane", "entry": e, "neurons": neurons}
        finally:
            device.close()
    except (DeployError, CompileError, HalError, ValueError, OSError) as exc:
        print(f"firstspike plot: {exc}", file=sys.stderr)
        return 2
    summary["output"] = str(args.output)
    print(json.dumps(summary) if args.json else f"wrote {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="spike raster or membrane traces of a model running on a device",
                       description=__doc__.splitlines()[0])
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    r = kinds.add_parser("raster", help="spike raster of chosen samples")
    add_run_arguments(r)
    r.add_argument("--entries", default="0", help="comma-separated sample indices (default 0)")
    r.add_argument("--unit", choices=("tau", "us"), default="tau", help="time axis: model time or chip us")
    m = kinds.add_parser("membrane", help="membrane traces of chosen neurons (devices with readout)")
    add_run_arguments(m)
    m.add_argument("--entry", type=int, default=0, help="sample index (default 0)")
    m.add_argument("--neurons", default=None,
                   help="comma-separated chip neuron ids (default: first hidden neuron + the output neurons)")
    m.add_argument("--period", type=int, default=8, help="sample period in ticks (default 8)")
    for sp in (r, m):
        sp.add_argument("-o", "--output", required=True, help="output PNG")
        sp.add_argument("--json", action="store_true", help="print a JSON summary")
        sp.set_defaults(func=run)
