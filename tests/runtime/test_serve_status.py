"""The server's one status table: each error class to its gRPC status code and fs-reason, subclasses first."""

from __future__ import annotations

import grpc
import pytest

from firstspike.hal.errors import (
    BackendError,
    CapacityError,
    ConfigDecodeError,
    ConfigError,
    DeviceBusyError,
    FieldRangeError,
    LinkError,
)
from firstspike.runtime import wire
from firstspike.runtime.serve import errors
from firstspike.runtime.serve.status import STATUS_TABLE, status_for, status_message

C = grpc.StatusCode

CASES = [
    (errors.RequestError("x"), C.INVALID_ARGUMENT, wire.REASON_INVALID),
    (errors.LeaseUnknownError("x"), C.NOT_FOUND, wire.REASON_LEASE_UNKNOWN),
    (errors.ConfigMismatchError("x"), C.FAILED_PRECONDITION, wire.REASON_CONFIG_MISMATCH),
    (errors.DiffBaseError("x"), C.FAILED_PRECONDITION, wire.REASON_DIFF_BASE),  # a ConfigError, but not INVALID
    (errors.TooManyLeasesError("x"), C.RESOURCE_EXHAUSTED, wire.REASON_TOO_MANY_LEASES),
    (errors.ResultTooLargeError("x"), C.RESOURCE_EXHAUSTED, wire.REASON_CAPACITY),
    (errors.BatchTooLargeError("x"), C.RESOURCE_EXHAUSTED, wire.REASON_CAPACITY),  # a ValueError, but capacity
    (errors.DeviceHeldError("x"), C.ABORTED, wire.REASON_DEVICE_BUSY),
    (errors.ShuttingDownError("x"), C.UNAVAILABLE, wire.REASON_SHUTTING_DOWN),  # a LinkError, but not backend-error
    (errors.UnsupportedError("x"), C.UNIMPLEMENTED, wire.REASON_UNIMPLEMENTED),
    (errors.UnauthenticatedError("x"), C.UNAUTHENTICATED, wire.REASON_UNAUTHENTICATED),
    # the backend's and the decoders' errors
    (CapacityError("x"), C.RESOURCE_EXHAUSTED, wire.REASON_CAPACITY),  # a ValueError, but not INVALID
    (DeviceBusyError("x"), C.ABORTED, wire.REASON_DEVICE_BUSY),
    (LinkError("x"), C.UNAVAILABLE, wire.REASON_BACKEND),
    (FieldRangeError("f", 9, 0, 1), C.INVALID_ARGUMENT, wire.REASON_INVALID),
    (ConfigError("x"), C.INVALID_ARGUMENT, wire.REASON_INVALID),
    (ConfigDecodeError("x"), C.INVALID_ARGUMENT, wire.REASON_INVALID),
    (wire.WireError("x"), C.INVALID_ARGUMENT, wire.REASON_INVALID),
    (TypeError("x"), C.INVALID_ARGUMENT, wire.REASON_INVALID),
    (NotImplementedError("x"), C.UNIMPLEMENTED, wire.REASON_UNIMPLEMENTED),
    (BackendError("x"), C.INTERNAL, wire.REASON_BACKEND),
    (RuntimeError("x"), C.INTERNAL, wire.REASON_INTERNAL),
]


@pytest.mark.parametrize(("exc", "code", "reason"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_status_for(exc: BaseException, code: grpc.StatusCode, reason: str) -> None:
    assert status_for(exc) == (code, reason)


def test_every_server_error_is_checked_above() -> None:
    tested = {type(exc) for exc, _, _ in CASES}
    assert [n for n in errors.__all__ if getattr(errors, n) not in tested] == ["ServeError"]
    assert isinstance(STATUS_TABLE[-1][0], type) and STATUS_TABLE[-1][0] is BaseException  # nothing falls through


def test_messages_of_the_servers_own_errors_travel_as_written() -> None:
    assert status_message(errors.LeaseUnknownError("lease 1234 is unknown")) == "lease 1234 is unknown"
    assert status_message(ConfigError("bad base")) == "ConfigError: bad base"
