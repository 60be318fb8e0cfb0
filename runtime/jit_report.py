"""Say so on stderr when firstspike's numba kernels are being compiled (a cold numba cache), with live progress.

numba compiles a kernel on its first call unless its on-disk cache has it; for the simulator that is tens of seconds
once per machine (and again after a numba upgrade or an edit of the kernels). :func:`install` makes every command say
so at once instead of going silent: a header line ("compiling the simulator's kernels once (about N s on this
machine); cached for later runs in DIR"), then a live bar on a terminal (elapsed seconds against the estimate, the
kernel being compiled) or, when stderr is not a terminal (CI logs), a line per compiled kernel and a line at least
every :data:`HEARTBEAT_S` seconds, and a summary line when done. Only stderr is written: stdout stays the command's
(pure JSON with ``--json``).

It listens to numba's ``numba:compile`` events, which fire only on a cache miss; :func:`install` does not import
numba itself (a command that never runs a kernel pays nothing), it registers the listener once numba is imported.
The estimate is what the same command's compilation took last time on this machine (kept in the cache directory,
:data:`TIMES_FILE`), else :data:`DEFAULT_ESTIMATE_S`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

#: seconds of a first compilation per command, measured on a 2-core machine with an empty cache (docs/results.md,
#: "Cold start"); replaced by this machine's own figure after its first compilation
DEFAULT_ESTIMATE_S = {"deploy": 25.0, "eval": 25.0, "train": 40.0, "serve": 25.0, "warmup": 60.0}
FALLBACK_ESTIMATE_S = 30.0
#: the longest a non-terminal stderr goes without a line while kernels compile
HEARTBEAT_S = 1.5
#: the kept compile times (seconds per command), in the numba cache directory
TIMES_FILE = "firstspike-compile-times.json"
#: how often the bar is redrawn / the heartbeat checked
TICK_S = 0.25
#: a compilation "phase" ends when no kernel has compiled for this long (one call compiles several kernels in turn)
IDLE_END_S = 0.3

_installed: _Reporter | None = None


def _ours(dispatcher: Any) -> str | None:
    """The name of ``dispatcher``'s function if it is one of firstspike's kernels (not a helper lambda numba
    compiles for an overload), else None."""
    func = getattr(dispatcher, "py_func", None)
    module = getattr(func, "__module__", "") or ""
    name = getattr(func, "__name__", "") or ""
    return name if module.startswith("firstspike.") and not name.startswith("<") else None


def _kind(module: str) -> str:
    return "simulator's" if ".sim_device." in module else "training"


class _Reporter:
    """The numba event listener (duck-typed: numba calls ``notify(event)``; see :func:`_register`)."""

    def __init__(self, command: str, stream: IO[str], bar: bool) -> None:
        self.command = command
        self.stream = stream
        self.bar_enabled = bar
        self.lock = threading.Lock()
        self.phase_t0 = 0.0
        self.last_end = 0.0
        self.last_line = 0.0
        self.kernels = 0
        self.phases = 0
        self.total_s = 0.0  # compile seconds of the phases so far
        self.compiling: list[str] = []  # the kernels being compiled, outermost first
        self.cache_dir = ""
        self.estimate = FALLBACK_ESTIMATE_S
        self.active = False
        self.bar: Any = None
        self.ticker: threading.Thread | None = None

    # ---- numba event callbacks -------------------------------------------------------------------------------
    def on_start(self, dispatcher: Any) -> None:
        name = _ours(dispatcher)
        if name is None:
            return
        with self.lock:
            self.compiling.append(name)
            if not self.active:
                self._begin(dispatcher, dispatcher.py_func.__module__)

    def on_end(self, dispatcher: Any) -> None:
        name = _ours(dispatcher)
        if name is None or not self.active:
            return
        with self.lock:
            if name in self.compiling:
                self.compiling.remove(name)
            self.kernels += 1
            self.last_end = time.monotonic()
            if self.bar is None:
                self._line(f"  kernel {self.kernels} compiled: {name} ({self.last_end - self.phase_t0:.1f} s so far)")

    # ---- phases ----------------------------------------------------------------------------------------------
    def _begin(self, dispatcher: Any, module: str) -> None:
        self.active = True
        self.kernels = 0
        self.phase_t0 = self.last_end = time.monotonic()
        cache = getattr(dispatcher, "_cache", None)
        self.cache_dir = str(getattr(cache, "_cache_path", "") or "")
        self.phases += 1
        if self.phases == 1:
            self.estimate = self._estimate()
            self._line(f"compiling the {_kind(module)} kernels once (about {self.estimate:.0f} s on this machine); "
                       f"cached for later runs in {self.cache_dir or 'the numba cache'}")
        else:  # a later phase of the same process: what is left of the estimate
            self.estimate = max(self.estimate - self.total_s, 5.0)
            self._line(f"compiling more of the {_kind(module)} kernels once (about {self.estimate:.0f} s)")
        if self.bar_enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=round(self.estimate), desc="compiling", unit="s", file=self.stream, leave=False,
                            bar_format="{desc}: {bar} {n:.0f}/~{total:.0f} s {postfix}", dynamic_ncols=True)
        if self.ticker is None or not self.ticker.is_alive():
            self.ticker = threading.Thread(target=self._tick, name="firstspike-jit-report", daemon=True)
            self.ticker.start()

    def _tick(self) -> None:
        while True:
            time.sleep(TICK_S)
            with self.lock:
                if not self.active:
                    return
                now = time.monotonic()
                if not self.compiling and now - self.last_end > IDLE_END_S:
                    self._finish(now)
                    return
                elapsed = now - self.phase_t0
                if self.bar is not None:
                    self.bar.n = round(elapsed)
                    self.bar.set_postfix_str(f"kernel {self.kernels + 1}: {self._current()}", refresh=False)
                    self.bar.refresh()
                elif now - self.last_line >= HEARTBEAT_S:
                    self._line(f"  compiling {self._current()} ({elapsed:.0f} s so far)")

    def _current(self) -> str:
        return self.compiling[-1] if self.compiling else "..."

    def _finish(self, now: float) -> None:
        took = self.last_end - self.phase_t0
        self.total_s += took
        self.active = False
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._line(f"compiled {self.kernels} kernels in {took:.1f} s; later runs load them from the cache")
        self._save(self.total_s)

    def flush(self) -> None:
        """End a phase still open (at exit): print its summary now."""
        with self.lock:
            if self.active:
                self._finish(time.monotonic())

    def _line(self, text: str) -> None:
        self.last_line = time.monotonic()
        try:
            if self.bar is not None:
                self.bar.write(text, file=self.stream)
            else:
                print(text, file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed stderr must not break the command
            pass

    # ---- the kept estimate -----------------------------------------------------------------------------------
    def _times_path(self) -> Path | None:
        return Path(self.cache_dir) / TIMES_FILE if self.cache_dir else None

    def _estimate(self) -> float:
        path = self._times_path()
        try:
            if path is not None and path.is_file():
                kept = json.loads(path.read_text())
                if isinstance(kept.get(self.command), (int, float)):
                    return float(kept[self.command])
        except (OSError, ValueError, AttributeError):
            pass
        return DEFAULT_ESTIMATE_S.get(self.command, FALLBACK_ESTIMATE_S)

    def _save(self, took: float) -> None:
        path = self._times_path()
        if path is None:
            return
        try:
            kept = json.loads(path.read_text()) if path.is_file() else {}
            if not isinstance(kept, dict):
                kept = {}
            kept[self.command] = round(took, 1)  # all phases of this process so far
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(kept))
            tmp.replace(path)
        except (OSError, ValueError, TypeError):
            pass


def _register(reporter: _Reporter) -> None:
    """Attach ``reporter`` to numba's compile events (numba is imported by now)."""
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev: Any) -> None:
            reporter.on_start(ev.data["dispatcher"])

        def on_end(self, ev: Any) -> None:
            reporter.on_end(ev.data["dispatcher"])

    event.register("numba:compile", _Listener())


class _AfterNumbaImport(importlib.abc.MetaPathFinder):
    """Registers the reporter right after ``import numba`` completes, whoever imports it."""

    def __init__(self, reporter: _Reporter) -> None:
        self.reporter = reporter

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "numba":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            _register(self.reporter)

        loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def install(command: str, *, stream: IO[str] | None = None, bar: bool | None = None) -> None:
    """Report numba compilations of firstspike's kernels on ``stream`` (default stderr) from now on in this process.
    ``command`` names the estimate to use and keep; ``bar``: a live bar (default: when ``stream`` is a terminal),
    else lines. Idempotent."""
    global _installed
    if _installed is not None:
        return
    out = stream if stream is not None else sys.stderr
    if bar is None:
        bar = bool(getattr(out, "isatty", lambda: False)())
    _installed = _Reporter(command, out, bar)
    import atexit

    atexit.register(_installed.flush)
    if "numba" in sys.modules:
        _register(_installed)
    else:
        sys.meta_path.insert(0, _AfterNumbaImport(_installed))
