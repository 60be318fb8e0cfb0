"""Seed studies and hyperparameter grids on Ray: one run per (grid point, seed), the table the field reports.

    result = fs.sweep("yinyang", seeds=range(10), grid={"hidden": [60, 120]}, epochs=300, out="runs/yy")
    print(result.markdown())

Each run is :func:`~firstspike.runtime.training.tasks.train_task` (or your function) in its own Ray task with one
CPU (``cpus_per_run``): a local Ray on this machine's cores, or an existing cluster joined unchanged
(``address``). The layout of ``out``:

* ``out/hidden=60/seed=3/``: one run's usual files (``metrics.json``, ``model.pt``, ``training.png``; with a device
  ``network.fsn``) plus ``log.txt`` (its log lines) and, for a run that failed, ``error.txt`` (the traceback);
* ``out/summary.json``, ``out/summary.md`` (per run: seed, grid values, test accuracy, validation-selected epoch,
  wall time, status; per grid point: mean +- std, min and max over seeds), ``out/summary.png`` (the plot);
* ``out/sweep.json``: the target and the fixed options; a later sweep into ``out`` with other ones is refused.

A run whose ``metrics.json`` is complete is finished and never run again (so re-running an interrupted sweep runs
only what is missing); a run that fails is recorded with its error and does not stop the others; Ctrl-C cancels
the remaining runs and leaves the finished ones and the summary of them on disk. Ray is imported here only, and
only when there are runs to do (``pip install 'firstspike[cluster]'``).
"""

from firstspike.runtime.sweep.driver import INSTALL_HINT, RayMissingError, sweep
from firstspike.runtime.sweep.options import (
    OptionSpec,
    RunSpec,
    SweepError,
    format_seeds,
    format_value,
    parse_grid_arg,
    parse_seeds,
    plan_runs,
    task_options,
)
from firstspike.runtime.sweep.run import read_metrics, run_one
from firstspike.runtime.sweep.table import (
    PointSummary,
    RunRecord,
    Stats,
    SweepInterrupted,
    SweepResult,
    plot_sweep,
    point_label,
)

__all__ = [
    "INSTALL_HINT",
    "OptionSpec",
    "PointSummary",
    "RayMissingError",
    "RunRecord",
    "RunSpec",
    "Stats",
    "SweepError",
    "SweepInterrupted",
    "SweepResult",
    "format_seeds",
    "format_value",
    "parse_grid_arg",
    "parse_seeds",
    "plan_runs",
    "plot_sweep",
    "point_label",
    "read_metrics",
    "run_one",
    "sweep",
    "task_options",
]
