"""A device that holds its chip's calibration (``firstspike serve --calibration FILE``).

:class:`CalibratedDevice` wraps any Backend and passes every call through; its ``info().extra["calibration"]``
reports the calibration: the chip identity, the SHA-256 of the calibration data, the summary of its verification,
and the data itself (base64 of the hal ``NeuronCalibration`` bytes: ~44 kB, ~390 kB with per-synapse factors), so
that a client of a device server can apply the server's calibration (:func:`calibration_from_info`) without holding
the file. The device's configs are not rewritten: a client applies the calibration to what it compiles
(``runtime.calibration.calibrated``), once.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import ConfigDecodeError
from firstspike.hal.events import InputSpikes
from firstspike.hal.neuron_calibration import NeuronCalibration
from firstspike.runtime.calibration.result import (
    CalibrationFileError,
    CalibrationResult,
    load_calibration,
    same_bits_as,
)

__all__ = ["INFO_KEY", "CalibratedDevice", "attach_calibration", "calibration_from_info"]

#: the ``DeviceInfo.extra`` key of a device's calibration
INFO_KEY = "calibration"


class CalibratedDevice(Backend):
    """``backend`` together with the calibration ``result`` of its chip (refused if it is another chip's)."""

    def __init__(self, backend: Backend, result: CalibrationResult) -> None:
        info = backend.info()
        result.check_device(info)
        self._backend = backend
        self.result = result
        self.scheme = backend.scheme
        data = result.calibration.to_bytes()
        summary = result.summary()
        self._extra = {
            **result.calibration.identity,
            "verified": bool(result.after),
            "after": summary["after"],
            "failed_neurons": summary["failed_neurons"],
            "created_utc": result.meta.get("created_utc"),
            "data": base64.b64encode(data).decode("ascii"),
        }

    @property
    def inner(self) -> Backend:
        """The wrapped device."""
        return self._backend

    def info(self) -> DeviceInfo:
        info = self._backend.info()
        return replace(info, extra={**info.extra, INFO_KEY: self._extra})

    def configure(self, config: ChipConfig | ConfigDiff) -> None:
        self._backend.configure(config)

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        return self._backend.run(inputs, options)

    def close(self) -> None:
        self._backend.close()


def attach_calibration(backend: Backend, path: str | Path) -> CalibratedDevice:
    """Load the calibration file ``path`` for ``backend``'s chip (refused with one line if it is another chip's or
    another spec version's: :class:`CalibrationFileError`) and wrap the backend with it."""
    return CalibratedDevice(backend, load_calibration(path, backend.info()))


def calibration_from_info(info: DeviceInfo) -> NeuronCalibration | None:
    """The calibration a device reports in its info (None if it reports none). The data must decode, match its
    SHA-256 and belong to that device; otherwise :class:`CalibrationFileError`."""
    entry: Any = info.extra.get(INFO_KEY)
    if entry is None:
        return None
    try:
        data = base64.b64decode(entry["data"], validate=True)
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError("the calibration data does not match its SHA-256")
        cal = NeuronCalibration.from_bytes(data)
    except (KeyError, TypeError, ValueError, ConfigDecodeError) as e:
        raise CalibrationFileError(f"the device reports a malformed calibration: {e}") from None
    try:
        cal.check_device(info.model, info.serial, info.version, same_bits_as(info))
    except ValueError as e:
        raise CalibrationFileError(f"the device reports another chip's calibration: {e}") from None
    return cal
