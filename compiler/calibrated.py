"""A compiled network made for one calibrated chip: the stage configurations' neuron codes replaced by the codes
that realise the compiler's targets on that chip.

The compiler chooses codes against the *nominal* curves (:mod:`firstspike.hal.calibration`); a chip's
:class:`~firstspike.hal.neuron_calibration.NeuronCalibration` maps them per physical neuron to its own codes. Only
neuron codes change: weights, rows, routes, the per-layer weight steps ``q`` and the run-time conversions stay,
so :meth:`CompiledNetwork.update_stage_weights` (and a runtime session's weight diffs) work on top unchanged.
The result records the calibration's identity; a session refuses to load it on another chip.

A calibration with per-synapse factors also changes the weights: every layer records the factor of each weight's
excitatory and inhibitory synapse (``LayerMap.synapse_gain``), and each weight is rounded as
``d = round(|w| / (q * factor))``, so that the chip's weight ``d * q * factor`` is ``w`` to within the 6-bit
resolution despite the synapse's own mismatch. The float weights come from the artifact's source network if it
kept one, else from the compiled digital weights (``sign * d * q``: rounded twice, up to one step off).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from firstspike.compiler.artifact import CompiledNetwork
from firstspike.compiler.errors import CompileError
from firstspike.hal.neuron_calibration import NeuronCalibration

__all__ = ["apply_calibration"]


def apply_calibration(compiled: CompiledNetwork, calibration: NeuronCalibration) -> CompiledNetwork:
    """``compiled`` for the chip ``calibration`` was measured on (see the module docstring).

    Raises :class:`~firstspike.compiler.errors.CompileError` if ``compiled`` already carries a calibration (the
    codes would be corrected twice); apply to the artifact as compiled.
    """
    if not isinstance(calibration, NeuronCalibration):
        raise TypeError(f"calibration must be a hal NeuronCalibration, not {type(calibration).__name__}")
    if compiled.calibration is not None:
        c = compiled.calibration
        raise CompileError(f"the network already carries the calibration of {c['device_model']} serial "
                           f"{c['serial']}; apply a calibration to the uncalibrated artifact")
    stages = tuple(replace(s, config=calibration.apply_to_config(s.config)) for s in compiled.stages)
    out = replace(compiled, stages=stages, calibration=calibration.identity)
    if calibration.synapse is None:
        return out
    weights = compiled.source.weights if compiled.source is not None else _digital_weights(compiled)
    flat = calibration.synapse.reshape(-1)
    layers = tuple(replace(L, synapse_gain=np.stack([flat[L.synapse_indices[0]], flat[L.synapse_indices[1]]]))
                   for L in out.layers)
    out = replace(out, layers=layers)
    configs = out.update_stage_weights(weights)
    return replace(out, stages=tuple(replace(s, config=c) for s, c in zip(out.stages, configs, strict=True)))


def _digital_weights(compiled: CompiledNetwork) -> list[np.ndarray]:
    """The weights the uncalibrated artifact's configs hold, per layer (``sign * d * q``)."""
    out = []
    for L in compiled.layers:
        w = compiled.stages[L.stage].config.synapses.weights.reshape(-1)
        exc, inh = L.synapse_indices
        out.append((w[exc].astype(np.float64) - w[inh]) * L.q)
    return out
