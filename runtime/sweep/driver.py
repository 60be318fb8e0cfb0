"""The sweep itself: plan, skip finished runs, one Ray task per remaining run, collect, summarise. The only module
of firstspike that imports Ray, and only when there are runs to do."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from firstspike.runtime.sweep.options import (
    OptionSpec,
    RunSpec,
    SweepError,
    check_seeds,
    format_seeds,
    format_value,
    parse_seeds,
    plan_runs,
    task_options,
)
from firstspike.runtime.sweep.run import error_line, jsonable, read_metrics, run_one, write_json
from firstspike.runtime.sweep.table import RunRecord, SweepInterrupted, SweepResult

__all__ = ["INSTALL_HINT", "RayMissingError", "sweep"]

INSTALL_HINT = "pip install 'firstspike[cluster]'"


class RayMissingError(ImportError):
    """Ray is not installed; the message says how to install it."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayMissingError(f"sweeps run on Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _target(fn_or_task: Any) -> tuple[Any, str, dict[str, OptionSpec] | None]:
    """(what run_one runs, its name, the options it takes; None = any)."""
    from firstspike.runtime.training.presets import TaskConfig, get_task

    if isinstance(fn_or_task, str | TaskConfig):
        try:
            cfg = get_task(fn_or_task)
        except ValueError as exc:
            raise SweepError(str(exc)) from None
        return fn_or_task, cfg.name, task_options()
    if not callable(fn_or_task):
        raise SweepError(f"sweep needs a task name, a TaskConfig or a function, got {type(fn_or_task).__name__}")
    name = getattr(fn_or_task, "__qualname__", None) or type(fn_or_task).__name__
    params = inspect.signature(fn_or_task).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn_or_task, name, None
    missing = [n for n in ("seed", "out_dir") if n not in params]
    if missing:
        raise SweepError(f"the sweep function {name} must take the keyword arguments seed and out_dir "
                         f"(missing: {', '.join(missing)})")
    return fn_or_task, name, {n: OptionSpec(n, "str") for n in params if n not in ("seed", "out_dir")}


def _check_names(kind: str, names: Iterable[str], allowed: Mapping[str, OptionSpec] | None) -> None:
    for n in names:
        if allowed is not None and n not in allowed:
            raise SweepError(f"unknown {kind} {n!r}; allowed: {', '.join(sorted(allowed))}")


def _check_out(out: Path, target: str, options: Mapping[str, Any]) -> None:
    """Refuse a folder that holds a sweep of another target or with other fixed options (its finished runs would
    be taken for this sweep's)."""
    meta = {"target": target, "options": jsonable(options)}
    path = out / "sweep.json"
    try:
        out.mkdir(parents=True, exist_ok=True)
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = None
            if isinstance(old, dict) and (old.get("target"), old.get("options")) != (target, meta["options"]):
                diff = _describe_diff(old, meta)
                raise SweepError(f"{out} holds a sweep with other settings ({diff}); its finished runs would be "
                                 "mixed into this one: use another output folder")
        write_json(path, meta)
    except OSError as e:
        raise SweepError(f"cannot write the output folder {out}: {e.strerror or e}") from None


def _describe_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    if old.get("target") != new["target"]:
        return f"target {old.get('target')} there, {new['target']} here"
    a, b = old.get("options") or {}, new["options"]
    parts = [f"{k} {format_value(a.get(k))} there, {format_value(b.get(k))} here"
             for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(parts)


def _ray_init(ray: Any, address: str | None, num_cpus: int | None) -> dict[str, Any]:
    """Start a local Ray (``num_cpus``, default this machine's cores) or join ``address``; Ray's own log lines stay
    out of the terminal (errors still reach the caller as exceptions)."""
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address:
            _check_reachable(address)
            ray.init(address=address, **quiet)
        else:
            if num_cpus is None:
                num_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            # "local": a new Ray of our own, never a cluster someone else started on this machine. Ray starts its
            # workers 15 nice levels below the driver; here the runs are the work, so they keep the priority the
            # sweep was started with (on a busy machine Ray's default leaves them only the idle time)
            with _env("RAY_worker_niceness", "0"):
                ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        where = f"join the Ray cluster at {address}" if address else "start a local Ray"
        hint = ""
        if address and isinstance(exc, ConnectionError) and not os.environ.get("RAY_AUTH_MODE"):
            hint = " (a cluster with token authentication, Ray's default, needs RAY_AUTH_MODE=token and its token)"
        raise SweepError(f"cannot {where}: {error_line(exc)}{hint}") from None
    return {"address": address or "local", "cpus": _cpus(ray)}


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """``name=value`` in the environment (unless already set) while the block runs."""
    old = os.environ.get(name)
    os.environ.setdefault(name, value)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)


def _check_reachable(address: str) -> None:
    """A plain ``host:port`` that nothing listens on fails here at once (Ray itself retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # "auto", ray://... : Ray resolves these itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {address} ({exc.strerror or exc})") from None


def _keep_metrics(spec: RunSpec, outcome: Mapping[str, Any]) -> None:
    """Without storage shared with the node that ran it, a finished run's folder is not here: keep its metrics.json
    here too, so the summary and a later resume see it (its other files stay on that node)."""
    if outcome.get("status") == "ok" and outcome.get("metrics") and read_metrics(spec.out_dir) is None:
        try:
            Path(spec.out_dir).mkdir(parents=True, exist_ok=True)
            write_json(Path(spec.out_dir) / "metrics.json", outcome["metrics"])
        except OSError:
            pass


def _cpus(ray: Any) -> int | float | None:
    cpus = ray.cluster_resources().get("CPU")
    return int(cpus) if isinstance(cpus, float) and cpus.is_integer() else cpus


def sweep(
    fn_or_task: Any,
    *,
    seeds: Iterable[int] | str,
    grid: Mapping[str, Sequence[Any]] | None = None,
    out: str | Path,
    address: str | None = None,
    cpus_per_run: float = 1,
    num_cpus: int | None = None,
    on_run: Callable[[RunRecord, int, int], None] | None = None,
    plot: bool = True,
    command: str | None = None,
    **options: Any,
) -> SweepResult:
    """Run ``fn_or_task`` once per (grid point, seed) on Ray and return the table (also written to ``out``).

    ``fn_or_task``: a built-in task (``"yinyang"``, ``"mnist16"``, a ``TaskConfig``: each run is ``train_task``)
    or a function ``fn(seed=, out_dir=, **options) -> dict`` with ``test_accuracy`` (and optionally ``val_accuracy``,
    ``selected_epoch``, ``final_test_accuracy``, ``wall_seconds``). ``seeds``: integers or text (``"0-9"``).
    ``grid``: option name -> values (the runs are the product of all). ``options``: fixed for every run (for a
    task: ``train_task``'s keyword arguments, e.g. ``epochs=300``, ``device="sim://"``, a URI each run opens
    itself); an unknown name raises :class:`SweepError` listing the allowed ones. For a task, ``threads``
    defaults to ``cpus_per_run``.

    Ray: ``address`` joins that cluster (also ``$RAY_ADDRESS``); without it a local Ray is started with
    ``num_cpus`` (default: this machine's cores) and shut down at the end; a Ray already initialised in this
    process is used as it is (then ``address`` must be None). ``cpus_per_run``: CPUs Ray reserves per run.
    ``on_run(record, done, total)`` is called after each run. ``out`` must be a folder every node sees (on a
    cluster: shared storage).

    Raises :class:`SweepError` (bad input), :class:`RayMissingError` (runs to do but no Ray),
    :class:`SweepInterrupted` (Ctrl-C; finished runs and their summary are on disk).
    """
    t0 = time.perf_counter()
    if isinstance(seeds, str):
        seed_list = parse_seeds(seeds)
    else:
        given = [int(s) for s in seeds]
        seed_list = check_seeds(given, format_seeds(given))
    grid_lists = {str(k): list(v) for k, v in (grid or {}).items()}
    target, name, allowed = _target(fn_or_task)
    _check_names("grid option", grid_lists, allowed)
    _check_names("option", options, allowed)
    both = sorted(set(grid_lists) & set(options))
    if both:
        raise SweepError(f"{both[0]!r} is both fixed and in the grid; give it once")
    for k, vs in grid_lists.items():
        if not vs:
            raise SweepError(f"grid {k!r} has no values")
    uris = [*grid_lists.get("device", []), options.get("device")] if allowed and "device" in allowed else []
    for v in uris:
        if v is not None and not isinstance(v, str):
            raise SweepError(f"device must be a URI such as sim:// (each run opens its own), got {type(v).__name__}")
    if not cpus_per_run > 0:
        raise SweepError(f"cpus_per_run must be > 0, got {cpus_per_run}")
    if float(cpus_per_run).is_integer():
        cpus_per_run = int(cpus_per_run)
    fixed = dict(options)
    if allowed is not None and "threads" in allowed and "threads" not in grid_lists and "threads" not in fixed:
        fixed["threads"] = max(1, int(cpus_per_run))
    out_dir = Path(out).expanduser().resolve()
    specs = plan_runs(out_dir, seed_list, grid_lists)
    _check_out(out_dir, name, fixed)

    records: dict[str, RunRecord] = {}
    for s in specs:
        m = read_metrics(s.out_dir)
        if m is not None:
            records[s.rel] = RunRecord.from_outcome(s, {"status": "ok", "metrics": m,
                                                        "wall_seconds": m.get("wall_seconds"), "reused": True})
    result = SweepResult(target=name, out=out_dir, seeds=seed_list, grid=grid_lists, options=fixed, runs=[],
                         command=command)

    def snapshot(final: bool, interrupted: bool = False) -> SweepResult:
        result.runs = [records.get(s.rel) or RunRecord(s.seed, dict(s.point), s.rel, "not run") for s in specs]
        result.wall_seconds = time.perf_counter() - t0
        result.interrupted = interrupted
        result.write(plot=plot and final)
        return result

    pending = [s for s in specs if s.rel not in records]
    done = len(records)
    if not pending:
        return snapshot(final=True)

    ray = _import_ray()
    started = not ray.is_initialized()
    if not started and address is not None:
        raise SweepError(f"Ray is already initialised in this process, so it cannot join {address}: call "
                         "ray.shutdown() first, or leave address out to use that Ray")
    if started:
        result.ray = _ray_init(ray, address, num_cpus)
        if result.ray["address"] == "local" and cpus_per_run > (result.ray["cpus"] or 0):
            ray.shutdown()
            raise SweepError(f"cpus_per_run {cpus_per_run} is more than the local Ray's {result.ray['cpus']} CPUs")
    else:
        result.ray = {"address": "existing", "cpus": _cpus(ray)}
    result.ray["cpus_per_run"] = cpus_per_run
    try:
        # no retries: a run that kills its worker (out of memory, a crash) is reported, not repeated
        remote = ray.remote(num_cpus=cpus_per_run, max_retries=0)(run_one)
        by_ref: dict[Any, RunSpec] = {}
        waiting: list[Any] = []
        try:
            target_ref = ray.put(target)
            for s in pending:
                ref = remote.remote(target_ref, s, fixed)
                by_ref[ref] = s
                waiting.append(ref)
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                for ref in ready:
                    spec = by_ref[ref]
                    try:
                        outcome = ray.get(ref)
                    except Exception as exc:  # the task never returned: its worker died or Ray failed it
                        outcome = {"status": "error", "error": error_line(exc)}
                    _keep_metrics(spec, outcome)
                    record = RunRecord.from_outcome(spec, outcome)
                    records[spec.rel] = record
                    done += 1
                    snapshot(final=False)
                    if on_run is not None:
                        on_run(record, done, len(specs))
        except KeyboardInterrupt:
            for ref in waiting:
                ray.cancel(ref, force=True)
            with contextlib.suppress(KeyboardInterrupt):  # cancelling is asynchronous: let it end (a 2nd Ctrl-C skips)
                ray.wait(waiting, num_returns=len(waiting), timeout=30)
            for spec in pending:  # a run may have written its metrics before its result came back
                m = read_metrics(spec.out_dir) if spec.rel not in records else None
                if m is not None:
                    records[spec.rel] = RunRecord.from_outcome(spec, {"status": "ok", "metrics": m,
                                                                      "wall_seconds": m.get("wall_seconds")})
            raise SweepInterrupted(snapshot(final=True, interrupted=True)) from None
    finally:
        if started:
            ray.shutdown()
    return snapshot(final=True)
