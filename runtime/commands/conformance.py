"""``firstspike conformance URI``: run the backend conformance suite against a device.

    firstspike conformance example:// [--reference sim://?ideal=1] [--claim agreement=exact] [--report r.json]
                                      [-k EXPRESSION] [--pytest-args="-x -v"]

Same as ``pytest --pyargs firstspike.runtime.conformance --device URI``; the exit code is pytest's (0 = conformant).
"""

from __future__ import annotations

import argparse
import shlex

from firstspike.runtime import conformance


def run(args: argparse.Namespace) -> int:
    from firstspike.runtime.commands._args import CommandError

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
    p = sub.add_parser(
        "conformance",
        help="check a device against the hal backend contract (the conformance suite)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("uri", metavar="URI", help="device to check, e.g. example:// or grpc://127.0.0.1:50051")
    p.add_argument("--reference", default=None, metavar="URI", help="reference device (default sim://?ideal=1)")
    p.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a tolerance claim of the device, e.g. agreement=exact (repeatable)",
    )
    p.add_argument("--report", default=None, metavar="FILE", help="write a JSON report to FILE")
    p.add_argument("-k", default=None, metavar="EXPRESSION", help="run only the checks matching (pytest -k)")
    p.add_argument("--pytest-args", default="", metavar="ARGS", help='more pytest arguments: --pytest-args="-x -v"')
    p.set_defaults(func=run)
