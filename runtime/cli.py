"""The ``firstspike`` command line.

Each subcommand lives in its own module under ``runtime/commands/`` and exposes
``register(subparsers) -> None``; the module adds a parser and sets ``func`` (a callable taking the
parsed ``argparse.Namespace`` and returning an exit code). Adding a command = adding one file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from firstspike.runtime import commands
from firstspike.runtime.commands._args import CommandError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong and where the allowed values are described."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every command module found in ``firstspike.runtime.commands``."""
    parser = Parser(
        prog="firstspike",
        description="Neuromorphic HAL, device drivers and exact time-to-first-spike learning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"firstspike.runtime.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``firstspike`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # once per process, for every command: the simulator's and the TTFS kernels' large temporaries are then
    # reused instead of page-faulted anew (firstspike.runtime.allocator.tune_malloc)
    from firstspike.runtime.allocator import tune_malloc

    tune_malloc()
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        print(f"{parser.prog} {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
