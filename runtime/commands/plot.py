"""``firstspike plot raster|membrane MODEL --device URI -o FILE.png``: pictures of a model running on a device.

``raster``: every spike (all spikes, not only the first) of the chosen samples, time against neuron, coloured by
layer, inputs and bias spikes below. ``membrane``: membrane traces (LSB) of chosen chip neurons for one sample,
with their thresholds and spike times; needs a device with membrane readout (``DeviceInfo.membrane_readout``).
"""

from __future__ import annotations

import argparse
import json
import sys

from firstspike.runtime.commands._args import figure_file, int_list, non_negative_int, open_device, positive_int
from firstspike.runtime.commands.deploy import DeployError, add_run_arguments, check_indices, check_neurons

SUMMARY = "spike raster or membrane traces of a model on a device"
DESCRIPTION = """\
Pictures of a model running on a device. 'raster': every spike of the chosen samples, time against
neuron, one colour per layer, input and bias spikes marked apart, output neurons named by class and the
deciding (first) output spike marked. 'membrane': the membrane potential of chosen chip neurons during one
sample, with their thresholds and spike times (needs a device with membrane readout, such as sim://)."""
EXAMPLES = """\
examples:
  firstspike plot raster runs/demo/model.pt --device sim:// --entries 0,1 -o raster.png
  firstspike plot membrane runs/demo/model.pt --device sim:// --entry 0 --neurons 0,120,121,122 -o traces.png"""
RASTER_DESCRIPTION = """\
Spike raster of chosen samples: every recorded spike, time against neuron (layer by layer), input and
bias spikes marked apart, output rows named by class, the deciding output spike marked."""
RASTER_EXAMPLES = """\
examples:
  firstspike plot raster runs/demo/model.pt --device sim:// --entries 0,1,2 -o raster.png
  firstspike plot raster runs/demo/model.pt --device sim:// --entries 5 --unit us -o raster.pdf"""
MEMBRANE_DESCRIPTION = """\
Membrane traces (membrane LSB) of chosen chip neurons during one sample, with each neuron's threshold
and spike times; output neurons are named by class. Needs a device with membrane readout (sim://)."""
MEMBRANE_EXAMPLES = """\
examples:
  firstspike plot membrane runs/demo/model.pt --device sim:// -o traces.png          # first hidden + outputs
  firstspike plot membrane runs/demo/model.pt --device sim:// --entry 3 --neurons 0,120,121,122 -o traces.png"""


def run(args: argparse.Namespace) -> int:
    from firstspike.compiler import CompileError
    from firstspike.hal.errors import HalError
    from firstspike.runtime.calibration import on_device
    from firstspike.runtime.models import load_artifact
    from firstspike.runtime.plots import class_names_for, default_trace_neurons, draw_raster, draw_traces
    from firstspike.runtime.session import Session
    from firstspike.runtime.training.datasets import dataset_for

    try:
        compiled, task = load_artifact(args.model, args.weight_scale, nir_convention=args.nir_convention)
        if compiled.n_stages != 1:
            raise DeployError(f"plots cover single-stage networks; this one has {compiled.n_stages} stages")
        data, dataset = dataset_for(compiled.n_inputs, data_file=args.data, name=args.dataset or task,
                                    split=args.split, size=args.size, mnist_dir=args.mnist_dir)
        entries = args.entries if args.kind == "raster" else [args.entry]
        check_indices(entries, len(data), "--entries" if args.kind == "raster" else "--entry")
        if args.kind == "membrane" and args.neurons:
            check_neurons(args.neurons, "--neurons")
        uri = args.device or "default device"
        device = open_device(args.device)
        names = class_names_for(dataset, compiled.layers[-1].n_out)
        try:
            info = device.info()
            uri = args.device or f"{device.scheme}://"
            session = Session(device, on_device(compiled, info, args.calibration))
            times = data.times.numpy()
            if args.kind == "raster":
                spikes = draw_raster(session, compiled, times, args.output, entries=entries, seed=args.seed,
                                     labels=data.labels.tolist(), class_names=names, unit=args.unit,
                                     title=f"{dataset} {args.split} on {uri}")
                summary = {"kind": "raster", "entries": entries, "spikes": spikes}
            else:
                if info.membrane_readout < 1:
                    raise DeployError(f"device {uri} has no membrane readout; membrane traces need one that reads "
                                      "out membranes, e.g. sim://")
                neurons = list(args.neurons or default_trace_neurons(compiled, info.membrane_readout))
                if len(neurons) > info.membrane_readout:
                    raise DeployError(f"the device reads out {info.membrane_readout} membranes at once; "
                                      f"{len(neurons)} neurons requested (--neurons)")
                e = entries[0]
                label = int(data.labels[e])
                draw_traces(session, compiled, times, args.output, entry=e, neurons=neurons, seed=args.seed,
                            period_ticks=args.period, class_names=names,
                            title=f"{dataset} {args.split} sample {e} (label "
                                  f"{names[label] if label < len(names) else label}) on {uri}")
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
    p = sub.add_parser("plot", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="KIND", title="kinds")
    kinds.required = True
    r = kinds.add_parser("raster", help="spike raster of chosen samples", description=RASTER_DESCRIPTION,
                         epilog=RASTER_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(r)
    r.add_argument("--entries", type=int_list, default=[0], metavar="I,J,...",
                   help="sample indices, one panel each (default 0)")
    r.add_argument("--unit", choices=("tau", "us"), default="tau",
                   help="time axis: model time in tau_s or chip time in us (default: tau)")
    m = kinds.add_parser("membrane", help="membrane traces of chosen neurons (devices with membrane readout)",
                         description=MEMBRANE_DESCRIPTION, epilog=MEMBRANE_EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(m)
    m.add_argument("--entry", type=non_negative_int, default=0, metavar="I", help="sample index (default 0)")
    m.add_argument("--neurons", type=int_list, default=None, metavar="ID,ID,...",
                   help="chip neuron ids 0..511 (default: the first hidden neuron and the output neurons)")
    m.add_argument("--period", type=positive_int, default=8, metavar="TICKS",
                   help="membrane sample period in ticks of 8 ns (default 8)")
    for sp in (r, m):
        sp.add_argument("-o", "--output", type=figure_file, required=True, metavar="FILE.png",
                        help="the picture to write (.png, .pdf, .svg, .jpg)")
        sp.add_argument("--json", action="store_true", help="print a JSON summary")
        sp.set_defaults(func=run)
