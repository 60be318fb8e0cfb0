"""Run the engine on each of its paths (lockstep forced, neuron by neuron forced, automatic) and compare them: shared
by the lockstep and the delay-line tests."""

from __future__ import annotations

import numpy as np

from firstspike.hal.backend import RunOptions
from firstspike.hal.events import InputSpikes
from firstspike.sim_device.backend import SimBackend
from firstspike.sim_device.batch import entry_thresholds, prepare_inputs
from firstspike.sim_device.engine import EngineOutput, run_engine

#: every field of an engine run's output
FIELDS = ("counts", "time", "neuron", "spikes", "synaptic_from_neurons", "synaptic_from_inputs", "membrane")


def engine_paths(dev: SimBackend, inputs: InputSpikes, opts: RunOptions, noise: bool) -> list[EngineOutput]:
    """``run_engine`` on ``dev``'s model forced onto the lockstep path, the neuron-by-neuron path and the automatic
    choice."""
    em = dev._model()
    prep = prepare_inputs(inputs, opts.duration_ticks, noise=noise, seed=opts.seed, entry_offset=opts.entry_offset)
    theta = entry_thresholds(em.model.theta, em.active, inputs.batch_size, noise=noise, seed=opts.seed,
                             entry_offset=opts.entry_offset)
    return [
        run_engine(em, inputs.batch_size, prep.batch, prep.time, prep.channel, theta, opts.duration_ticks,
                   opts.record == "first", tuple(opts.readout), opts.readout_period, lockstep=mode)
        for mode in (True, False, None)
    ]


def assert_same(runs: list[EngineOutput]) -> None:
    """Every run equals the first in every field, bit for bit."""
    for other in runs[1:]:
        for f in FIELDS:
            assert np.array_equal(getattr(runs[0], f), getattr(other, f)), f
