"""``firstspike compile MODEL -o NET.fsn``: compile a network for the chip and print a resource report.

MODEL is a ``.nir`` graph, a ``.fsir`` file (the compiler's IR) or a ``.pt`` file: either a dict with key
``network_ir`` (an IR dict, see ``firstspike.compiler.ir.Network.to_dict``) or a TTFS model saved by
``firstspike.runtime.ttfs.TTFSNetwork.save``. A model trained in the loop carries the fixed weight scales it was trained
with (metadata ``device_weight_scale``); it is compiled with them unless ``--weight-scale`` is given, so the
artifact holds exactly the 6-bit weights the device ran during training.
"""

from __future__ import annotations

import argparse
import json
import sys

from firstspike.compiler import CompileError, CompileOptions, compile
from firstspike.compiler.report import plot_occupancy, resource_report, resources
from firstspike.runtime.commands._args import figure_file, output_file, positive_float
from firstspike.runtime.models import ModelLoadError, model_weight_scale, read_network


def run(args: argparse.Namespace) -> int:
    try:
        network, metadata = read_network(args.model)
        scale = args.weight_scale if args.weight_scale is not None else model_weight_scale(metadata)
        options = CompileOptions(weight_scale=scale, tau_s_ticks=args.tau_s_ticks, allow_split=not args.no_split)
        compiled = compile(network, options, keep_source=not args.no_source)
    except (CompileError, ModelLoadError, ValueError) as e:
        print(f"firstspike compile: {e}", file=sys.stderr)
        return 2
    try:
        compiled.save(args.output)
    except OSError as e:
        print(f"firstspike compile: cannot write {args.output}: {e.strerror or e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"output": str(args.output), **resources(compiled)}, sort_keys=True))
    else:
        print(resource_report(compiled))
        print(f"\nwrote {args.output}")
    if args.plot:
        plot_occupancy(compiled, args.plot)
        if not args.json:
            print(f"wrote {args.plot}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a network (.pt, .nir, .fsir) into a chip artifact (.fsn)")
    p.add_argument("model", help="model file: .pt (TTFS model or {'network_ir': ...}), .nir or .fsir")
    p.add_argument("-o", "--output", type=output_file((".fsn",)), required=True, metavar="NET.fsn",
                   help="output artifact (.fsn)")
    p.add_argument("--plot", type=figure_file, metavar="PNG", help="draw the synapse-array occupancy of both halves")
    p.add_argument("--weight-scale", type=positive_float, default=None,
                   help="fixed digital steps per model weight unit for all layers (default: the scales a model "
                        "trained in the loop carries, else per layer from max|w|)")
    p.add_argument("--tau-s-ticks", type=positive_float, default=750.0,
                   help="target tau_s in ticks of 8 ns (default 750)")
    p.add_argument("--no-split", action="store_true", help="fail instead of splitting a large network into stages")
    p.add_argument("--no-source", action="store_true", help="do not store the source network in the artifact")
    p.add_argument("--json", action="store_true", help="print the resource report as one JSON object")
    p.set_defaults(func=run)
