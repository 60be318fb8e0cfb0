"""``firstspike warmup``: compile the simulator's and the training kernels now, so later commands start at once."""

from __future__ import annotations

import argparse
import json
import time

SUMMARY = "compile the simulator's and the training kernels ahead (numba cache)"
DESCRIPTION = """\
Compile every numba kernel firstspike runs (the simulated chip's engine with and without its lockstep
levels, its noise kernels, the exact TTFS forward and backward kernels, the in-the-loop weight writer) into
numba's on-disk cache, so that the first deploy, eval, train or serve afterwards starts without compiling.
Without it the first such command compiles what it needs (and says so). The cache is numba's: next to the
installed sources, or in NUMBA_CACHE_DIR when set. 'make install' runs this; run it again after upgrading numba."""
EXAMPLES = """\
examples:
  firstspike warmup
  NUMBA_CACHE_DIR=/cache/numba firstspike warmup --json"""


def warm_simulator() -> None:
    """Run the simulated chip on a small yin-yang network (one sample) and an MNIST16-sized one (a batch whose
    first level runs in lockstep), then change its weights as a training step does: every kernel and
    specialisation a run or an in-the-loop weight update can use is compiled or loaded."""
    import numpy as np

    from firstspike.hal.backend import RunOptions
    from firstspike.hal.events import InputSpikes
    from firstspike.sim_device.backend import SimBackend
    from firstspike.sim_device.examples import mnist16_network, mnist_like_inputs, yinyang_inputs, yinyang_network

    rng = np.random.default_rng(0)
    yy = yinyang_network(rng)
    t = yinyang_inputs(rng, 1)
    channels = np.r_[yy.input_channels, yy.bias_channels[0], yy.bias_channels[1]]
    dev = SimBackend(serial=0)
    dev.configure(yy.config)
    dev.run(InputSpikes.from_times(np.concatenate([t, t[:, 4:5]], axis=1) * 752, channels),
            RunOptions(duration_ticks=6000, record="first", seed=0))
    mn = mnist16_network(rng)
    dev.configure(mn.config)
    dev.run(InputSpikes.from_times(mnist_like_inputs(rng, 40) * 752, mn.input_channels),
            RunOptions(duration_ticks=6000, record="first", seed=0))
    step = mn.config.copy()  # an in-the-loop training step: a weight-only change patches the engine model
    step.synapses.weights[step.synapses.weights > 0] -= 1
    dev.configure(dev.config.diff(step))
    dev.close()


def warm_training() -> None:
    """One differentiable forward and backward pass of a small TTFS layer (tau_m = tau_s and 2 tau_s), and the
    weight writer of every in-the-loop training step's upload."""
    import numpy as np
    import torch

    from firstspike.compiler._weight_writer import write_layer_weights
    from firstspike.runtime.ttfs.spiketime import spike_times

    write_layer_weights(np.zeros(8, dtype=np.uint8), np.array([[0.5, -0.5]]), 0.1, None,
                        np.array([[0, 1]]), np.array([[2, 3]]))

    g = torch.Generator().manual_seed(0)
    for tau_ratio in (1, 2):
        t_in = torch.rand(8, 5, generator=g, dtype=torch.float64) * 2
        w = (torch.randn(5, 4, generator=g, dtype=torch.float64) + 1.5).requires_grad_()
        out = spike_times(t_in, w, tau_ratio)
        out[torch.isfinite(out)].sum().backward()


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    warm_simulator()
    t_sim = time.perf_counter() - t0
    warm_training()
    took = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"simulator_s": round(t_sim, 2), "training_s": round(took - t_sim, 2),
                          "total_s": round(took, 2)}))
    else:
        print(f"kernels ready in {took:.1f} s (simulator {t_sim:.1f} s, training {took - t_sim:.1f} s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("warmup", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the seconds taken as one JSON object")
    p.set_defaults(func=run)
