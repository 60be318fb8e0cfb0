"""``firstspike info``: the chip's resource model, the package version and the backends (usable and broken)."""

from __future__ import annotations

import argparse
import json

from firstspike.runtime.commands._args import package_version as _version

SUMMARY = "version, the chip's resource model, installed device backends"
DESCRIPTION = """\
Print the package version, the chip's resource model (neurons, synapse arrays, drivers, fan-in, weight and
label bits, clock) and the device backends: every URI scheme an installed package declares that can be
opened, and every declared one that cannot be loaded, with the reason (a broken entry point)."""
EXAMPLES = """\
examples:
  firstspike info
  firstspike info --json"""


def run(args: argparse.Namespace) -> int:
    from firstspike.hal import chip
    from firstspike.hal.registry import check_backends

    model = chip.resource_model()
    status = check_backends()
    usable = [s for s, problem in status.items() if problem is None]
    broken = {s: problem for s, problem in status.items() if problem is not None}
    if args.json:
        print(json.dumps({"version": _version(), "resource_model": model, "backends": usable,
                          "broken_backends": broken}))
        return 0
    print(f"firstspike {_version()}")
    print("chip resource model (BrainScaleS-2-like):")
    print(f"  neurons            {chip.N_NEURONS} = {chip.N_HALVES} halves x {chip.COLUMNS_PER_HALF} columns")
    print(
        f"  synapse arrays     {chip.N_HALVES} x {chip.ROWS_PER_HALF} rows x {chip.COLUMNS_PER_HALF} columns"
        f" = {chip.N_SYNAPSES} synapses"
    )
    print(
        f"  synapse drivers    {chip.DRIVERS_PER_HALF} per half, {chip.ROWS_PER_DRIVER} rows each;"
        " rows are excitatory, inhibitory or off"
    )
    print(
        f"  fan-in             {chip.ROWS_PER_HALF} rows per half = {chip.MAX_SIGNED_INPUTS_PER_HALF} signed inputs"
        " (x2 with merged columns)"
    )
    print(f"  weights            {chip.WEIGHT_BITS}-bit magnitude 0..{chip.WEIGHT_MAX}, sign from the row")
    print(f"  labels             {chip.LABEL_BITS}-bit synapse address 0..{chip.N_LABELS - 1}")
    print(f"  input channels     {chip.N_INPUT_CHANNELS}")
    print(f"  neuron parameters  {chip.PARAM_BITS}-bit digital values 0..{chip.PARAM_MAX}")
    print(
        f"  clock              {chip.CLOCK_HZ / 1e6:.0f} MHz (1 tick = {chip.TICK_NS} ns),"
        f" speed-up {chip.SPEEDUP}x, nominal tau_s = {chip.NOMINAL_TAU_S_TICKS} ticks"
    )
    print(f"backends: {', '.join(usable) or 'none'}")
    for scheme, problem in broken.items():
        print(f"broken backend {scheme}://: {problem}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print as one JSON object")
    p.set_defaults(func=run)
