"""Two versions of the simulator's engine in one process, on the same inputs, alternating: CPU time and events.

On this shared 2-core VM, separate processes of the two versions drift apart by 0.8-1.3x between rounds (other
jobs, the VM's own speed); two engines in one process, called alternately on the same prepared inputs, see the
same conditions, so their paired ratios spread far less. The other version is another checkout's engine
(``sim_device/engine.py`` with ``_kernel_args``, ``_noalias`` and ``_sorting``) loaded from a copy under names of
its own, in a directory per base tree under the temporary directory (numba caches the copy's kernels there: the
first run compiles them). The rest of ``firstspike`` (model, noise, batch preparation) comes from this tree, so the
two may differ only in those four files. Both must give the same events and counters (checked before timing).

    python scripts/ab_engine.py --base-tree /work/other-worktree [--case mnist16_noisy] [--rounds 21] [--threads 1]

Prints per case the median CPU milliseconds per ``run_engine`` call (batch 1000, 6000 ticks, record first) of
each version and the median and quartiles of the paired ratios new / base.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np
from ab_common import alternate, paired, work_dir, write_if_changed

CASES = ("mnist16", "mnist16_noisy", "yinyang", "yinyang_noisy")


#: the engine's own modules, taken from the other tree together (the kernels' argument structures, intrinsics and
#: sorting may change with the engine); everything else comes from this tree
OWN = ("_kernel_args", "_noalias", "_sorting", "engine")


def _load_base(tree: Path, into: Path) -> ModuleType:
    """The other tree's engine, its :data:`OWN` modules copied to ``into`` under names of their own (numba caches
    their kernels there) with their imports of each other renamed to match."""
    for name in OWN:
        src = tree / "sim_device" / f"{name}.py"
        if not src.is_file():
            sys.exit(f"ab_engine: {src} is missing; --base-tree must be a firstspike checkout")
        text = src.read_text()
        for other in OWN:
            text = text.replace(f"firstspike.sim_device.{other} ", f"firstspike_ab_base_{other} ")
        write_if_changed(into / f"firstspike_ab_base_{name}.py", text)
    sys.path.insert(0, str(into))
    return importlib.import_module("firstspike_ab_base_engine")


def _digest(out: object) -> str:
    h = hashlib.sha1()
    for name in ("counts", "time", "neuron", "spikes", "synaptic_from_neurons"):
        h.update(np.ascontiguousarray(getattr(out, name)).tobytes())
    return h.hexdigest()[:12]


def _call(engine: tuple[ModuleType, object], run: tuple) -> object:
    """``run_engine`` of one version (module, its engine model) on the prepared run."""
    mod, em = engine
    return mod.run_engine(em, *run)


def _cpu_time(engines: dict[str, tuple[ModuleType, object]], run: tuple, key: str) -> float:
    """CPU seconds of one ``run_engine`` call of version ``key``."""
    c0 = time.process_time()
    _call(engines[key], run)
    return time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-tree", required=True, type=Path, help="the other version's checkout (worktree)")
    ap.add_argument("--case", choices=CASES, action="append", help="default: mnist16 and mnist16_noisy")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()

    import numba

    from firstspike.hal.events import InputSpikes
    from firstspike.runtime.allocator import tune_malloc
    from firstspike.sim_device import batch as batch_mod
    from firstspike.sim_device import engine as new
    from firstspike.sim_device.analog import Mismatch
    from firstspike.sim_device.examples import mnist16_network, mnist_like_inputs, yinyang_inputs, yinyang_network
    from firstspike.sim_device.model import build_model

    base = _load_base(args.base_tree, work_dir(args.base_tree, "ab-engine"))
    tune_malloc()
    numba.set_num_threads(args.threads)
    for case in args.case or ("mnist16", "mnist16_noisy"):
        noisy = case.endswith("_noisy")
        rng = np.random.default_rng(1234)
        if case.startswith("mnist16"):
            net = mnist16_network(rng)
            inputs = InputSpikes.from_times(mnist_like_inputs(rng, args.batch) * 752, net.input_channels)
        else:
            net = yinyang_network(rng)
            t = yinyang_inputs(rng, args.batch)
            channels = np.r_[net.input_channels, net.bias_channels[0], net.bias_channels[1]]
            inputs = InputSpikes.from_times(np.concatenate([t, t[:, 4:5]], axis=1) * 752, channels)
        model = build_model(net.config, Mismatch.for_serial(7) if noisy else Mismatch.ideal())
        engines = {"base": (base, base.compile_model(model)), "new": (new, new.compile_model(model))}
        prep = batch_mod.prepare_inputs(inputs, 6000, noise=noisy, seed=3, entry_offset=0)
        theta = batch_mod.entry_thresholds(model.theta, engines["new"][1].active, args.batch, noise=noisy, seed=3,
                                           entry_offset=0)

        run = (args.batch, prep.batch, prep.time, prep.channel, theta, 6000, True)
        digests = {key: _digest(_call(engines[key], run)) for key in engines}  # also compiles or loads both
        if digests["base"] != digests["new"]:
            sys.exit(f"ab_engine: {case}: the two engines give different events ({digests})")
        cpu = alternate(partial(_cpu_time, engines, run), args.rounds)
        print(f"{case}: base {1000 * statistics.median(cpu['base']):.1f} ms, new "
              f"{1000 * statistics.median(cpu['new']):.1f} ms CPU per call; {paired(cpu)}, same events "
              f"({digests['new']})", flush=True)


if __name__ == "__main__":
    main()
