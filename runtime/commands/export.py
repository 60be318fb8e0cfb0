"""``firstspike export MODEL -o NET.nir [--tau-syn SECONDS]``: write a network as a NIR graph.

MODEL is what ``firstspike compile`` reads (``.pt`` TTFS model or ``{'network_ir': ...}``, ``.fsir``, ``.nir``).
The file holds the literal NIR reading of the network (docs/compiler.md, "NIR"): tau_syn = SECONDS (default 1,
i.e. NIR times in model units), tau_mem = ratio x tau_syn, r = tau_syn, w_in = 1, v_leak = 0, v_threshold = 1, so
``firstspike compile NET.nir`` gives back the same network exactly. Bias spikes travel as an ``Input`` node with
metadata ``firstspike.bias_time`` (model units).
"""

from __future__ import annotations

import argparse
import sys

from firstspike.compiler import CompileError
from firstspike.compiler.nir_conventions import CONVENTIONS
from firstspike.compiler.nir_io import write_nir
from firstspike.runtime.commands.compile import nir_convention
from firstspike.runtime.models import ModelLoadError, read_network


def run(args: argparse.Namespace) -> int:
    try:
        network, _ = read_network(args.model, nir_convention=args.nir_convention)
        write_nir(network, args.output, tau_syn=args.tau_syn)
    except (CompileError, ModelLoadError, ValueError, OSError) as e:
        print(f"firstspike export: {e}", file=sys.stderr)
        return 2
    sizes = " -> ".join(str(n) for n in network.sizes)
    biases = sum(L.has_bias for L in network.layers)
    print(f"wrote {args.output}: {sizes}, {biases} bias input(s), tau_syn = {args.tau_syn:g} s (literal NIR reading)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a network (.pt, .fsir, .nir) as a NIR graph (.nir)")
    p.add_argument("model", help="model file: .pt (TTFS model or {'network_ir': ...}), .fsir or .nir")
    p.add_argument("-o", "--output", required=True, help="output NIR file (.nir)")
    p.add_argument("--tau-syn", type=float, default=1.0, metavar="SECONDS",
                   help="NIR value of the synaptic time constant, the model's time unit (default 1)")
    p.add_argument("--nir-convention", type=nir_convention, default="nir", metavar="|".join(CONVENTIONS),
                   help="how MODEL is read when it is a .nir file (see firstspike compile)")
    p.set_defaults(func=run)
