"""A chip's per-neuron calibration: how each physical neuron deviates from the nominal curves, and the codes
that make it hit the nominal targets.

:mod:`firstspike.hal.calibration` holds the *nominal* code -> physics curves every layer assumes (a tau code is
4 ticks, a voltage code is 1 membrane LSB, a synapse of weight ``w`` on gain code ``g`` makes the current jump by
``w g / 64`` LSB). A real chip deviates per neuron; a calibration measures each neuron's transfer through the
device's own observables (``firstspike.runtime.calibration``) and records it here as

* a **factor** per time constant and synaptic gain: effective value = factor x nominal(code);
* an **offset** per voltage, in membrane LSB: the leak's absolute offset (0 when the device cannot measure it,
  it only moves the rails), the threshold's and the reset's offsets *relative to the leak's* (what the
  dynamics see: spikes happen at ``threshold - leak``, the membrane resets to ``reset - leak``).

:meth:`NeuronCalibration.apply` turns the nominal codes a compiler chose (the targets) into the codes that
realise them on this chip. The gain codes also absorb the rounding residual of the threshold - leak span, so the
model weight of one digital step (``gain / 64 / span``, :func:`firstspike.hal.calibration.model_weight_per_lsb`) is
what the compiler assumed. The identity (device model, serial, spec version) travels with the data: a
calibration is refused on another chip (:meth:`NeuronCalibration.check_device`).

Optionally, per synapse (``synapse``, shape (2 halves, 256 rows, 256 columns)): each synapse's weight-to-current
factor relative to its neuron's gain (effective jump = ``w gain / 64 x gain factor x synapse factor``); no neuron
code can correct it, the compiler divides each weight by it before rounding to the 6-bit grid
(:func:`firstspike.compiler.apply_calibration`). None: no synapse correction.

Encoding: :mod:`firstspike.hal.encoding`'s checksummed container, magic ``FSNC``; header = canonical JSON of the
identity; one float64 array of shape (512,) per field. Version 1: the neuron fields only (files written before
synapse factors existed still load, as "no synapse correction"); version 2: plus ``synapse`` as uint16 codes (2,
256, 256), factor = code / 2^14 (resolution 6e-5; factors are kept on that grid in memory too, so a calibration
round-trips exactly). A calibration without synapse factors is written as version 1 (same bytes, same SHA-256 as
before).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from firstspike.hal import chip
from firstspike.hal.config import NEURON_FIELDS, ChipConfig, NeuronParams
from firstspike.hal.encoding import decode_arrays, encode_arrays
from firstspike.hal.errors import CalibrationMismatchError, ConfigDecodeError

__all__ = [
    "CALIBRATION_MAGIC",
    "FACTOR_FIELDS",
    "OFFSET_FIELDS",
    "SYNAPSE_SCALE",
    "SYNAPSE_SHAPE",
    "CalibrationMismatchError",
    "NeuronCalibration",
]

CALIBRATION_MAGIC = b"FSNC"
CALIBRATION_VERSION = 1
#: the version with per-synapse factors
CALIBRATION_VERSION_SYNAPSES = 2
SYNAPSE_SHAPE = (chip.N_HALVES, chip.ROWS_PER_HALF, chip.COLUMNS_PER_HALF)
#: a synapse factor is stored as ``round(factor * SYNAPSE_SCALE)`` in a uint16
SYNAPSE_SCALE = 1 << 14
SYNAPSE_MAX_CODE = (1 << 16) - 1  # the largest factor is 65535 / 2^14 (just under 4)
_FORMATS = {1: "firstspike.neuron_calibration.v1", 2: "firstspike.neuron_calibration.v2"}

#: factor fields: effective = factor x nominal(code); name -> the NeuronParams code it corrects
FACTOR_FIELDS: dict[str, str] = {
    "tau_mem": "tau_mem",
    "tau_syn_exc": "tau_syn_exc",
    "tau_syn_inh": "tau_syn_inh",
    "gain_exc": "gain_exc",
    "gain_inh": "gain_inh",
}
#: offset fields (membrane LSB): ``leak`` absolute; ``threshold`` and ``reset`` relative to the leak's offset
OFFSET_FIELDS: tuple[str, ...] = ("leak", "threshold", "reset")
_FIELDS = (*FACTOR_FIELDS, *OFFSET_FIELDS)
#: factors outside this range are not a calibration of this chip family (a 10x slower neuron is broken)
FACTOR_RANGE = (0.25, 4.0)
#: offsets beyond this many LSB are refused for the same reason
OFFSET_LIMIT = 200.0


def _field_array(name: str, a: Any) -> np.ndarray:
    arr = np.array(a, dtype=np.float64, copy=True).reshape(-1)
    if arr.shape != (chip.N_NEURONS,):
        raise ValueError(f"calibration field {name}: shape {np.shape(a)}; expected ({chip.N_NEURONS},)")
    if not np.isfinite(arr).all():
        raise ValueError(f"calibration field {name}: contains NaN or inf")
    if name in FACTOR_FIELDS:
        lo, hi = FACTOR_RANGE
        if arr.min() < lo or arr.max() > hi:
            raise ValueError(f"calibration field {name}: factors must lie in [{lo}, {hi}], "
                             f"got [{arr.min():.4g}, {arr.max():.4g}]")
    elif np.abs(arr).max() > OFFSET_LIMIT:
        raise ValueError(f"calibration field {name}: offsets must lie within +-{OFFSET_LIMIT} LSB, "
                         f"got {np.abs(arr).max():.4g}")
    arr.setflags(write=False)
    return arr


def _synapse_array(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    arr = np.array(a, dtype=np.float64, copy=True)
    if arr.shape != SYNAPSE_SHAPE:
        raise ValueError(f"calibration field synapse: shape {np.shape(a)}; expected {SYNAPSE_SHAPE}")
    if not np.isfinite(arr).all():
        raise ValueError("calibration field synapse: contains NaN or inf")
    arr = np.rint(arr * SYNAPSE_SCALE) / SYNAPSE_SCALE  # the stored grid
    lo, hi = FACTOR_RANGE[0], SYNAPSE_MAX_CODE / SYNAPSE_SCALE
    if arr.min() < lo or arr.max() > hi:
        raise ValueError(f"calibration field synapse: factors must lie in [{lo}, {hi:.6g}], "
                         f"got [{arr.min():.4g}, {arr.max():.4g}]")
    arr.setflags(write=False)
    return arr


def _round_clip(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


@dataclass(frozen=True, eq=False)
class NeuronCalibration:
    """Per-physical-neuron transfer of one chip (all arrays float64, shape (512,); see the module docstring).

    ``tau_mem``, ``tau_syn_exc``, ``tau_syn_inh``, ``gain_exc``, ``gain_inh``: factors (effective / nominal).
    ``leak``: absolute leak offset (LSB); ``threshold``, ``reset``: offsets relative to the leak's (LSB).
    ``device_model``, ``serial``, ``spec_version``: the chip it was measured on (``DeviceInfo`` model, serial,
    version). ``synapse``: optional (2, 256, 256) factor of every synapse relative to its neuron's gain, kept
    on the grid of 1/2^14 (None: no synapse correction).
    """

    device_model: str
    serial: int
    spec_version: str
    tau_mem: np.ndarray
    tau_syn_exc: np.ndarray
    tau_syn_inh: np.ndarray
    gain_exc: np.ndarray
    gain_inh: np.ndarray
    leak: np.ndarray
    threshold: np.ndarray
    reset: np.ndarray
    synapse: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.device_model, str) or not self.device_model:
            raise ValueError("calibration device_model must be a non-empty string")
        if isinstance(self.serial, bool) or not isinstance(self.serial, int | np.integer) or not (
                0 <= int(self.serial) < 2**63):
            raise ValueError(f"calibration serial must be an integer in [0, 2^63), got {self.serial!r}")
        if not isinstance(self.spec_version, str):
            raise ValueError("calibration spec_version must be a string")
        object.__setattr__(self, "serial", int(self.serial))
        for name in _FIELDS:
            object.__setattr__(self, name, _field_array(name, getattr(self, name)))
        object.__setattr__(self, "synapse", _synapse_array(self.synapse))

    # ---- construction -----------------------------------------------------------------------------
    @classmethod
    def nominal(cls, device_model: str, serial: int, spec_version: str) -> NeuronCalibration:
        """The identity transfer (every factor 1, every offset 0): applying it changes no code."""
        one, zero = np.ones(chip.N_NEURONS), np.zeros(chip.N_NEURONS)
        return cls(device_model, serial, spec_version, **{f: one for f in FACTOR_FIELDS},
                   **{f: zero for f in OFFSET_FIELDS})

    def fields(self) -> dict[str, np.ndarray]:
        """The per-neuron arrays by name (read-only views)."""
        return {name: getattr(self, name) for name in _FIELDS}

    def with_synapses(self, synapse: np.ndarray | None) -> NeuronCalibration:
        """The same neuron calibration with these per-synapse factors (None: without synapse correction)."""
        return NeuronCalibration(self.device_model, self.serial, self.spec_version, **self.fields(), synapse=synapse)

    def without_synapses(self) -> NeuronCalibration:
        """The same neuron calibration without per-synapse factors."""
        return self if self.synapse is None else self.with_synapses(None)

    @property
    def identity(self) -> dict[str, Any]:
        """``{"device_model", "serial", "spec_version", "sha256"}``: which chip and which data."""
        return {"device_model": self.device_model, "serial": self.serial, "spec_version": self.spec_version,
                "sha256": self.sha256()}

    # ---- identity ---------------------------------------------------------------------------------
    def describe(self) -> str:
        return f"{self.device_model} serial {self.serial} (spec {self.spec_version})"

    def check_device(self, device_model: str, serial: int, spec_version: str, same_bits_as: Sequence[str] = ()) -> None:
        """Raise :class:`CalibrationMismatchError` unless this calibration was measured on that chip: its model and
        serial, and its spec version or one of ``same_bits_as`` (earlier versions the device runs bit for bit
        alike, e.g. a spec that only added a resource the calibration does not use)."""
        versions = (spec_version, *same_bits_as)
        if (device_model, int(serial)) != (self.device_model, self.serial) or self.spec_version not in versions:
            raise CalibrationMismatchError(
                f"the calibration is for {self.describe()}; this device is {device_model} serial {serial} "
                f"(spec {spec_version}): calibrate this chip (firstspike calibrate URI -o FILE)")

    # ---- use --------------------------------------------------------------------------------------
    def apply(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Nominal per-neuron codes (``NeuronParams.values``: the targets) -> the codes that realise them here.

        Time constants: ``code / factor``. Voltages: the leak at ``leak - offset``; threshold and reset keep their
        nominal distance to the *effective* leak. Gains: ``gain x (realised span / nominal span) / factor``, so the
        model weight per digital step is the nominal one. Codes are rounded and clipped to their ranges;
        ``enabled`` and ``refractory`` (digital) are copied.
        """
        v = {k: np.asarray(values[k], dtype=np.int64) for k in NEURON_FIELDS}
        out = {k: np.asarray(values[k]).copy() for k in NEURON_FIELDS}
        pmax = chip.PARAM_MAX
        for name in ("tau_mem", "tau_syn_exc", "tau_syn_inh"):
            out[name] = _round_clip(v[name] / getattr(self, name), 1, pmax)
        leak = _round_clip(v["leak"] - self.leak, 0, pmax)
        out["leak"] = leak
        threshold = _round_clip(v["threshold"] - v["leak"] + leak - self.threshold, 0, pmax)
        out["threshold"] = threshold
        out["reset"] = _round_clip(v["reset"] - v["leak"] + leak - self.reset, 0, pmax)
        span_nominal = (v["threshold"] - v["leak"]).astype(np.float64)
        span_real = threshold - leak + self.threshold
        ratio = np.ones(chip.N_NEURONS)
        ok = (span_nominal != 0) & (np.sign(span_real) == np.sign(span_nominal))
        ratio[ok] = span_real[ok] / span_nominal[ok]
        for name in ("gain_exc", "gain_inh"):
            g = v[name] * ratio / getattr(self, name)
            out[name] = np.where(v[name] == 0, 0, _round_clip(g, 1, pmax))
        for name, (dt, *_rest) in NEURON_FIELDS.items():
            out[name] = np.asarray(out[name]).astype(np.dtype(dt))
        return out

    def apply_to_config(self, config: ChipConfig) -> ChipConfig:
        """A copy of ``config`` whose neuron codes are :meth:`apply` of its own (synapses, rows, routes kept)."""
        out = config.copy()
        out.neurons = NeuronParams(self.apply(config.neurons.values),
                                   merged_columns=config.neurons.merged_columns.copy())
        return out.validate()

    # ---- encoding ---------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """The encoding version: 2 with per-synapse factors, else 1."""
        return CALIBRATION_VERSION if self.synapse is None else CALIBRATION_VERSION_SYNAPSES

    def _header(self) -> bytes:
        h = {"format": _FORMATS[self.version], "device_model": self.device_model,
             "serial": self.serial, "spec_version": self.spec_version}
        return json.dumps(h, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def to_bytes(self) -> bytes:
        """Canonical, versioned, CRC-checked bytes (equal calibrations give equal bytes)."""
        arrays = self.fields()
        if self.synapse is not None:
            arrays = {**arrays, "synapse": np.rint(self.synapse * SYNAPSE_SCALE).astype("<u2")}
        return encode_arrays(CALIBRATION_MAGIC, self.version, arrays, header=self._header())

    def sha256(self) -> str:
        """Hex SHA-256 of :meth:`to_bytes`: names this exact calibration."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> NeuronCalibration:
        """Decode :meth:`to_bytes`; any truncated, corrupted, foreign or out-of-range input raises
        :class:`~firstspike.hal.errors.ConfigDecodeError`."""
        version, header, arrays = decode_arrays(data, CALIBRATION_MAGIC,
                                                (CALIBRATION_VERSION, CALIBRATION_VERSION_SYNAPSES))
        try:
            h = json.loads(header.decode("utf-8"))
            if not isinstance(h, dict) or h.get("format") != _FORMATS[version]:
                raise ValueError(f"header format is not {_FORMATS[version]}")
            names = [*_FIELDS, "synapse"] if version == CALIBRATION_VERSION_SYNAPSES else list(_FIELDS)
            if sorted(arrays) != sorted(names):
                raise ValueError(f"arrays {sorted(arrays)}; expected {sorted(names)}")
            for name, a in arrays.items():
                want = np.dtype("<u2") if name == "synapse" else np.dtype(np.float64)
                if a.dtype != want:
                    raise ValueError(f"array {name} has dtype {a.dtype}; expected {want}")
            if "synapse" in arrays:
                arrays["synapse"] = arrays["synapse"].astype(np.float64) / SYNAPSE_SCALE
            out = cls(h["device_model"], h["serial"], h["spec_version"], **arrays)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ConfigDecodeError(f"not a valid neuron calibration: {e}") from None
        if out.to_bytes() != bytes(data):
            raise ConfigDecodeError("neuron calibration is not in canonical form")
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NeuronCalibration):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]
