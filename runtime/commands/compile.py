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
from pathlib import Path
from typing import Any

from firstspike.compiler import CompileError, CompileOptions, DesignRuleErrors, Network, compile
from firstspike.compiler.nir_conventions import CONVENTIONS, parse_convention, with_hint
from firstspike.compiler.report import plot_occupancy, resource_report, resources

#: metadata key of :func:`load_model`'s result: the hint a weight-range error on an imported NIR file carries
NIR_HINT_KEY = "nir_hint"


class ModelLoadError(ValueError):
    """The model file cannot be read as a network."""


def load_model(path: str | Path, *, nir_convention: str = "nir") -> tuple[Network, dict[str, Any]]:
    """Read a model file (``.nir``, ``.fsir`` or ``.pt``) as ``(compiler Network, TTFS metadata)``.

    The metadata dict is the TTFS model's (task, encoding, ``device_weight_scale`` of a model trained in the
    loop, ...); for a ``.nir`` file (read under ``nir_convention``) it holds :data:`NIR_HINT_KEY`; it is empty for
    every other kind of file.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".nir":
        from firstspike.compiler.nir_io import import_nir

        imp = import_nir(p, convention=nir_convention)
        return imp.network, {NIR_HINT_KEY: imp.hint}
    if suffix == ".fsir":
        return Network.load(p), {}
    if suffix in (".pt", ".pth"):
        import torch

        try:
            data = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds (pickle, zip, runtime) for foreign files
            raise ModelLoadError(f"{p}: not a loadable torch file ({type(e).__name__}: {e})") from None
        if isinstance(data, dict) and "network_ir" in data:
            return Network.from_dict(data["network_ir"]), {}
        from firstspike.runtime.ttfs import MODEL_FORMAT, TTFSNetwork

        if isinstance(data, dict) and data.get("format") == MODEL_FORMAT:
            model = TTFSNetwork.from_dict(data)
            return model.to_network(), dict(model.metadata)
        raise ModelLoadError(f"{p}: a .pt model must be a dict with key 'network_ir' or a TTFS model"
                             f" (format {MODEL_FORMAT!r})")
    raise ModelLoadError(f"{p}: unknown model type {suffix!r}; use .pt, .nir or .fsir")


def load_network(path: str | Path, *, nir_convention: str = "nir") -> Network:
    """Read a model file (``.nir``, ``.fsir`` or ``.pt``) as a compiler Network."""
    return load_model(path, nir_convention=nir_convention)[0]


def model_weight_scale(metadata: dict[str, Any]) -> tuple[float, ...] | None:
    """The fixed per-layer weight scales (digital steps per model weight unit) a model was trained in the loop
    with, or None (then the compiler picks a scale per layer from max |w|)."""
    scales = metadata.get("device_weight_scale")
    if not scales:
        return None
    try:
        return tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise ModelLoadError(f"model metadata 'device_weight_scale' must be a list of numbers, got {scales!r}")\
            from None


def run(args: argparse.Namespace) -> int:
    try:
        network, metadata = load_model(args.model, nir_convention=args.nir_convention)
        scale = args.weight_scale if args.weight_scale is not None else model_weight_scale(metadata)
        options = CompileOptions(weight_scale=scale, tau_s_ticks=args.tau_s_ticks, allow_split=not args.no_split)
        try:
            compiled = compile(network, options, keep_source=not args.no_source)
        except DesignRuleErrors as e:
            raise with_hint(e, metadata.get(NIR_HINT_KEY, "")) from None
    except (CompileError, ModelLoadError, ValueError) as e:
        print(f"firstspike compile: {e}", file=sys.stderr)
        return 2
    compiled.save(args.output)
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
    p.add_argument("-o", "--output", required=True, help="output artifact (.fsn)")
    p.add_argument("--plot", metavar="PNG", help="draw the synapse-array occupancy of both halves")
    p.add_argument("--weight-scale", type=float, default=None,
                   help="fixed digital steps per model weight unit for all layers (default: the scales a model "
                        "trained in the loop carries, else per layer from max|w|)")
    p.add_argument("--tau-s-ticks", type=float, default=750.0, help="target tau_s in ticks of 8 ns (default 750)")
    p.add_argument("--no-split", action="store_true", help="fail instead of splitting a large network into stages")
    p.add_argument("--no-source", action="store_true", help="do not store the source network in the artifact")
    p.add_argument("--json", action="store_true", help="print the resource report as one JSON object")
    p.add_argument("--nir-convention", type=nir_convention, default="nir", metavar="|".join(CONVENTIONS),
                   help="how a .nir file's CubaLIF units are read: nir (literal NIR, default) or as written by the "
                        "snntorch, rockpool or norse exporter (docs/compiler.md)")
    p.set_defaults(func=run)


def nir_convention(text: str) -> str:
    """argparse type of ``--nir-convention``: one line naming the allowed values on a bad one."""
    try:
        return parse_convention(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
