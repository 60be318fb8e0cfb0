"""The ``firstspike`` command line.

Each subcommand lives in its own module under ``runtime/commands/`` and exposes ``SUMMARY`` (its one-line summary,
a plain string constant) and ``register(subparsers) -> None``; ``register`` adds a parser and sets ``func`` (a
callable taking the parsed ``argparse.Namespace`` and returning an exit code). Adding a command = adding one file.

Only the module of the command being run is imported: ``firstspike --help`` reads every module's ``SUMMARY`` from its
source without importing it, so listing the commands costs no torch, numba or grpc import (command modules import
those inside ``run``).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import pkgutil
import sys
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from firstspike.runtime import commands
from firstspike.runtime.commands._args import CommandError

DESCRIPTION = """\
firstspike: exact time-to-first-spike learning, a device HAL and drivers for a BrainScaleS-2-like
neuromorphic chip. Train spiking networks (in software or with a device in the loop), compile them for
the chip, run them on a device (the simulated chip sim://, a device server grpc://HOST:PORT, a board on
serial://...), serve a device, and check a backend against the hardware contract."""
EXAMPLES = """\
examples:
  firstspike train yinyang --device sim:// --epochs 200 --out runs/demo   # train with the chip in the loop
  firstspike deploy runs/demo/model.pt --device sim://                    # accuracy, latency, energy
  firstspike plot raster runs/demo/model.pt --device sim:// -o raster.png
  firstspike COMMAND --help                                               # the options of one command"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong and where the allowed values are described."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Version(argparse.Action):
    """``--version``: the installed package version (looked up only when asked for)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from firstspike.runtime.commands._args import package_version

        print(f"firstspike {package_version()}")
        parser.exit(0)


def _formatter(prog: str) -> argparse.HelpFormatter:
    # room for the longest command name next to its summary
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=22, width=100)


def command_names() -> list[str]:
    """The subcommands: one module each in ``firstspike.runtime.commands`` (names not starting with ``_``)."""
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


@cache
def summary(name: str) -> str:
    """A command's one-line summary, read from its module's source (``SUMMARY = "..."``, else the first line of the
    module docstring) without importing the module."""
    path = Path(commands.__path__[0]) / f"{name}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SUMMARY" for t in node.targets)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    first = (ast.get_docstring(tree) or name).strip().splitlines()[0]
    return first.split("``: ", 1)[-1].replace("``", "").rstrip(".")


def build_parser(only: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser. Commands in ``only`` (default: all) are fully registered (their module is imported);
    the others are listed with their summary, without options."""
    names = command_names()
    full = set(names if only is None else only)
    parser = Parser(prog="firstspike", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=_formatter)
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    for name in names:
        if name in full:
            importlib.import_module(f"firstspike.runtime.commands.{name}").register(sub)
        else:
            sub.add_parser(name, help=summary(name), add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``firstspike`` console script; returns the process exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    # the top-level parser has no option that takes a value, so the first word that is not an option is the command
    command = next((a for a in args_in if not a.startswith("-")), None)
    parser = build_parser([command] if command in command_names() else [])
    args = parser.parse_args(args_in)
    # once per process, for every command: the simulator's and the TTFS kernels' large temporaries are then
    # reused instead of page-faulted anew (firstspike.runtime.allocator.tune_malloc)
    from firstspike.runtime.allocator import tune_malloc

    tune_malloc()
    # a cold numba cache: say so on stderr while kernels compile, instead of a long silence
    from firstspike.runtime.jit_report import install

    install(args.command)
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
