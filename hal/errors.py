"""Typed errors shared by every layer. Each message says what is wrong and what is allowed."""

from __future__ import annotations


class HalError(Exception):
    """Base of all firstspike hardware-abstraction errors."""


class FieldRangeError(HalError, ValueError):
    """A value is outside its allowed range; names the field, the value and the range."""

    def __init__(self, field: str, value: object, low: int | float, high: int | float, detail: str = "") -> None:
        self.field = field
        self.value = value
        self.low = low
        self.high = high
        msg = f"{field}: value {value!r} is out of range; allowed [{low}, {high}]"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class ConfigError(HalError, ValueError):
    """A configuration is inconsistent or invalid (shape, dtype, references)."""


class ConfigDecodeError(HalError, ValueError):
    """Bytes are not a valid encoded configuration: truncated, corrupted, or of another version."""


class BackendError(HalError, RuntimeError):
    """A device failed to do what was asked."""


class CapacityError(BackendError, ValueError):
    """A request exceeds what the device can do (batch size, duration, events)."""


class DeviceBusyError(BackendError):
    """Another client holds the device."""


class LinkError(BackendError, ConnectionError):
    """The connection to a device is gone or unrecoverable."""


class UnknownBackendError(HalError, LookupError):
    """No backend is registered for a URI scheme."""


class CalibrationMismatchError(HalError, ValueError):
    """A calibration used on a chip (or device spec version) it was not measured on."""


class BrokenBackendError(UnknownBackendError):
    """A backend is declared (entry point) but cannot be loaded; the message names the entry point and the error."""

    def __init__(self, scheme: str, reason: str) -> None:
        super().__init__(f"backend {scheme!r} is broken: {reason}")
        self.scheme = scheme
        #: why it cannot be loaded, one line (what :func:`firstspike.hal.registry.check_backends` reports)
        self.reason = reason
