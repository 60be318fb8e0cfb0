"""One run of a sweep, plain Python: what each Ray task executes (and what tests call directly)."""

from __future__ import annotations

import contextlib
import json
import math
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from firstspike.runtime.sweep.options import RunSpec

__all__ = ["error_line", "jsonable", "read_metrics", "run_one", "write_json"]


def read_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` if it is complete (a JSON object with ``test_accuracy``: a number, or null for
    one that could not be measured), else None. A run with complete metrics is finished: a sweep never runs it
    again."""
    try:
        data = json.loads((Path(run_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    acc = data.get("test_accuracy", False)
    if isinstance(acc, bool) or not (acc is None or isinstance(acc, int | float)):
        return None
    return data


def error_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line (at most 300 characters), as the table shows it."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    # Ray's task errors carry the worker's traceback; its last line is the exception itself
    text = lines[-1] if len(lines) > 1 else (lines[0] if lines else "")
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def run_one(target: Any, spec: RunSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """Run one (grid point, seed) of a sweep in this process and return ``{"status", "metrics", "error",
    "wall_seconds", "reused"}``; never raises for a failing run (the error is returned and its traceback written
    to ``error.txt``).

    ``target``: a task name or ``TaskConfig`` (runs ``train_task`` with ``device`` opened from its URI here, so
    every run has its own device) or a function called as ``fn(seed=, out_dir=, **options, **grid values)``
    returning a dict with ``test_accuracy`` (written to ``metrics.json`` if the function did not write one).
    """
    run_dir = Path(spec.out_dir)
    done = read_metrics(run_dir)
    if done is not None:
        return {"status": "ok", "metrics": done, "error": None, "wall_seconds": done.get("wall_seconds"),
                "reused": True}
    kwargs = {**options, **dict(spec.point)}
    t0 = time.perf_counter()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").unlink(missing_ok=True)
        with open(run_dir / "log.txt", "a") as log_file:
            def log(msg: str) -> None:
                log_file.write(msg + "\n")
                log_file.flush()

            if callable(target):
                metrics = target(seed=spec.seed, out_dir=str(run_dir), **kwargs)
                if not isinstance(metrics, Mapping) or "test_accuracy" not in metrics:
                    raise TypeError("the sweep function must return a dict with 'test_accuracy', got "
                                    f"{type(metrics).__name__}")
                metrics = dict(metrics)
            else:
                metrics = _train(target, spec, kwargs, log)
        wall = time.perf_counter() - t0
        if read_metrics(run_dir) is None:
            metrics.setdefault("wall_seconds", wall)
            write_json(run_dir / "metrics.json", metrics)
        return {"status": "ok", "metrics": metrics, "error": None, "wall_seconds": metrics.get("wall_seconds", wall),
                "reused": False}
    except Exception as exc:
        wall = time.perf_counter() - t0
        with contextlib.suppress(OSError):
            (run_dir / "error.txt").write_text(traceback.format_exc())
        return {"status": "error", "metrics": None, "error": error_line(exc), "wall_seconds": wall, "reused": False}


def _train(task: Any, spec: RunSpec, kwargs: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from firstspike.runtime.training.tasks import train_task

    uri = kwargs.pop("device", None)
    device = None
    if uri is not None:
        from firstspike.runtime.devices import open as open_device

        device = open_device(uri)
    try:
        return train_task(task, device=device, device_uri=uri, seed=spec.seed, out_dir=spec.out_dir,
                          progress=False, log=log, **kwargs)
    finally:
        if device is not None:
            device.close()


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(data), indent=2) + "\n")
    tmp.replace(path)  # whole or not at all: an interrupted write never leaves a half file


def jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, str | int | bool):
        return x
    return str(x)
