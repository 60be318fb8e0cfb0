"""The one table from exceptions raised while serving to gRPC status codes and fs-reasons.

The servicer and the token check both answer errors through :func:`abort`. Rows are tried in order and the first
matching class wins, so subclasses come before their bases. The server's own errors
(:mod:`firstspike.runtime.serve.errors`) travel with their message as it is. Any other exception travels as
``"TypeName: message"``.
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from firstspike.hal.errors import BackendError, CapacityError, DeviceBusyError, HalError, LinkError
from firstspike.runtime import wire
from firstspike.runtime.serve.errors import (
    ConfigMismatchError,
    DiffBaseError,
    LeaseUnknownError,
    ServeError,
    ShuttingDownError,
    TooManyLeasesError,
    UnauthenticatedError,
)

__all__ = ["STATUS_TABLE", "abort", "status_for", "status_message"]

Code = grpc.StatusCode

#: (exception class, status code, fs-reason); the first row whose class matches applies.
STATUS_TABLE: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], grpc.StatusCode, str], ...] = (
    (LeaseUnknownError, Code.NOT_FOUND, wire.REASON_LEASE_UNKNOWN),
    (ConfigMismatchError, Code.FAILED_PRECONDITION, wire.REASON_CONFIG_MISMATCH),
    (DiffBaseError, Code.FAILED_PRECONDITION, wire.REASON_DIFF_BASE),
    (TooManyLeasesError, Code.RESOURCE_EXHAUSTED, wire.REASON_TOO_MANY_LEASES),
    (ShuttingDownError, Code.UNAVAILABLE, wire.REASON_SHUTTING_DOWN),
    (UnauthenticatedError, Code.UNAUTHENTICATED, wire.REASON_UNAUTHENTICATED),
    # also the server's BatchTooLargeError (checked before the inputs are decoded) and ResultTooLargeError
    (CapacityError, Code.RESOURCE_EXHAUSTED, wire.REASON_CAPACITY),
    (DeviceBusyError, Code.ABORTED, wire.REASON_DEVICE_BUSY),  # also another lease's exclusive hold
    (LinkError, Code.UNAVAILABLE, wire.REASON_BACKEND),
    ((ValueError, TypeError), Code.INVALID_ARGUMENT, wire.REASON_INVALID),  # FieldRangeError, Config*, WireError
    (NotImplementedError, Code.UNIMPLEMENTED, wire.REASON_UNIMPLEMENTED),
    ((HalError, BackendError), Code.INTERNAL, wire.REASON_BACKEND),
    (BaseException, Code.INTERNAL, wire.REASON_INTERNAL),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and fs-reason for an exception raised while serving."""
    for cls, code, reason in STATUS_TABLE:
        if isinstance(exc, cls):
            return code, reason
    raise AssertionError("unreachable: the last row matches every exception")


def status_message(exc: BaseException) -> str:
    """The status detail: the server's own message as is, anything else with its type name in front."""
    return str(exc) if isinstance(exc, ServeError) else f"{type(exc).__name__}: {exc}"


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """End the RPC with ``exc``'s status, its message and the fs-reason trailing metadata."""
    code, reason = status_for(exc)
    context.set_trailing_metadata(((wire.REASON_KEY, reason),))
    context.abort(code, status_message(exc))
    raise AssertionError("unreachable: ServicerContext.abort raises")
