"""``firstspike calibrate URI -o FILE``: measure every neuron of a chip and write its calibration file.

    firstspike calibrate sim://?serial=3 -o chip3.fscal [--plot chip3.png] [--rounds 2] [--no-verify] [--json]

The file is refused on any other chip or device spec version. Use it with ``firstspike serve --calibration FILE``
(a device server holding its chip's calibration) or in Python: ``runtime.calibration.load_calibration`` and
``calibrated(compiled, result)``. See docs/calibration.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from firstspike.runtime.commands._args import (
    CommandError,
    figure_file,
    non_negative_int,
    open_device,
    output_file,
    positive_int,
)

SUMMARY = "measure every neuron of a chip and write its calibration file"
#: measurement rounds unless --rounds (firstspike.runtime.calibration.DEFAULT_ROUNDS; a number here so that building
#: the command line imports nothing heavy; a test checks the two agree)
DEFAULT_ROUNDS = 2
DESCRIPTION = """\
Measure every neuron of a chip through its device interface only (runs with chosen stimuli, spike times,
membrane readout where the device has it), choose the digital codes that make each neuron hit the
compiler's targets (time constants, leak, threshold, reset, excitatory and inhibitory gain), and write the
chip's calibration file. The file is refused on any other chip or device spec version. Use it with
--calibration FILE on train, eval, deploy and plot, or serve it: firstspike serve --calibration FILE
(docs/calibration.md)."""
EXAMPLES = """\
examples:
  firstspike calibrate sim://?serial=3 -o chip3.fscal --plot chip3.png
  firstspike calibrate grpc://127.0.0.1:50051 -o chip.fscal --json
  firstspike deploy runs/demo/model.pt --device sim://?serial=3 --calibration chip3.fscal"""


def _print(result: Any, out: Path) -> None:
    from firstspike.runtime.calibration.search import METRICS

    s = result.summary()
    m = result.meta
    calls = m.get("device_calls", {})
    print(f"calibrated {result.device_model} serial {result.serial} (spec {result.spec_version}) in "
          f"{m.get('duration_s', float('nan')):.1f} s: {m.get('rounds')} round(s)"
          f"{' + verification' if m.get('verified') else ''}, {calls.get('configure', 0)} configurations, "
          f"{calls.get('run', 0)} runs, {calls.get('entries', 0)} entries")
    print(f"  {'parameter':<13} {'unit':<9} {'target':>7}   {'before: std, max |error|':>26}   "
          f"{'after: std, max |error|':>25}")
    for name, (unit, target) in METRICS.items():
        b, a = s["before"][name], s["after"].get(name) if s["after"] else None

        def cell(x: dict[str, Any] | None) -> str:
            if not x or x.get("std") is None:
                return "not measured"
            return f"{x['std']:.4g}, {x['max_abs_error']:.4g}"

        print(f"  {name:<13} {unit:<9} {target:>7g}   {cell(b):>26}   {cell(a):>25}")
    syn = m.get("synapses")
    if isinstance(syn, dict) and syn.get("measured"):
        residual = syn.get("residual_rel")
        spread = syn.get("spread_rel")
        print(f"  synapses: 131072 factors measured (spread {100 * (spread or float('nan')):.2f} %), standard error "
              f"{100 * (residual or float('nan')):.3f} %; the compiler divides them out of every weight")
    if s["failed_neurons"]:
        print(f"  {s['failed_neurons']} neurons could not be measured fully; they keep nominal codes where unmeasured")
    print(f"wrote {out}  (sha256 {s['sha256'][:16]}...)")


def run(args: argparse.Namespace) -> int:
    from firstspike.hal.errors import HalError
    from firstspike.runtime.calibration import calibrate
    from firstspike.runtime.calibration.plot import plot_calibration

    out = Path(args.output)
    bar = None
    device = open_device(args.uri)
    try:
        progress = None
        if not (args.no_progress or args.json):
            from tqdm import tqdm

            bar = tqdm(total=1000, desc="calibrate", unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
                       file=sys.stderr, dynamic_ncols=True, disable=None)  # None: no bar in a log

            def progress(message: str, fraction: float) -> None:
                assert bar is not None
                bar.set_description_str(message)
                bar.update(max(int(fraction * 1000) - bar.n, 0))

        result = calibrate(device, rounds=args.rounds, verify=not args.no_verify, seed=args.seed,
                           synapses=not args.neurons_only, progress=progress)
    except (HalError, ValueError, RuntimeError, OSError) as e:
        raise CommandError(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
        device.close()
    try:
        result.save(out)
        if args.plot:
            plot_calibration(result, args.plot)
    except OSError as e:
        raise CommandError(f"cannot write: {e.strerror or e}") from None
    if args.json:
        print(json.dumps({"output": str(out), "plot": args.plot, "meta": result.meta, **result.summary()}))
    else:
        _print(result, out)
        if args.plot:
            print(f"wrote {args.plot}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("uri", metavar="URI", help="the device: sim://?serial=N, grpc://HOST:PORT, serial:///dev/ttyUSB0")
    p.add_argument("-o", "--output", type=output_file((".fscal",)), required=True, metavar="FILE.fscal",
                   help="the calibration file to write")
    p.add_argument("--plot", type=figure_file, metavar="FILE.png", default=None,
                   help="also draw every neuron's parameters before and after against their targets")
    p.add_argument("--rounds", type=positive_int, default=DEFAULT_ROUNDS, metavar="N",
                   help=f"measurement rounds feeding the estimate (default {DEFAULT_ROUNDS})")
    p.add_argument("--no-verify", action="store_true", help="skip the verification round (no 'after' numbers)")
    p.add_argument("--neurons-only", action="store_true",
                   help="skip the per-synapse measurement (a version 1 file: no synapse correction)")
    p.add_argument("--seed", type=non_negative_int, default=0, metavar="S",
                   help="the device's noise seed of the first round (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)
