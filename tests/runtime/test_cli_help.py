"""The command line's help: every command described with an example, consistent metavars, no reStructuredText, and
``firstspike --help`` / ``--version`` / ``COMMAND --help`` quick (no torch, numba or grpc import)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from firstspike.runtime.cli import build_parser, command_names, main, summary

#: serve's help belongs to the server's own module; serve joins these checks when its module is split
NOT_CHECKED = {"serve"}
HEAVY = ("torch", "numba", "grpc")
COUNT_OPTIONS = {"size", "batch_size", "epochs", "train_size", "eval_size", "threads", "hidden"}


def subparsers(parser: argparse.ArgumentParser,
               prefix: str = "firstspike") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(``firstspike CMD [KIND]``, parser) for every command and nested command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if prefix == "firstspike" and name in NOT_CHECKED:
                    continue
                yield f"{prefix} {name}", sub
                yield from subparsers(sub, f"{prefix} {name}")


PARSERS = dict(subparsers(build_parser()))


def test_every_command_is_walked() -> None:
    names = {p.split()[1] for p in PARSERS}
    assert names == set(command_names()) - NOT_CHECKED
    assert {"firstspike plot raster", "firstspike plot membrane"} <= set(PARSERS)


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_help_has_a_description_an_example_and_no_rst(prog: str) -> None:
    parser = PARSERS[prog]
    assert parser.description and len(parser.description.split()) >= 8, "a description of what the command does"
    assert parser.epilog and parser.epilog.startswith("examples:"), "an examples section"
    assert f"{prog} " in parser.epilog, f"an example of {prog} itself"
    text = parser.format_help()
    assert "`" not in text, "no reStructuredText backticks in help"
    for action in parser._actions:
        if action.help in (None, argparse.SUPPRESS) or isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help.strip(), f"{action.option_strings or action.dest}: empty help"


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_metavars_are_consistent(prog: str) -> None:
    for action in PARSERS[prog]._actions:
        opts = set(action.option_strings)
        if "--device" in opts or "--reference" in opts:
            assert action.metavar == "URI", f"{prog} {action.option_strings}"
        if action.dest in ("out", "mnist_dir"):
            assert action.metavar == "DIR", f"{prog} {action.option_strings}"
        if action.dest in COUNT_OPTIONS:
            assert action.metavar == "N", f"{prog} {action.option_strings}"
        if action.dest in ("data", "raster", "traces", "plot", "output", "report", "init"):
            assert isinstance(action.metavar, str) and "." in action.metavar, f"{prog} {action.option_strings}"
        if action.dest == "split":
            assert "(default: test)" in str(action.help), f"{prog} --split states its default"
        if action.dest == "seed":
            assert "default" in str(action.help), f"{prog} --seed states its default"


def test_top_level_help_lists_every_command_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in command_names():
        assert f"{name} {summary(name)}" in out, name
    # the summary listed without importing a module is the one its parser registers
    for prog in PARSERS:
        if len(prog.split()) == 2:
            module = sys.modules[f"firstspike.runtime.commands.{prog.split()[1]}"]
            assert summary(prog.split()[1]) == module.SUMMARY


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"firstspike {version('firstspike')}"


WRAPPER = """
import json, sys
from firstspike.runtime.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps([m for m in %r if m in sys.modules]), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"],
                                  *[[c, "--help"] for c in sorted(set(command_names()) - NOT_CHECKED)],
                                  ["plot", "raster", "--help"]], ids=" ".join)
def test_help_imports_no_heavy_module(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", WRAPPER % (HEAVY,), *args], capture_output=True, text=True,
                          timeout=120)
    imported = json.loads(proc.stderr.strip().splitlines()[-1])
    assert imported == [], f"firstspike {' '.join(args)} imported {imported}"
    assert proc.stdout.startswith(("usage: firstspike", "firstspike "))


def test_the_command_lines_constants_agree_with_the_library():
    """Constants the command line keeps as numbers (so that building it imports nothing heavy) are the library's."""
    from firstspike.compiler.nir_conventions import CONVENTIONS
    from firstspike.runtime.calibration import DEFAULT_ROUNDS
    from firstspike.runtime.commands import calibrate, deploy
    from firstspike.runtime.commands._args import NIR_CONVENTIONS
    from firstspike.runtime.models import TASK_NAMES
    from firstspike.runtime.training.evaluation import DEFAULT_DEVICE_SEED

    assert NIR_CONVENTIONS == CONVENTIONS and calibrate.DEFAULT_ROUNDS == DEFAULT_ROUNDS
    assert deploy.DEFAULT_SEED == DEFAULT_DEVICE_SEED and tuple(deploy.TASKS) == tuple(TASK_NAMES)
