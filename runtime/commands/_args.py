"""What the command modules share: argument types (each says what is allowed when a value is refused), the one
error type a command raises for bad input, and opening a device with the one-line message every command prints.

Nothing here imports torch, numba or grpc: building the command line stays cheap.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firstspike.hal.backend import Backend

#: file types matplotlib writes with the Agg backend that a user is likely to ask for
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


class CommandError(Exception):
    """Bad input or an unusable resource, found by a command: ``firstspike CMD: <message>``, exit code 2."""


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    n = _integer(text, "a positive integer")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {n}")
    return n


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, indices)."""
    n = _integer(text, "an integer >= 0")
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {n}")
    return n


def _real(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0."""
    v = _real(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return v


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    v = _real(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return v


def open_fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a decay per step)."""
    v = _real(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), e.g. 0.99, got {text}")
    return v


def int_list(text: str) -> list[int]:
    """Comma-separated integers >= 0, e.g. ``0,1,120`` (sample indices, neuron ids)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,120, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, e.g. 0,1,120, got {text!r}")
    negative = [v for v in values if v < 0]
    if negative:
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {negative[0]}")
    return values


def output_file(suffixes: Sequence[str]) -> Callable[[str], str]:
    """An argument type for a file the command will write: its suffix is one of ``suffixes`` and its folder exists
    and is writable, checked before any work starts (so a long run never fails at its last step)."""
    allowed = ", ".join(suffixes)

    def check(text: str) -> str:
        if not text.lower().endswith(tuple(suffixes)):
            raise argparse.ArgumentTypeError(f"{text!r}: expected a file name ending in {allowed}")
        folder = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(folder):
            raise argparse.ArgumentTypeError(f"cannot write {text}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot write {text}: folder {folder} is not writable")
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"cannot write {text}: it is a folder")
        return text

    check.__name__ = "file"  # argparse names the type in some messages
    return check


#: the NIR readings of firstspike.compiler.nir_conventions.CONVENTIONS, here so that building the command line
#: imports no numpy (a test checks the two are the same)
NIR_CONVENTIONS = ("nir", "snntorch", "rockpool", "norse")


def nir_convention(text: str) -> str:
    """``--nir-convention``: one of :data:`NIR_CONVENTIONS` (case and blanks ignored)."""
    name = text.strip().lower()
    if name not in NIR_CONVENTIONS:
        raise argparse.ArgumentTypeError(f"unknown NIR convention {text!r}; choose one of {', '.join(NIR_CONVENTIONS)}")
    return name


def figure_file(text: str) -> str:
    """A picture the command will write (.png, .pdf, .svg, .jpg)."""
    return output_file(FIGURE_SUFFIXES)(text)


def package_version() -> str:
    """The installed firstspike version (``unknown (not installed)`` in a source tree that was never installed)."""
    from importlib import metadata

    try:
        return metadata.version("firstspike")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def open_device(uri: str | None) -> Backend:
    """Open a device by URI (None: ``$FIRSTSPIKE_DEVICE`` or ``sim://``); an unknown, broken or unreachable
    device raises :class:`CommandError` ``cannot open device 'URI': <reason>``, the line every command prints."""
    from firstspike.hal.errors import HalError
    from firstspike.runtime.devices import default_uri
    from firstspike.runtime.devices import open as open_uri

    name = default_uri() if uri is None else uri
    try:
        return open_uri(name)
    except (HalError, ValueError, OSError, LookupError) as e:
        raise CommandError(device_error(name, e)) from None


def device_error(uri: str, error: BaseException) -> str:
    """The one line for a device that cannot be opened."""
    return f"cannot open device {uri!r}: {error}"
