"""The table of a sweep: per run and per grid point (mean +- std, min, max over seeds), as JSON, as the markdown
docs/results.md uses, and as a plot."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from firstspike.runtime.sweep.options import RunSpec, format_seeds, format_value
from firstspike.runtime.sweep.run import jsonable, write_json

__all__ = ["PointSummary", "RunRecord", "Stats", "SweepInterrupted", "SweepResult", "plot_sweep", "point_label"]


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


@dataclass(frozen=True)
class RunRecord:
    """One run in the table. Accuracies are fractions (0-1) of the run's test/validation set; ``test_accuracy`` is
    that of the kept (validation-selected) weights, ``final_test_accuracy`` of the last epoch's; ``wall_seconds``
    the run's wall time. ``status``: ``ok``, ``error`` (``error`` says why) or ``not run`` (interrupted first).
    ``reused``: finished by an earlier sweep, read back from its ``metrics.json``."""

    seed: int
    point: dict[str, Any]
    out_dir: str
    status: str
    test_accuracy: float | None = None
    val_accuracy: float | None = None
    final_test_accuracy: float | None = None
    selected_epoch: int | None = None
    epochs: int | None = None
    wall_seconds: float | None = None
    error: str | None = None
    reused: bool = False

    @classmethod
    def from_outcome(cls, spec: RunSpec, outcome: Mapping[str, Any]) -> RunRecord:
        m = outcome.get("metrics") or {}
        ep = m.get("selected_epoch")
        n_ep = m.get("epochs")
        return cls(seed=spec.seed, point=dict(spec.point), out_dir=spec.rel, status=str(outcome["status"]),
                   test_accuracy=_num(m.get("test_accuracy")), val_accuracy=_num(m.get("val_accuracy")),
                   final_test_accuracy=_num(m.get("final_test_accuracy")),
                   selected_epoch=int(ep) if isinstance(ep, int) else None,
                   epochs=int(n_ep) if isinstance(n_ep, int) else None,
                   wall_seconds=_num(outcome.get("wall_seconds")), error=outcome.get("error"),
                   reused=bool(outcome.get("reused", False)))


@dataclass(frozen=True)
class Stats:
    """Mean, sample standard deviation (n - 1; None below 2 values), min and max of ``n`` values."""

    n: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stats:
        xs = [v for v in values if v is not None]
        if not xs:
            return cls(0, None, None, None, None)
        return cls(len(xs), statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, min(xs), max(xs))


@dataclass(frozen=True)
class PointSummary:
    """One grid point over its seeds: how many runs finished / failed / did not run, and the statistics of the test
    accuracy (kept weights), the validation accuracy, the last epoch's test accuracy and the wall time."""

    point: dict[str, Any]
    runs: int
    ok: int
    failed: int
    not_run: int
    test: Stats
    val: Stats
    final_test: Stats
    wall_seconds: Stats


@dataclass
class SweepResult:
    """What :func:`sweep` returns (and writes to ``out/summary.json``): every run and every grid point's
    statistics over seeds."""

    target: str
    out: Path
    seeds: list[int]
    grid: dict[str, list[Any]]
    options: dict[str, Any]
    runs: list[RunRecord]
    wall_seconds: float = 0.0
    interrupted: bool = False
    command: str | None = None
    ray: dict[str, Any] = field(default_factory=dict)

    @property
    def points(self) -> list[PointSummary]:
        """Per grid point (in grid order), statistics over its seeds."""
        by_point: dict[tuple[str, ...], list[RunRecord]] = {}
        for r in self.runs:
            by_point.setdefault(tuple(format_value(r.point.get(n)) for n in self.grid), []).append(r)
        out = []
        for rs in by_point.values():
            ok = [r for r in rs if r.status == "ok"]
            out.append(PointSummary(
                point=dict(rs[0].point), runs=len(rs), ok=len(ok), failed=sum(r.status == "error" for r in rs),
                not_run=sum(r.status == "not run" for r in rs), test=Stats.of([r.test_accuracy for r in ok]),
                val=Stats.of([r.val_accuracy for r in ok]), final_test=Stats.of([r.final_test_accuracy for r in ok]),
                wall_seconds=Stats.of([r.wall_seconds for r in ok])))
        return out

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "error"]

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "target": self.target, "command": self.command, "out": str(self.out), "seeds": self.seeds,
            "grid": self.grid, "options": self.options, "wall_seconds": self.wall_seconds,
            "interrupted": self.interrupted, "ray": self.ray,
            "runs": [asdict(r) for r in self.runs],
            "points": [asdict(p) for p in self.points],
        })

    def markdown(self, per_run: bool = True) -> str:
        """The tables in the form docs/results.md uses (accuracies in %): per grid point, then (``per_run``) every
        run of each grid point."""
        return _markdown(self, per_run)

    def write(self, plot: bool = True) -> None:
        """``out/summary.json`` and ``out/summary.md`` (and ``out/summary.png`` with ``plot``)."""
        write_json(self.out / "summary.json", self.to_dict())
        tmp = self.out / "summary.md.tmp"
        tmp.write_text(self.markdown())
        tmp.replace(self.out / "summary.md")
        if plot:
            plot_sweep(self, self.out / "summary.png")


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: the remaining runs were cancelled; ``result`` holds what finished (also on disk)."""

    def __init__(self, result: SweepResult) -> None:
        super().__init__("sweep interrupted")
        self.result = result


def _pct(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f} %"


def _mean_std(s: Stats, digits: int = 2) -> str:
    if s.mean is None:
        return "-"
    if s.std is None:
        return f"{100 * s.mean:.{digits}f} %"
    return f"{100 * s.mean:.{digits}f} +- {100 * s.std:.{digits}f} %"


def _run_digits(runs: Sequence[RunRecord]) -> int:
    """1 decimal when every accuracy is a multiple of 0.1 % (sets of 1000 samples), else 2."""
    xs = [x for r in runs for x in (r.test_accuracy, r.val_accuracy, r.final_test_accuracy) if x is not None]
    return 1 if all(abs(1000 * x - round(1000 * x)) < 1e-6 for x in xs) else 2


def _seconds(x: float | None) -> str:
    if x is None:
        return "-"
    if x < 1:
        return f"{x:.2f} s"
    return f"{x:.1f} s" if x < 60 else f"{int(x // 60)} min {round(x % 60)} s"


def point_label(point: Mapping[str, Any]) -> str:
    """``hidden=30, lr=0.005`` (``all`` without a grid)."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in point.items()) or "all"


def _markdown(res: SweepResult, per_run: bool) -> str:
    runs, points, names = res.runs, res.points, list(res.grid)
    d = _run_digits(runs)
    epochs = {r.epochs for r in runs if r.epochs is not None}
    last = f"test acc (final epoch, {epochs.pop()})" if len(epochs) == 1 else "test acc (final epoch)"
    n_ok = sum(r.status == "ok" for r in runs)
    n_reused = sum(r.reused for r in runs)
    lines = [f"# Sweep: {res.target}, seeds {format_seeds(res.seeds)}", ""]
    if res.command:
        lines += ["    " + res.command, ""]
    fixed = ", ".join(f"{k}={format_value(v)}" for k, v in res.options.items()) or "none"
    lines += [f"Fixed options: {fixed}. Grid: "
              + (", ".join(f"{k} = {', '.join(format_value(v) for v in vs)}" for k, vs in res.grid.items()) or "none")
              + ".", "",
              f"{len(runs)} runs: {n_ok} finished"
              + (f" ({n_reused} of them by an earlier sweep, read back)" if n_reused else "")
              + f", {len(res.failed)} failed, "
              f"{sum(r.status == 'not run' for r in runs)} not run"
              + (" (interrupted)" if res.interrupted else "") + f"; wall time {_seconds(res.wall_seconds)}.", "",
              *([f"Ray: {res.ray.get('address')}, {format_value(res.ray.get('cpus'))} CPUs, "
                 f"{format_value(res.ray.get('cpus_per_run'))} per run.", ""] if res.ray else []),
              "## Per grid point", "",
              "Test accuracy of the validation-selected weights over seeds (mean +- sample std), and min / max.", ""]
    head = [*(names or ["runs"]), "finished", "**test acc mean +- std**", "min", "max", "val acc mean +- std",
            last + " mean +- std"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        cells = [format_value(p.point[n]) for n in names] or ["all"]
        lines.append("| " + " | ".join([
            *cells, f"{p.ok} of {p.runs}", f"**{_mean_std(p.test)}**", _pct(p.test.min, d), _pct(p.test.max, d),
            _mean_std(p.val), _mean_std(p.final_test)]) + " |")
    for p in points if per_run else []:
        lines += ["", f"## {point_label(p.point)}" if names else "## Runs", ""]
        head = ["seed", "selected epoch", "val acc", "**test acc (saved model)**", last, "wall time", "status"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in runs:
            if r.point != p.point:
                continue
            status = r.status if r.error is None else f"{r.status}: {r.error}".replace("|", "\\|")
            if r.reused:
                status += " (earlier sweep)"
            test = "-" if r.test_accuracy is None else f"**{_pct(r.test_accuracy, d)}**"
            lines.append(f"| {r.seed} | {'-' if r.selected_epoch is None else r.selected_epoch} | "
                         f"{_pct(r.val_accuracy, d)} | {test} | {_pct(r.final_test_accuracy, d)} | "
                         f"{_seconds(r.wall_seconds)} | {status} |")
        lines.append(f"| mean +- std | | {_mean_std(p.val)} | **{_mean_std(p.test)}** | {_mean_std(p.final_test)} | "
                     f"{_seconds(p.wall_seconds.mean)} | {p.ok} of {p.runs} |")
    return "\n".join(lines) + "\n"


def plot_sweep(res: SweepResult, path: str | Path) -> None:
    """Test accuracy per grid point: every seed as a dot, mean +- std as a bar (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = res.points
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(points) + 2), 4))
    for i, p in enumerate(points):
        accs = [100 * r.test_accuracy for r in res.runs
                if r.point == p.point and r.status == "ok" and r.test_accuracy is not None]
        # a fixed spread per seed so dots at equal accuracy stay visible
        offsets = [0.25 * ((k % 7) / 6 - 0.5) for k in range(len(accs))]
        ax.scatter([i + o for o in offsets], accs, s=18, color="tab:blue", alpha=0.7, zorder=2,
                   label="one seed" if i == 0 else None)
        if p.test.mean is not None:
            ax.errorbar([i], [100 * p.test.mean], yerr=[100 * (p.test.std or 0.0)], fmt="o", color="k", capsize=6,
                        zorder=3, label="mean +- std" if i == 0 else None)
    ax.set_xlim(-0.6, len(points) - 0.4)
    ax.set_xticks(range(len(points)))
    ax.set_xticklabels([point_label(p.point) + f"\n{p.ok} of {p.runs}" for p in points], fontsize=8)
    ax.set_ylabel("test accuracy [%]")
    ax.set_title(f"{res.target}: test accuracy over seeds {format_seeds(res.seeds)}")
    ax.grid(axis="y", alpha=0.3)
    if any(p.ok for p in points):
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
