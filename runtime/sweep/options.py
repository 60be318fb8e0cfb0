"""Sweep input: seeds and option values as text, the options a task run takes, and the plan of runs (one folder
per (grid point, seed))."""

from __future__ import annotations

import argparse
import collections
import inspect
import itertools
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["OptionSpec", "RunSpec", "SweepError", "check_seeds", "format_seeds", "format_value", "parse_grid_arg",
           "parse_seeds", "plan_runs", "task_options"]

#: keyword arguments of train_task that the sweep itself sets for every run
RESERVED = frozenset({"task", "seed", "out_dir", "progress", "log", "device_uri"})
MAX_SEEDS = 100_000


class SweepError(ValueError):
    """Bad sweep input (seeds, grid, options, output folder); the message says what is wrong and what is allowed."""


_SEED_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` (inclusive), ``"3"``, ``"0,2,5-7"`` -> the seeds in that order; non-negative, no repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        m = _SEED_PART.match(part.strip())
        if m is None:
            raise SweepError(f"bad seeds {text!r}: expected A-B (inclusive), a seed, or a comma list of these, "
                             "e.g. 0-9 or 0,2,5-7 (non-negative integers)")
        a, b = int(m[1]), int(m[2]) if m[2] is not None else int(m[1])
        if b < a:
            raise SweepError(f"bad seeds {text!r}: in {part.strip()!r} the first seed is above the last")
        if len(seeds) + b - a + 1 > MAX_SEEDS:
            raise SweepError(f"bad seeds {text!r}: more than {MAX_SEEDS} seeds")
        seeds.extend(range(a, b + 1))
    return check_seeds(seeds, text)


def check_seeds(seeds: Sequence[int], text: str) -> list[int]:
    """``seeds`` as a list if it is a valid set of seeds (not empty, non-negative, no repeats), else
    :class:`SweepError` quoting ``text``."""
    if not seeds:
        raise SweepError("no seeds given: expected e.g. 0-9")
    if len(set(seeds)) != len(seeds):
        dup = min(s for s, n in collections.Counter(seeds).items() if n > 1)
        raise SweepError(f"bad seeds {text}: seed {dup} appears twice")
    if min(seeds) < 0:
        raise SweepError(f"bad seeds {text}: seeds must be non-negative")
    return list(seeds)


def format_seeds(seeds: Iterable[int]) -> str:
    """The shortest text :func:`parse_seeds` reads back: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    parts: list[str] = []
    run: list[int] = []
    for s in seeds:
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [s]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def format_value(value: Any) -> str:
    """An option value as text (tables, folder names): ``None`` -> ``none``, floats shortest round-trip, lists
    ``a:b``; :meth:`OptionSpec.parse` reads it back."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, list | tuple):
        return ":".join(format_value(v) for v in value)
    return str(value)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class OptionSpec:
    """One option a run takes (a keyword argument of ``train_task``): its name, value kind and default.

    ``kind``: ``int``, ``float``, ``bool``, ``str`` (also paths), ``ints``/``floats`` (lists, written ``a:b`` in
    text), ``device`` (a device URI: each run opens its own device). ``optional``: ``none`` is a value.
    """

    name: str
    kind: str
    default: Any = None
    optional: bool = False
    choices: tuple[Any, ...] = ()
    #: a converter that replaces the kind's own (e.g. the ``firstspike train`` option's type); may raise
    #: ValueError or argparse.ArgumentTypeError
    convert: Callable[[str], Any] | None = None

    def describe(self) -> str:
        kinds = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a text",
                 "ints": "integers joined by ':' (e.g. 120:3)", "floats": "numbers joined by ':' (e.g. 4.5:6)",
                 "device": "a device URI (e.g. sim://)"}
        what = f"one of {', '.join(self.choices)}" if self.choices else kinds[self.kind]
        return what + (" or none" if self.optional else "")

    def parse(self, text: str) -> Any:
        """``text`` -> a value of this option's kind; :class:`SweepError` (saying what is allowed) if it is not."""
        t = text.strip()
        if self.optional and t.lower() == "none":
            return None
        try:
            value: Any
            if self.convert is not None:
                value = self.convert(t)
            elif self.kind == "int":
                value = int(t)
            elif self.kind == "float":
                value = float(t)
                if not math.isfinite(value):
                    raise ValueError(t)
            elif self.kind == "bool":
                if t.lower() not in _TRUE | _FALSE:
                    raise ValueError(t)
                value = t.lower() in _TRUE
            elif self.kind in ("ints", "floats"):
                conv: Callable[[str], Any] = int if self.kind == "ints" else float
                value = [conv(v) for v in t.split(":")]
            else:
                if not t:
                    raise ValueError(t)
                value = t
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            why = f" ({exc})" if isinstance(exc, argparse.ArgumentTypeError) else ""
            raise SweepError(f"{self.name}: expected {self.describe()}, got {text!r}{why}") from None
        if self.choices and value not in self.choices:
            raise SweepError(f"{self.name}: expected {self.describe()}, got {text!r}")
        return value


def _kind_of(name: str, hint: Any) -> tuple[str, bool, tuple[Any, ...]] | None:
    """(kind, optional, choices) of a type hint this module can take from text, else None."""
    if name == "device":
        return "device", True, ()
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in args
    rest = [a for a in args if a is not type(None)]
    if not rest:
        return None
    if len(rest) == 1 and typing.get_origin(rest[0]) is typing.Literal:
        choices = typing.get_args(rest[0])
        return ("str", optional, choices) if all(isinstance(c, str) for c in choices) else None
    if str in rest or Path in rest:
        return "str", optional, ()
    if rest == [bool]:
        return "bool", optional, ()
    if rest == [int]:
        return "int", optional, ()
    if set(rest) <= {int, float}:
        return "float", optional, ()
    if len(rest) == 1 and typing.get_origin(rest[0]) in (Sequence, list, tuple, Iterable):
        inner = [a for a in typing.get_args(rest[0]) if a is not Ellipsis]
        if inner == [int]:
            return "ints", optional, ()
        if inner and set(inner) <= {int, float}:
            return "floats", optional, ()
    return None


def task_options() -> dict[str, OptionSpec]:
    """The options a sweep of a built-in task can fix or vary: every keyword argument of ``train_task`` whose type
    can be written as text, less those the sweep sets itself (seed, out_dir, progress, log, device_uri).
    ``device`` is a URI here; each run opens its own device."""
    from firstspike.runtime.training.tasks import train_task

    hints = typing.get_type_hints(train_task)
    out: dict[str, OptionSpec] = {}
    for p in inspect.signature(train_task).parameters.values():
        if p.name in RESERVED or p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        kind = _kind_of(p.name, hints.get(p.name))
        if kind is not None:
            out[p.name] = OptionSpec(p.name, kind[0], p.default, kind[1] or p.default is None, kind[2])
    return out


def _normalise_name(name: str) -> str:
    return name.strip().replace("-", "_")


def parse_grid_arg(text: str, options: Mapping[str, OptionSpec]) -> tuple[str, list[Any]]:
    """``"hidden=30,60"`` -> ``("hidden", [30, 60])``, each value parsed to the option's kind; an unknown name or a
    bad value raises :class:`SweepError` naming what is allowed."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip():
        raise SweepError(f"bad grid {text!r}: expected NAME=V1,V2,... (e.g. hidden=30,60)")
    spec = _option(_normalise_name(name), options)
    parts = values.split(",")
    if not values.strip() or any(not v.strip() for v in parts):
        raise SweepError(f"bad grid {text!r}: expected NAME=V1,V2,... with no empty value")
    return spec.name, [spec.parse(v) for v in parts]


def _option(name: str, options: Mapping[str, OptionSpec]) -> OptionSpec:
    if name not in options:
        raise SweepError(f"unknown option {name!r}; allowed: {', '.join(sorted(options))}")
    return options[name]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its seed, its grid point (name, value) pairs, its folder (absolute) and that folder
    relative to the sweep's folder."""

    seed: int
    point: tuple[tuple[str, Any], ...]
    out_dir: str
    rel: str


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def _folder_part(name: str, value: Any) -> str:
    text = _UNSAFE.sub("_", format_value(value))
    return f"{name}={text}"


def plan_runs(out: Path, seeds: Sequence[int], grid: Mapping[str, Sequence[Any]]) -> list[RunSpec]:
    """Every (seed, grid point) pair, seed by seed (so an interrupted sweep has whole seeds of every grid point),
    with its folder ``out/NAME=VALUE/.../seed=S``."""
    names = list(grid)
    points = list(itertools.product(*(list(grid[n]) for n in names)))
    runs: list[RunSpec] = []
    seen: dict[str, tuple[Any, ...]] = {}
    for seed in seeds:
        for values in points:
            rel = "/".join([*(_folder_part(n, v) for n, v in zip(names, values, strict=True)), f"seed={seed}"])
            if rel in seen and seen[rel] != (seed, *values):
                raise SweepError(f"two grid values share the folder {rel!r}: "
                                 f"{[format_value(v) for v in values]} and {[format_value(v) for v in seen[rel][1:]]}")
            if rel in seen:
                raise SweepError(f"grid values repeat: {rel!r} twice")
            seen[rel] = (seed, *values)
            runs.append(RunSpec(int(seed), tuple(zip(names, values, strict=True)), str(out / rel), rel))
    return runs
