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
from firstspike.runtime.commands._args import figure_file, int_list, non_negative_int, open_device, positive_int
from firstspike.runtime.commands.deploy import DeployError, add_run_arguments, check_indices, check_neurons
from firstspike.runtime.models import load_artifact


def run(args: argparse.Namespace) -> int:
    from firstspike.runtime.plots import plot_membranes, plot_raster
    from firstspike.runtime.session import Session
    from firstspike.runtime.training.datasets import dataset_for

    try:
        compiled, task = load_artifact(args.model, args.weight_scale)
        if compiled.n_stages != 1:
            raise DeployError(f"plots cover single-stage networks; this one has {compiled.n_stages} stages")
        data, dataset = dataset_for(compiled.n_inputs, data_file=args.data, name=args.dataset or task,
                                    split=args.split, size=args.size, mnist_dir=args.mnist_dir)
        entries = args.entries if args.kind == "raster" else [args.entry]
        check_indices(entries, len(data), "--entries" if args.kind == "raster" else "--entry")
        if args.kind == "membrane" and args.neurons:
            check_neurons(args.neurons, "--neurons")
        device = open_device(args.device)
        try:
            info = device.info()
            session = Session(device, compiled)
            if args.kind == "raster":
                n = max(entries) + 1
                res = session.run(data.times[:n].numpy(), seed=args.seed, record="all")
                plot_raster(res, compiled, args.output, entries=entries, unit=args.unit,
                            labels=data.labels[:n].tolist(), title=f"{dataset} {args.split} on {args.device or 'sim://'}")
                summary = {"kind": "raster", "entries": entries, "spikes": len(res.events)}
            else:
                neurons = list(args.neurons or [])
                if not neurons:
                    neurons = [int(compiled.layers[0].neuron_ids[0]), *map(int, compiled.layers[-1].neuron_ids)]
                    neurons = neurons[: info.membrane_readout]
                if info.membrane_readout < 1:
                    raise DeployError(f"device {args.device or 'sim://'} has no membrane readout; membrane traces "
                                      "need one that reads out membranes, e.g. sim://")
                if len(neurons) > info.membrane_readout:
                    raise DeployError(f"the device reads out {info.membrane_readout} membranes at once; "
                                      f"{len(neurons)} neurons requested (--neurons)")
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
    r.add_argument("--entries", type=int_list, default=[0], help="comma-separated sample indices (default 0)")
    r.add_argument("--unit", choices=("tau", "us"), default="tau", help="time axis: model time or chip us")
    m = kinds.add_parser("membrane", help="membrane traces of chosen neurons (devices with readout)")
    add_run_arguments(m)
    m.add_argument("--entry", type=non_negative_int, default=0, help="sample index (default 0)")
    m.add_argument("--neurons", type=int_list, default=None,
                   help="comma-separated chip neuron ids (default: first hidden neuron + the output neurons)")
    m.add_argument("--period", type=positive_int, default=8, help="sample period in ticks (default 8)")
    for sp in (r, m):
        sp.add_argument("-o", "--output", type=figure_file, required=True, metavar="PNG", help="output PNG")
        sp.add_argument("--json", action="store_true", help="print a JSON summary")
        sp.set_defaults(func=run)
