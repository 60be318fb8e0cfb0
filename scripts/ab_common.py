"""What ``scripts/ab_engine.py`` and ``scripts/ab_ttfs_kernels.py`` share: a directory per base tree for the other
version's copied modules (numba caches their kernels there), and the alternating, paired timing of two versions in
one process."""

from __future__ import annotations

import hashlib
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def work_dir(base_tree: Path, prefix: str, given: Path | None = None) -> Path:
    """``given``, or one directory per base tree under the temporary directory (later runs load its kernels)."""
    key = hashlib.sha1(str(base_tree.resolve()).encode()).hexdigest()[:10]
    into = given or Path(tempfile.gettempdir()) / f"{prefix}-{key}"
    into.mkdir(parents=True, exist_ok=True)
    return into


def write_if_changed(dst: Path, text: str) -> None:
    """Write ``text`` to ``dst`` unless it holds it already: a rewrite would invalidate numba's cache of it."""
    if not dst.is_file() or dst.read_text() != text:
        dst.write_text(text)


def alternate(measure: Callable[[str], float], rounds: int) -> dict[str, list[float]]:
    """``measure("base")`` and ``measure("new")`` once per round each, the order flipped every round."""
    out: dict[str, list[float]] = {"base": [], "new": []}
    for r in range(rounds):
        for key in ("base", "new") if r % 2 == 0 else ("new", "base"):
            out[key].append(measure(key))
    return out


def paired(times: dict[str, list[float]]) -> str:
    """The median and quartiles of the per-round ratios new / base and the number of rounds, as the scripts print
    them."""
    ratios = [n / b for b, n in zip(times["base"], times["new"], strict=True)]
    q1, q3 = np.percentile(ratios, [25, 75])
    return (f"new/base paired median {statistics.median(ratios):.3f} (quartiles {float(q1):.3f}, {float(q3):.3f}), "
            f"{len(ratios)} rounds")
