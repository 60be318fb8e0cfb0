"""``firstspike conformance URI``: run the backend conformance suite against a device.

Like ``pytest --pyargs firstspike.runtime.conformance --device URI``, isolated from the caller's pytest
configuration; the exit code is pytest's (0 = conformant), 2 when the device cannot be opened.
"""

from __future__ import annotations

import argparse
import shlex

from firstspike.runtime import conformance
from firstspike.runtime.commands._args import CommandError, output_file

SUMMARY = "check a device against the hal backend contract"
DESCRIPTION = """\
Run the backend conformance suite against a device: device info and resource model, full and diff
configuration uploads, rejection of invalid requests, result ordering and time units, the reset between
batch entries, first-spike semantics, routing and row signs, determinism where claimed, and agreement with
the reference device (the ideal simulator) within the tolerances the device claims. The device is opened
first: one that cannot be opened fails at once, in one line. Your project's pytest configuration (ini
files, conftest.py, PYTEST_ADDOPTS) does not apply. Exit code: pytest's (0 = conformant)."""
EXAMPLES = """\
examples:
  firstspike conformance sim://
  firstspike conformance grpc://127.0.0.1:50051 --report conformance.json
  firstspike conformance example:// --reference sim://?ideal=1 --claim agreement=exact -k agrees
  firstspike conformance mydev:// --pytest-args="-x -v"       # stop at the first failure, list every check"""


def run(args: argparse.Namespace) -> int:
    extra = shlex.split(args.pytest_args or "")
    if not any(a in ("-q", "-v", "--quiet", "--verbose") or a.startswith(("-qq", "-vv")) for a in extra):
        extra.insert(0, "-q")  # progress as pytest's dots per check; --pytest-args=-v lists every check instead
    if args.k:
        extra += ["-k", args.k]
    try:  # the device, claims and report are checked before pytest starts: a wrong one fails once, in one line
        conformance.check_request(args.uri, args.reference, args.claim, args.report)
    except (conformance.DeviceUnavailableError, ValueError, OSError) as e:
        raise CommandError(str(e)) from None
    print(f"firstspike conformance: checking {args.uri} against the hal backend contract (reference "
          f"{args.reference or 'sim://?ideal=1'})", flush=True)
    return conformance.run(args.uri, reference=args.reference, claims=args.claim, report=args.report, extra=extra,
                           check=False)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conformance", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("uri", metavar="URI", help="the device to check, e.g. example:// or grpc://127.0.0.1:50051")
    p.add_argument("--reference", default=None, metavar="URI",
                   help="reference device of the agreement checks (default: sim://?ideal=1, the ideal simulator)")
    p.add_argument("--claim", action="append", default=[], metavar="KEY=VALUE",
                   help="override a tolerance claim of the device, e.g. agreement=exact (repeatable; keys: "
                        "agreement, mean_abs_dt_ticks, noise_free, jitter_agreement, jitter_ticks)")
    p.add_argument("--report", type=output_file((".json",)), default=None, metavar="FILE.json",
                   help="also write a JSON report (device info, claims, per-check outcome, measurements)")
    p.add_argument("-k", default=None, metavar="EXPRESSION", help="run only the checks matching (as pytest -k)")
    p.add_argument("--pytest-args", default="", metavar="ARGS",
                   help='more pytest arguments, e.g. --pytest-args="-x -v"')
    p.set_defaults(func=run)
