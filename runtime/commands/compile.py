"""``firstspike compile MODEL -o NET.fsn``: compile a network for the chip and print a resource report.

MODEL is a ``.nir`` graph, a ``.fsir`` file (the compiler's IR) or a ``.pt`` file: either a dict with key
``network_ir`` (an IR dict, see ``firstspike.compiler.ir.Network.to_dict``) or a TTFS model saved by
``firstspike.runtime.ttfs.TTFSNetwork.save``. A model trained in the loop carries the fixed weight scales it was trained
with (metadata ``device_weight_scale``); it is compiled with them unless ``--weight-scale`` is given, so the
artifact holds exactly the 6-bit weights the device ran during training.

``--nir-convention nir|snntorch|rockpool|norse`` chooses how a ``.nir`` file's CubaLIF units are read (default ``nir``,
the literal NIR semantics; the others are how snnTorch, Rockpool and Norse export, see docs/compiler.md). A
weight-range error (FS-R006) on a ``.nir`` file names the option when the file looks like another convention.
"""

from __future__ import annotations

import argparse
import json
import sys

from firstspike.runtime.commands._args import (
    NIR_CONVENTIONS,
    figure_file,
    nir_convention,
    output_file,
    positive_float,
)

SUMMARY = "compile a model into a chip artifact (.fsn), report its resources"
DESCRIPTION = """\
Compile a network for the chip: check the design rules (a violation names its rule, e.g. FS-R006), place
its neurons and route its synapses, quantise the weights to 6 bits and write the deployable artifact.
Prints the resource report (neurons, synapse rows, drivers, weight steps per layer). MODEL is a model.pt
written by 'firstspike train' (a model trained in the loop is compiled with the weight scales it was
trained with), a .pt holding {'network_ir': ...}, a NIR graph (.nir) or the compiler's own IR (.fsir)."""
EXAMPLES = """\
examples:
  firstspike compile runs/demo/model.pt -o net.fsn
  firstspike compile model.nir -o net.fsn --plot occupancy.png --json
  firstspike compile runs/yy/model.pt -o net.fsn --weight-scale 12 --no-split"""


def run(args: argparse.Namespace) -> int:
    from firstspike.compiler import CompileError, CompileOptions, DesignRuleErrors, compile
    from firstspike.compiler.nir_conventions import with_hint
    from firstspike.compiler.report import plot_occupancy, resource_report, resources
    from firstspike.runtime.models import NIR_HINT_KEY, ModelLoadError, model_weight_scale, read_network

    try:
        network, metadata = read_network(args.model, nir_convention=args.nir_convention)
        scale = args.weight_scale if args.weight_scale is not None else model_weight_scale(metadata)
        options = CompileOptions(weight_scale=scale, tau_s_ticks=args.tau_s_ticks, allow_split=not args.no_split)
        try:
            compiled = compile(network, options, keep_source=not args.no_source)
        except DesignRuleErrors as e:
            raise with_hint(e, metadata.get(NIR_HINT_KEY, "")) from None
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
    p = sub.add_parser("compile", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL",
                   help="model file: .pt (a TTFS model or {'network_ir': ...}), .nir or .fsir")
    p.add_argument("-o", "--output", type=output_file((".fsn",)), required=True, metavar="NET.fsn",
                   help="the artifact to write (.fsn)")
    p.add_argument("--plot", type=figure_file, metavar="FILE.png",
                   help="also draw the synapse-array occupancy of both halves")
    p.add_argument("--weight-scale", type=positive_float, default=None, metavar="STEPS",
                   help="digital weight steps per model weight unit for every layer (default: the scales the "
                        "model was trained with in the loop, else chosen per layer from max |w|)")
    p.add_argument("--tau-s-ticks", type=positive_float, default=750.0, metavar="TICKS",
                   help="target synaptic time constant tau_s in ticks of 8 ns (default 750 = 6 us)")
    p.add_argument("--no-split", action="store_true",
                   help="fail instead of splitting a network too large for one run into stages")
    p.add_argument("--no-source", action="store_true", help="do not store the source network in the artifact")
    p.add_argument("--json", action="store_true", help="print the resource report as one JSON object")
    p.add_argument("--nir-convention", type=nir_convention, default="nir", metavar="|".join(NIR_CONVENTIONS),
                   help="how a .nir file's CubaLIF units are read: nir (literal NIR, default) or as written by the "
                        "snntorch, rockpool or norse exporter (docs/compiler.md)")
    p.set_defaults(func=run)

