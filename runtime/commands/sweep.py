"""``firstspike sweep TASK``: a seed study or a grid of ``firstspike train`` runs, one Ray task per run, and the
table the field reports (per grid point: mean +- std, min and max over seeds).

    firstspike sweep yinyang --seeds 0-9 --epochs 300 --out runs/yy-seeds
    firstspike sweep yinyang --seeds 0-2 --grid hidden=30,60,120 --grid lr=0.002,0.005 --out runs/yy-grid
    firstspike sweep yinyang --seeds 0-11 --device sim:// --epochs 200 --out runs/yy-itl
    firstspike sweep yinyang --seeds 0-99 --ray-address auto --out /shared/runs/yy100     # an existing cluster

Every option of ``train_task`` can be fixed (``--epochs 300``) or swept (``--grid epochs=100,300``); the spellings
and help are those of ``firstspike train`` where it has the option. Exit status: 0 when every run finished, 1 when
some failed (the table says which and why), 2 for bad input or no Ray, 130 after Ctrl-C. This module parses and
prints; :func:`firstspike.runtime.sweep.sweep` does the work.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from typing import Any

from firstspike.runtime.commands import train as train_command

#: ``firstspike train``'s option dest -> train_task keyword where they differ (and the factor its value takes)
_TRAIN_DEST = {"init": "init_model", "max_minutes": "max_seconds"}
_SCALE = {"max_minutes": 60.0}
#: ``firstspike train`` options a sweep sets itself
_NOT_SWEPT = frozenset({"help", "seed", "out", "no_progress", "json"})


def _train_actions() -> dict[str, argparse.Action]:
    """``firstspike train``'s options by dest: a sweep takes each of them with the same flags and help (building
    them imports nothing heavy, so ``firstspike --help`` stays fast)."""
    parser = argparse.ArgumentParser(add_help=False)
    train_command.add_arguments(parser)
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in _NOT_SWEPT}


def _options() -> dict[str, Any]:
    """train_task's options (the names ``--grid`` and ``--set`` take) as OptionSpecs, with the converters and
    choices of ``firstspike train``'s option of the same name where there is one."""
    from firstspike.runtime.sweep import task_options

    by_kwarg = {_TRAIN_DEST.get(d, d): a for d, a in _train_actions().items() if d not in _SCALE}
    out = {}
    for name, spec in task_options().items():
        a = by_kwarg.get(name)
        if a is not None and callable(a.type) and a.type is not str:
            spec = replace(spec, convert=a.type)
        if a is not None and a.choices:
            spec = replace(spec, choices=tuple(a.choices))
        out[name] = spec
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``firstspike sweep``: its own, then ``firstspike train``'s (values converted in :func:`run`)."""
    parser.add_argument("task", choices=train_command.TASK_CHOICES, help="the task every run trains")
    parser.add_argument("--seeds", required=True, metavar="A-B",
                        help="seeds to run: A-B (inclusive), e.g. 0-9, or a comma list such as 0,2,5-7")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                        help="sweep a train option over these values (repeatable: the runs are the product), e.g. "
                             "hidden=30,60 or lr=0.002,0.005 or device=sim://?serial=0,sim://?serial=1; NAME is "
                             "train_task's keyword (dashes or underscores); 'none' is a value where the option "
                             "has no default")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="fix a train_task option that firstspike train has no flag for, e.g. "
                             "layer_sizes=60:3, margin_tau=8")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="the sweep's folder: DIR/NAME=V/.../seed=S/ per run, DIR/summary.{md,json,png}; "
                             "running the same command again runs only what is not finished there")
    ray = parser.add_argument_group("Ray")
    ray.add_argument("--ray-address", default=None, metavar="ADDR",
                     help="join this Ray cluster (host:port, auto, ray://host:10001; default $RAY_ADDRESS) instead "
                          "of starting a local Ray on this machine's cores; DIR must then be on storage every node "
                          "sees")
    ray.add_argument("--cpus-per-run", default="1", metavar="N",
                     help="CPUs Ray reserves per run (default 1; also the run's torch threads unless --threads)")
    ray.add_argument("--num-cpus", default=None, metavar="N",
                     help="CPUs of the local Ray (default: all of this machine's)")
    parser.add_argument("--json", action="store_true", help="print summary.json on stdout instead of the table")
    g = parser.add_argument_group("train options, fixed for every run (as in firstspike train)")
    for dest, a in _train_actions().items():
        kwargs: dict[str, Any] = {"dest": f"train_{dest}", "default": None, "help": a.help}
        if a.nargs == 0:  # a flag
            kwargs.update(action="store_const", const="true")
        else:
            kwargs["metavar"] = a.metavar or dest.upper()
        g.add_argument(*a.option_strings, **kwargs)


def _positive(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{what} must be a positive number, got {text!r}")
    return value


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _given_train_options(args: argparse.Namespace) -> list[tuple[str, argparse.Action, str]]:
    """(dest, action, text) of every ``firstspike train`` option given."""
    out = []
    for dest, a in _train_actions().items():
        text = getattr(args, f"train_{dest}", None)
        if text is not None:
            out.append((dest, a, text))
    return out


def _command(args: argparse.Namespace) -> str:
    """The command as it can be run again (for summary.md)."""
    words = ["firstspike", "sweep", args.task, "--seeds", args.seeds]
    for g in args.grid:
        words += ["--grid", g]
    for s in args.set:
        words += ["--set", s]
    for _, a, text in _given_train_options(args):
        words += [a.option_strings[0]] if a.nargs == 0 else [a.option_strings[0], text]
    for flag, value in (("--ray-address", args.ray_address), ("--num-cpus", args.num_cpus)):
        if value is not None:
            words += [flag, value]
    if args.cpus_per_run != "1":
        words += ["--cpus-per-run", args.cpus_per_run]
    return shlex.join([*words, "--out", args.out])


def _fixed_options(args: argparse.Namespace, specs: dict[str, Any]) -> dict[str, Any]:
    """The train options given as flags or ``--set NAME=VALUE``, converted; SweepError for a bad one."""
    from firstspike.runtime.sweep import SweepError, parse_grid_arg

    fixed: dict[str, Any] = {}
    for dest, a, text in _given_train_options(args):
        name = _TRAIN_DEST.get(dest, dest)
        if name not in specs:
            raise SweepError(f"{a.option_strings[0]} cannot be used in a sweep (train_task has no option {name!r})")
        try:
            value = specs[name].parse(text)
        except SweepError as exc:
            raise SweepError(f"{a.option_strings[0]}: {str(exc).partition(': ')[2]}") from None
        fixed[name] = value * _SCALE[dest] if dest in _SCALE and value is not None else value
    for text in args.set:
        name, values = parse_grid_arg(text, specs)
        if len(values) != 1:
            raise SweepError(f"--set {text!r}: one value only (sweep several with --grid)")
        if name in fixed:
            raise SweepError(f"{name} is given twice (--set and its flag)")
        fixed[name] = values[0]
    return fixed


def run(args: argparse.Namespace) -> int:
    from firstspike.runtime.sweep import (
        RayMissingError,
        RunRecord,
        SweepError,
        SweepInterrupted,
        parse_grid_arg,
        point_label,
        sweep,
    )

    def fail(msg: str, code: int = 2) -> int:
        print(f"firstspike sweep: error: {msg}", file=sys.stderr)
        return code

    specs = _options()
    try:
        cpus_per_run = _positive(args.cpus_per_run, "--cpus-per-run")
        num_cpus = None if args.num_cpus is None else int(_positive(args.num_cpus, "--num-cpus"))
        grid: dict[str, list[Any]] = {}
        for text in args.grid:
            name, values = parse_grid_arg(text, specs)
            if name in grid:
                raise SweepError(f"--grid {name} is given twice; list all its values in one --grid")
            grid[name] = values
        fixed = _fixed_options(args, specs)
    except (SweepError, ValueError) as exc:
        return fail(str(exc))

    def report(record: RunRecord, done: int, total: int) -> None:
        where = f"{point_label(record.point)} " if record.point else ""
        if record.status == "ok":
            acc = "-" if record.test_accuracy is None else f"{100 * record.test_accuracy:.2f} %"
            what = f"test {acc} (epoch {record.selected_epoch})"
        else:
            what = f"{record.status}: {record.error}"
        wall = "" if record.wall_seconds is None else f", {record.wall_seconds:.1f} s"
        print(f"[{done}/{total}] {where}seed {record.seed}: {what}{wall}", file=sys.stderr, flush=True)

    try:
        result = sweep(args.task, seeds=args.seeds, grid=grid, out=args.out, address=args.ray_address,
                       cpus_per_run=cpus_per_run, num_cpus=num_cpus, on_run=report,
                       command=_command(args), **fixed)
    except RayMissingError as exc:
        return fail(str(exc))
    except SweepError as exc:
        return fail(str(exc))
    except SweepInterrupted as stop:
        res = stop.result
        done = sum(r.status == "ok" for r in res.runs)
        print(f"firstspike sweep: interrupted; {done} of {len(res.runs)} runs finished and stay in {res.out} with "
              "summary.md of them; the same command again runs the rest", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.markdown(per_run=False), end="")
        print(f"\n-> {result.out}/summary.md (every run), summary.json, summary.png")
    if result.failed:
        print(f"firstspike sweep: {len(result.failed)} of {len(result.runs)} runs failed (their error.txt has the "
              "traceback)", file=sys.stderr)
        return 1
    return 0


SUMMARY = "seed studies and grids of train runs on Ray (local cores or a cluster); mean +- std per grid point"
DESCRIPTION = """\
Run 'firstspike train TASK' once per (grid point, seed), one Ray task each (a local Ray on this machine's
cores, or --ray-address), and write DIR/summary.md, summary.json and summary.png: per run seed, grid
values, test accuracy, validation-selected epoch, wall time, status; per grid point mean +- std, min and
max over seeds. Finished runs (complete DIR/.../metrics.json) are never run again; a run that fails is
reported and does not stop the others. Needs Ray: pip install 'firstspike[cluster]'.
Exit status: 0 all runs finished, 1 some failed, 2 bad input or no Ray, 130 interrupted."""
EXAMPLES = """\
examples:
  firstspike sweep yinyang --seeds 0-9 --epochs 300 --out runs/yy-seeds
  firstspike sweep yinyang --seeds 0-2 --grid hidden=30,60,120 --grid lr=0.002,0.005 --out runs/yy-grid
  firstspike sweep yinyang --seeds 0-11 --device sim:// --epochs 200 --out runs/yy-itl
  firstspike sweep yinyang --seeds 0-99 --ray-address auto --out /shared/runs/yy100"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sweep", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)
