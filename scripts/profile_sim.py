"""Where the simulated chip's time goes, by compiled function: ``perf`` samples named through numba's object code.

``perf`` alone shows numba's JIT code as anonymous addresses. This script loads the engine's kernels from the
on-disk cache, keeps each library's object code as numba hands it over, reads its symbols with ``nm`` and maps the
sampled addresses to them (inlined helpers count for their caller). Needs Linux ``perf`` and binutils ``nm``.

    python scripts/profile_sim.py [--case mnist16|mnist16_noisy|yinyang|yinyang_noisy] [--runs 20] [--top 15]

It runs the case once to load the kernels, then ``--runs`` batches of 1000 on one numba thread under
``perf record``, and prints the share of the samples per function (all samples of the process, Python included).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: engine functions named in the report (a symbol containing one of these is reported under it)
NAMES = ("_deliver_all", "_level_entry", "_advance", "_neuron", "_run_level", "_run_group", "_run_chunk",
         "_with_spikes", "sort_nearly", "_sample", "_run_batch", "quicksort", "mergesort", "fastnoise")


def _stash_object_code() -> list:
    """Make numba keep the object code of every library it loads from its cache (it is dropped otherwise)."""
    from numba.core import codegen

    kept: list = []
    original = codegen.CPUCodeLibrary._set_compiled_object

    def keep(self, value):  # type: ignore[no-untyped-def]
        kept.append((self, value))
        return original(self, value)

    codegen.CPUCodeLibrary._set_compiled_object = keep
    return kept


def _symbols(kept: list, tmp: Path) -> list[tuple[int, int, str]]:
    """(address, size, name) of every function in the kept libraries, sorted by address."""
    out = []
    for k, (lib, obj) in enumerate(kept):
        path = tmp / f"lib{k}.o"
        path.write_bytes(obj)
        table = subprocess.run(["nm", "-S", "--defined-only", str(path)], capture_output=True, text=True).stdout
        syms = [(int(a, 16), int(s, 16), n, kind) for a, s, kind, n in
                (ln.split() for ln in table.splitlines() if len(ln.split()) == 4) if kind in "tTW"]
        # the load address: the most common (resolved address - offset) over the library's global symbols; a
        # helper linked into several libraries (NRT_incref, sort_nearly) resolves to one copy only, so the first
        # symbol alone can give another library's address (every engine sample was then "unknown")
        bases: collections.Counter[int] = collections.Counter()
        for off, _, name, kind in syms:
            if kind in "TW":
                try:
                    addr = lib.get_pointer_to_function(name)
                except Exception:  # not every symbol is exported
                    addr = 0
                if addr:
                    bases[addr - off] += 1
        base = bases.most_common(1)[0][0] if bases else None
        if base is not None:
            out += [(base + off, size, next((key for key in NAMES if key in name), name[:40]))
                    for off, size, name, _ in syms]
    return sorted(out)


def _workload(case: str, runs: int, symbols_out: Path) -> None:
    """Child process: load the kernels, write the symbol table, run the case."""
    kept = _stash_object_code()
    import numba
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from firstspike.hal.backend import RunOptions
    from firstspike.hal.events import InputSpikes
    from firstspike.sim_device.backend import SimBackend
    from firstspike.sim_device.examples import mnist16_network, mnist_like_inputs, yinyang_inputs, yinyang_network

    rng = np.random.default_rng(1234)
    realistic = case.endswith("_noisy")
    dev = SimBackend(serial=7, mismatch=realistic, noise=realistic)
    if case.startswith("mnist16"):
        net = mnist16_network(rng)
        inputs = InputSpikes.from_times(mnist_like_inputs(rng, 1000) * 752, net.input_channels)
    else:
        net = yinyang_network(rng)
        t = yinyang_inputs(rng, 1000)
        times = np.concatenate([t, t[:, 4:5]], axis=1) * 752
        channels = np.r_[net.input_channels, net.bias_channels[0], net.bias_channels[1]]
        inputs = InputSpikes.from_times(times, channels)
    dev.configure(net.config)
    opts = RunOptions(duration_ticks=6000, record="first", seed=3)
    numba.set_num_threads(1)
    dev.run(inputs, opts)
    with tempfile.TemporaryDirectory() as tmp:
        symbols_out.write_bytes(pickle.dumps(_symbols(kept, Path(tmp))))
    for _ in range(runs):
        dev.run(inputs, opts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="mnist16", choices=["mnist16", "mnist16_noisy", "yinyang", "yinyang_noisy"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workload:
        _workload(args.case, args.runs, Path(args.workload))
        return
    for tool in ("perf", "nm"):
        if shutil.which(tool) is None:
            sys.exit(f"profile_sim: '{tool}' is not installed (needs Linux perf and binutils)")
    with tempfile.TemporaryDirectory() as tmp:
        data, syms_file = Path(tmp) / "perf.data", Path(tmp) / "symbols.pkl"
        child = [sys.executable, __file__, "--case", args.case, "--runs", str(args.runs), "--workload", str(syms_file)]
        subprocess.run(["perf", "record", "-q", "-F", "2000", "-o", str(data), "--", *child], check=True)
        syms = pickle.loads(syms_file.read_bytes())
        ips = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,sym"], capture_output=True, text=True,
                             check=True).stdout
    starts = [s[0] for s in syms]
    counts: collections.Counter[str] = collections.Counter()
    for line in ips.splitlines():
        parts = line.split(None, 1)
        try:
            ip = int(parts[0], 16)
        except (IndexError, ValueError):
            continue
        k = bisect.bisect_right(starts, ip) - 1
        if k >= 0 and ip < syms[k][0] + max(syms[k][1], 1):
            counts[syms[k][2]] += 1
        else:
            counts["(other) " + (parts[1].strip()[:40] if len(parts) > 1 else "?")] += 1
    total = sum(counts.values())
    print(f"{args.case}: {total} samples, {args.runs} batches of 1000 on one thread (plus start-up)")
    for name, c in counts.most_common(args.top):
        print(f"{100 * c / total:6.2f} %  {name}")


if __name__ == "__main__":
    main()
