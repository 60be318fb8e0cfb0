"""The calibration result and its file: one chip's :class:`~firstspike.hal.neuron_calibration.NeuronCalibration`
plus what was measured before and after (the evidence), in one exact, versioned, checksummed file.

File: :mod:`firstspike.hal.encoding`'s container, magic ``FSCR``, version 1 (neuron calibration only) or 2 (the
calibration carries per-synapse factors: hal NeuronCalibration version 2; the synapse measurement's summary is in
the header's ``meta.synapses``). Version 1 files load as "no synapse correction". Header: canonical JSON (format, the
chip's identity, targets and units, summary, metadata such as duration and device calls). Arrays: the
NeuronCalibration's own bytes (``calibration``, uint8; its identity and CRC inside) and one float64 (512,) array
per reported parameter, ``before.NAME`` and ``after.NAME`` (NaN where not measured). Any truncated, corrupted,
foreign or inconsistent file raises :class:`CalibrationFileError`; :func:`load_calibration` also refuses a file of
another chip or device spec version, in one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firstspike.hal import chip
from firstspike.hal.backend import DeviceInfo
from firstspike.hal.encoding import decode_arrays, encode_arrays
from firstspike.hal.errors import ConfigDecodeError
from firstspike.hal.neuron_calibration import NeuronCalibration
from firstspike.runtime.calibration.search import METRICS

__all__ = ["RESULT_FORMAT", "CalibrationFileError", "CalibrationResult", "load_calibration"]

RESULT_MAGIC = b"FSCR"
RESULT_VERSION = 1
RESULT_FORMAT = "firstspike.calibration.v1"
#: version 2: the calibration carries per-synapse factors (hal NeuronCalibration version 2)
RESULT_VERSION_SYNAPSES = 2
RESULT_FORMAT_SYNAPSES = "firstspike.calibration.v2"
_RESULT_FORMATS = {RESULT_VERSION: RESULT_FORMAT, RESULT_VERSION_SYNAPSES: RESULT_FORMAT_SYNAPSES}


class CalibrationFileError(ValueError):
    """A calibration file that cannot be used: unreadable, corrupted, or of another chip."""


def _summary_of(values: dict[str, np.ndarray]) -> dict[str, dict[str, float | None]]:
    """Per parameter: mean, std and largest deviation from the target over the measured neurons."""
    out: dict[str, dict[str, float | None]] = {}
    for name, arr in values.items():
        target = METRICS[name][1]
        a = np.asarray(arr, dtype=np.float64)
        ok = a[np.isfinite(a)]
        if ok.size == 0:
            out[name] = {"mean": None, "std": None, "max_abs_error": None, "max_rel_error": None}
            continue
        dev = ok - target
        rel = None if target == 0 else float(np.max(np.abs(dev)) / abs(target))
        out[name] = {"mean": float(ok.mean()), "std": float(ok.std()), "max_abs_error": float(np.max(np.abs(dev))),
                     "max_rel_error": rel}
    return out


def _clean(x: Any) -> Any:
    """JSON-safe copy (non-finite floats -> None)."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x



def same_bits_as(info: DeviceInfo) -> tuple[str, ...]:
    """Earlier spec versions the device says it runs bit for bit alike (``info.extra["same_bits_as"]``): a
    calibration measured under one of them holds on it. Anything malformed there counts as none."""
    value = info.extra.get("same_bits_as", ()) if isinstance(info.extra, dict) else ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        return ()
    return tuple(value)

@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """One chip's calibration and the evidence for it.

    ``calibration``: what the compiler / session apply (:func:`firstspike.compiler.apply_calibration`).
    ``before``/``after``: per parameter of :data:`~firstspike.runtime.calibration.search.METRICS` a (512,) float64
    array measured with the nominal codes and with the calibrated ones (NaN: not measured). ``failed``: (512,) bool,
    neurons with a parameter that could not be measured (they keep the nominal transfer there). ``meta``: duration,
    rounds, device calls and the like (JSON-able).
    """

    calibration: NeuronCalibration
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray]
    failed: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part in ("before", "after"):
            arrays = getattr(self, part)
            unknown = set(arrays) - set(METRICS)
            if unknown:
                raise ValueError(f"{part}: unknown parameters {sorted(unknown)}; allowed {list(METRICS)}")
            fixed = {}
            for name, a in arrays.items():
                arr = np.array(a, dtype=np.float64, copy=True)
                if arr.shape != (chip.N_NEURONS,):
                    raise ValueError(f"{part}.{name}: shape {arr.shape}; expected ({chip.N_NEURONS},)")
                arr.setflags(write=False)
                fixed[name] = arr
            object.__setattr__(self, part, fixed)
        failed = np.array(self.failed, dtype=bool, copy=True).reshape(-1)
        if failed.shape != (chip.N_NEURONS,):
            raise ValueError(f"failed: shape {failed.shape}; expected ({chip.N_NEURONS},)")
        failed.setflags(write=False)
        object.__setattr__(self, "failed", failed)

    # ---- identity -----------------------------------------------------------------------------------------
    @property
    def device_model(self) -> str:
        return self.calibration.device_model

    @property
    def serial(self) -> int:
        return self.calibration.serial

    @property
    def spec_version(self) -> str:
        return self.calibration.spec_version

    def check_device(self, info: DeviceInfo) -> None:
        """Raise :class:`CalibrationFileError` (one line) unless this result belongs to the device ``info``."""
        try:
            self.calibration.check_device(info.model, info.serial, info.version, same_bits_as(info))
        except ValueError as e:
            raise CalibrationFileError(str(e)) from None

    # ---- numbers ------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Before/after statistics per parameter (mean, std, largest error against the target) and counts."""
        return {
            "device": {"model": self.device_model, "serial": self.serial, "spec_version": self.spec_version},
            "targets": {k: {"unit": u, "target": t} for k, (u, t) in METRICS.items()},
            "before": _summary_of(self.before),
            "after": _summary_of(self.after),
            "failed_neurons": int(self.failed.sum()),
            "sha256": self.calibration.sha256(),
        }

    # ---- file ---------------------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """The file version: 2 when the calibration carries per-synapse factors, else 1 (as before they existed)."""
        return RESULT_VERSION if self.calibration.synapse is None else RESULT_VERSION_SYNAPSES

    @property
    def synapse_residual_rel(self) -> float | None:
        """The relative standard error of the measured synapse factors (RMS over all synapses): the synapses'
        mismatch that remains after correction. None without synapse factors."""
        if self.calibration.synapse is None:
            return None
        syn = self.meta.get("synapses")
        value = syn.get("residual_rel") if isinstance(syn, dict) else None
        return float(value) if isinstance(value, int | float) and math.isfinite(value) and value >= 0 else None

    def to_bytes(self) -> bytes:
        header = {"format": _RESULT_FORMATS[self.version], "device_model": self.device_model, "serial": self.serial,
                  "spec_version": self.spec_version, "meta": _clean(self.meta),
                  "summary": _clean(self.summary())}
        arrays: dict[str, np.ndarray] = {"calibration": np.frombuffer(self.calibration.to_bytes(), dtype=np.uint8),
                                         "failed": self.failed}
        for part in ("before", "after"):
            for name in METRICS:
                if name in getattr(self, part):
                    arrays[f"{part}.{name}"] = getattr(self, part)[name]
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return encode_arrays(RESULT_MAGIC, self.version, arrays, header=text.encode("utf-8"))

    @classmethod
    def from_bytes(cls, data: bytes) -> CalibrationResult:
        """Decode :meth:`to_bytes`; raises :class:`CalibrationFileError` on any defect."""
        try:
            version, header, arrays = decode_arrays(data, RESULT_MAGIC, tuple(_RESULT_FORMATS))
        except ConfigDecodeError as e:
            raise CalibrationFileError(f"not a firstspike calibration file: {e}") from None
        try:
            h = json.loads(header.decode("utf-8"))
            if not isinstance(h, dict) or h.get("format") != _RESULT_FORMATS[version]:
                raise ValueError(f"format is not {_RESULT_FORMATS[version]!r}")
            cal_bytes = arrays.pop("calibration")
            if cal_bytes.dtype != np.uint8 or cal_bytes.ndim != 1:
                raise ValueError("the calibration array must be uint8 bytes")
            cal = NeuronCalibration.from_bytes(cal_bytes.tobytes())
            if (cal.synapse is not None) != (version == RESULT_VERSION_SYNAPSES):
                raise ValueError(f"a version {version} file with a calibration of version {cal.version}")
            if (h.get("device_model"), h.get("serial"), h.get("spec_version")) != (
                    cal.device_model, cal.serial, cal.spec_version):
                raise ValueError("header identity differs from the calibration's")
            failed = arrays.pop("failed")
            if failed.dtype != np.bool_:
                raise ValueError("failed must be a bool array")
            parts: dict[str, dict[str, np.ndarray]] = {"before": {}, "after": {}}
            for key, a in arrays.items():
                part, _, name = key.partition(".")
                if part not in parts or name not in METRICS or a.dtype != np.float64:
                    raise ValueError(f"unexpected array {key!r} ({a.dtype})")
                parts[part][name] = a
            meta = h.get("meta", {})
            if not isinstance(meta, dict):
                raise ValueError("meta must be a JSON object")
            out = cls(cal, parts["before"], parts["after"], failed, meta)
        except CalibrationFileError:
            raise
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise CalibrationFileError(f"calibration file is malformed: {e}") from None
        return out

    def save(self, path: str | Path) -> None:
        """Write the calibration file."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> CalibrationResult:
        """Read a calibration file (no identity check; see :func:`load_calibration`)."""
        p = Path(path)
        if not p.is_file():
            raise CalibrationFileError(f"{p}: no such calibration file")
        try:
            data = p.read_bytes()
        except OSError as e:
            raise CalibrationFileError(f"{p}: cannot read: {e.strerror or e}") from None
        try:
            return cls.from_bytes(data)
        except CalibrationFileError as e:
            raise CalibrationFileError(f"{p}: {e}") from None


def load_calibration(path: str | Path, device_info: DeviceInfo | None = None) -> CalibrationResult:
    """Read a calibration file; with ``device_info`` (``device.info()``), refuse it unless it was measured on that
    chip (model, serial, spec version). Raises :class:`CalibrationFileError` with one line saying why."""
    result = CalibrationResult.load(path)
    if device_info is not None:
        try:
            result.check_device(device_info)
        except CalibrationFileError as e:
            raise CalibrationFileError(f"{path}: {e}") from None
    return result
