"""``firstspike export MODEL -o NET.nir [--tau-syn SECONDS]``: write a network as a NIR graph.

MODEL is what ``firstspike compile`` reads (``.pt`` TTFS model or ``{'network_ir': ...}``, ``.fsir``, ``.nir``).
The file holds the literal NIR reading of the network (docs/compiler.md, "NIR"): tau_syn = SECONDS (default 1,
i.e. NIR times in model units), tau_mem = ratio x tau_syn, r = tau_syn, w_in = 1, v_leak = 0, v_threshold = 1, so
``firstspike compile NET.nir`` gives back the same network exactly. Bias spikes travel as an ``Input`` node with
metadata ``firstspike.bias_time`` (model units).
"""

from __future__ import annotations

import argparse

from firstspike.runtime.commands._args import (
    NIR_CONVENTIONS,
    CommandError,
    nir_convention,
    output_file,
    positive_float,
)

SUMMARY = "write a network as a NIR graph (.nir)"
DESCRIPTION = """\
Write a network as a NIR graph in the literal NIR reading (docs/compiler.md): tau_syn = SECONDS, tau_mem =
ratio x tau_syn, r = tau_syn, w_in = 1, v_leak = 0, v_threshold = 1, so that 'firstspike compile NET.nir' gives
back the same network exactly. Bias spikes travel as an Input node with metadata firstspike.bias_time. MODEL is
what 'firstspike compile' reads (.pt, .fsir, .nir)."""
EXAMPLES = """\
examples:
  firstspike export runs/demo/model.pt -o demo.nir
  firstspike export runs/demo/model.pt -o demo.nir --tau-syn 6e-6     # NIR times in seconds of chip time
  firstspike export snn.nir -o literal.nir --nir-convention snntorch  # re-write an exporter's file literally"""


def run(args: argparse.Namespace) -> int:
    from firstspike.compiler import CompileError
    from firstspike.compiler.nir_io import write_nir
    from firstspike.runtime.models import ModelLoadError, read_network

    try:
        network, _ = read_network(args.model, nir_convention=args.nir_convention)
        write_nir(network, args.output, tau_syn=args.tau_syn)
    except (CompileError, ModelLoadError, ValueError, OSError) as e:
        raise CommandError(str(e)) from None
    sizes = " -> ".join(str(n) for n in network.sizes)
    biases = sum(L.has_bias for L in network.layers)
    print(f"wrote {args.output}: {sizes}, {biases} bias input(s), tau_syn = {args.tau_syn:g} s (literal NIR reading)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL",
                   help="model file: .pt (a TTFS model or {'network_ir': ...}), .fsir or .nir")
    p.add_argument("-o", "--output", type=output_file((".nir",)), required=True, metavar="NET.nir",
                   help="the NIR file to write")
    p.add_argument("--tau-syn", type=positive_float, default=1.0, metavar="SECONDS",
                   help="NIR value of the synaptic time constant, the model's time unit (default 1)")
    p.add_argument("--nir-convention", type=nir_convention, default="nir", metavar="|".join(NIR_CONVENTIONS),
                   help="how MODEL is read when it is a .nir file (default nir; see firstspike compile)")
    p.set_defaults(func=run)
