"""Calibration: measure a chip through the hal ``Backend`` interface and choose every neuron's codes so that it
behaves as the compiler assumes (docs/calibration.md).

    from firstspike.runtime.calibration import calibrate, load_calibration
    result = calibrate("sim://?serial=3")            # CalibrationResult (before/after, the per-neuron transfer)
    result.save("chip3.fscal")
    result = load_calibration("chip3.fscal", device.info())   # refused on another chip or spec version
    compiled = calibrated(compiled, result)          # the network's codes are this chip's calibrated ones

Modules: :mod:`.protocol` (stimuli), :mod:`.kernels` (the analytic responses), :mod:`.fit` (fits to spike times),
:mod:`.measure` (one measurement round on a device), :mod:`.search` (transfer -> codes, errors against targets),
:mod:`.result` (the result and its file), :mod:`.calibrate` (the whole procedure), :mod:`.plot`,
:mod:`.serving` (a device server holding its chip's calibration), :mod:`.noise` (the device's published noise
model).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firstspike.compiler.artifact import CompiledNetwork
    from firstspike.hal.backend import DeviceInfo
    from firstspike.hal.neuron_calibration import NeuronCalibration

from firstspike.runtime.calibration.calibrate import DEFAULT_ROUNDS, calibrate
from firstspike.runtime.calibration.result import (
    CalibrationFileError,
    CalibrationResult,
    load_calibration,
)

__all__ = [
    "DEFAULT_ROUNDS",
    "CalibrationFileError",
    "CalibrationResult",
    "calibrate",
    "calibrated",
    "calibration_for",
    "for_device",
    "load_calibration",
    "on_device",
]


def calibrated(compiled: CompiledNetwork, calibration: CalibrationResult | NeuronCalibration | Any
               ) -> CompiledNetwork:
    """``compiled`` with every stage's neuron codes replaced by this chip's calibrated ones (weights, routes and
    the fixed weight steps unchanged, so ``Session.update_weights`` keeps working on top). ``calibration``: a
    :class:`CalibrationResult` or a hal NeuronCalibration."""
    from firstspike.compiler.calibrated import apply_calibration

    cal = calibration.calibration if isinstance(calibration, CalibrationResult) else calibration
    return apply_calibration(compiled, cal)


def calibration_for(info: DeviceInfo, path: str | Path | None = None) -> NeuronCalibration | None:
    """The calibration to apply for the device ``info`` describes: the file ``path`` if given (refused with one line,
    :class:`CalibrationFileError`, if it is another chip's or another spec version's), else the one the device
    reports (a server started with ``--calibration``), else None. Apply it with :func:`calibrated`."""
    if path is not None:
        return load_calibration(path, info).calibration
    from firstspike.runtime.calibration.serving import calibration_from_info

    return calibration_from_info(info)


def for_device(info: DeviceInfo, calibration: Any = None) -> NeuronCalibration | None:
    """What to apply on the device ``info`` describes, from what a caller passed as ``calibration``: None = the
    calibration the device reports (a server started with ``--calibration``), if any; False = none; a file path,
    a :class:`CalibrationResult` or a NeuronCalibration = that one (a file of another chip or spec version is
    refused with one line; a result or calibration object is checked when the session loads the network)."""
    from firstspike.hal.neuron_calibration import NeuronCalibration

    if calibration is False:
        return None
    if calibration is None or isinstance(calibration, str | Path):
        return calibration_for(info, calibration)
    if isinstance(calibration, CalibrationResult):
        return calibration.calibration
    if isinstance(calibration, NeuronCalibration):
        return calibration
    raise TypeError(f"calibration must be a file path, a CalibrationResult, a NeuronCalibration, None or False; "
                    f"got {type(calibration).__name__}")


def on_device(compiled: CompiledNetwork, info: DeviceInfo, calibration: Any = None) -> CompiledNetwork:
    """``compiled`` as it should run on the device ``info`` describes: calibrated with :func:`for_device`'s choice
    unless it already carries a calibration (then the session checks that it is this chip's)."""
    if compiled.calibration is not None:
        return compiled
    cal = for_device(info, calibration)
    return compiled if cal is None else calibrated(compiled, cal)
