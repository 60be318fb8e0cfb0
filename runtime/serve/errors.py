"""The server's own request errors: hal errors (no grpc) whose message is the whole status detail.

The host and the servicer raise them; :mod:`firstspike.runtime.serve.status` maps each class to a gRPC status code
and an fs-reason. Errors of the backend or the decoders (hal errors, ``ValueError``...) reach clients with their
type name in front of the message; these reach them as they are written.
"""

from __future__ import annotations

from firstspike.hal.errors import CapacityError, ConfigError, DeviceBusyError, HalError, LinkError

__all__ = [
    "BatchTooLargeError",
    "ConfigMismatchError",
    "DeviceHeldError",
    "DiffBaseError",
    "LeaseUnknownError",
    "RequestError",
    "ResultTooLargeError",
    "ServeError",
    "ShuttingDownError",
    "TooManyLeasesError",
    "UnauthenticatedError",
    "UnsupportedError",
]


class ServeError(HalError):
    """An error of the server's own making; its message says what is wrong and what to do."""


class RequestError(ServeError, ValueError):
    """A request field holds a value the server does not accept (an id, a range, a missing field)."""


class LeaseUnknownError(ServeError, LookupError):
    """The lease is unknown or expired (the server restarted, or the lease was not renewed in time)."""


class ConfigMismatchError(ServeError, ValueError):
    """A run names a configuration that is not the lease's."""


class DiffBaseError(ServeError, ConfigError):
    """A diff was made for another base than the lease's configuration."""


class TooManyLeasesError(ServeError, CapacityError):
    """The server holds its maximum number of leases."""


class ResultTooLargeError(ServeError, CapacityError):
    """A result does not fit the server's message limit."""


class BatchTooLargeError(ServeError, CapacityError):
    """A run request holds more batch entries than the device's ``max_batch``."""


class DeviceHeldError(ServeError, DeviceBusyError):
    """Another lease holds the device exclusively, longer than the request may wait."""


class ShuttingDownError(ServeError, LinkError):
    """The server is shutting down (its device is closed or closing)."""


class UnsupportedError(ServeError, NotImplementedError):
    """This server cannot do what was asked (e.g. load compiled artifacts without the compiler)."""


class UnauthenticatedError(ServeError, PermissionError):
    """A missing or wrong bearer token."""
