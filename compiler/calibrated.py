"""A compiled network made for one calibrated chip: the stage configurations' neuron codes replaced by the codes
that realise the compiler's targets on that chip.

The compiler chooses codes against the *nominal* curves (:mod:`firstspike.hal.calibration`); a chip's
:class:`~firstspike.hal.neuron_calibration.NeuronCalibration` maps them per physical neuron to its own codes. Only
neuron codes change: weights, rows, routes, the per-layer weight steps ``q`` and the run-time conversions stay,
so :meth:`CompiledNetwork.update_stage_weights` (and a runtime session's weight diffs) work on top unchanged.
The result records the calibration's identity; a session refuses to load it on another chip.
"""

from __future__ import annotations

from dataclasses import replace

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
    return replace(compiled, stages=stages, calibration=calibration.identity)
