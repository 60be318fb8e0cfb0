"""firstspike's network compiler: a layered TTFS network (model units) -> chip configuration(s).

    net = Network(n_inputs=4, layers=(Layer(w1, bias_time=0.9), Layer(w2, bias_time=0.9)))
    compiled = compile(net)                       # design rules -> placement -> quantisation
    compiled.save("net.fsn")                      # one versioned, deterministic file
    cfg = update_weights(compiled, new_weights)   # training fast path: only synapse weights change
    chip3 = apply_calibration(compiled, calib)    # the codes of one calibrated chip (hal NeuronCalibration)

Imports only ``hal`` (and the ``nir`` package lazily in :mod:`firstspike.compiler.nir_io`).
"""

from firstspike.compiler.artifact import COMPILER_VERSION, CompiledNetwork, LayerMap, Stage
from firstspike.compiler.calibrated import apply_calibration
from firstspike.compiler.errors import (
    ArtifactDecodeError,
    CompileError,
    DesignRuleErrors,
    DesignRuleViolation,
    IRError,
    NIRImportError,
    PlacementError,
)
from firstspike.compiler.ir import Layer, Network
from firstspike.compiler.options import CompileOptions
from firstspike.compiler.pipeline import compile, update_weights
from firstspike.compiler.readback import effective_weights
from firstspike.compiler.rules import RULES, check

__all__ = [
    "COMPILER_VERSION",
    "RULES",
    "ArtifactDecodeError",
    "CompileError",
    "CompileOptions",
    "CompiledNetwork",
    "DesignRuleErrors",
    "DesignRuleViolation",
    "IRError",
    "Layer",
    "LayerMap",
    "NIRImportError",
    "Network",
    "PlacementError",
    "Stage",
    "apply_calibration",
    "check",
    "compile",
    "effective_weights",
    "update_weights",
]
