# ruff: noqa: N802  (servicer methods carry the gRPC method names)
"""The servicer: ``firstspike.v1.Device`` RPCs translated between protobuf and the :class:`DeviceHost`.

One job: decode each request (:mod:`firstspike.runtime.wire`), call the host, encode the answer. Every call
produces one structured log line; errors get their status from the one table in
:mod:`firstspike.runtime.serve.status`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import grpc

from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.proto.firstspike.v1 import device_pb2_grpc as pb_grpc
from firstspike.runtime import wire
from firstspike.runtime.serve.errors import (
    BatchTooLargeError,
    RequestError,
    ResultTooLargeError,
    ShuttingDownError,
    UnsupportedError,
)
from firstspike.runtime.serve.host import DeviceHost, Lease, check_lease_id
from firstspike.runtime.serve.jsonlog import event, log
from firstspike.runtime.serve.status import abort, status_for, status_message

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "DeviceServicer"]

DEFAULT_MAX_MESSAGE_BYTES = 64 << 20
_SHUTTING_DOWN = "server is shutting down; retry against a new instance"


def _version() -> str:
    try:
        return metadata.version("firstspike")
    except metadata.PackageNotFoundError:
        return "unknown"


def _time_remaining(context: grpc.ServicerContext) -> float | None:
    t = context.time_remaining()
    return None if t is None or t > 1e8 else float(t)


def _handle_error(name: str, context: grpc.ServicerContext, exc: BaseException, fields: dict[str, Any]) -> None:
    """Log the failed call and end it with the exception's status."""
    code, reason = status_for(exc)
    level = logging.ERROR if code == grpc.StatusCode.INTERNAL else logging.WARNING
    event(
        level,
        "rpc failed",
        {
            "event": "rpc",
            "rpc": name,
            "peer": context.peer(),
            "code": code.name,
            "reason": reason,
            "error": status_message(exc),
            **fields,
        },
        exc_info=exc if reason == wire.REASON_INTERNAL else None,
    )
    abort(context, exc)


def _log_ok(name: str, level: int, context: grpc.ServicerContext, t0: float, fields: dict[str, Any]) -> None:
    if log.isEnabledFor(level):
        event(
            level,
            "rpc",
            {
                "event": "rpc",
                "rpc": name,
                "peer": context.peer(),
                "code": "OK",
                "ms": round((time.perf_counter() - t0) * 1e3, 3),
                **fields,
            },
        )


def _unary(name: str, level: int = logging.INFO) -> Callable:
    """Wrap a unary handler: status mapping, timing and one structured log line per call."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(self: DeviceServicer, request: Any, context: grpc.ServicerContext) -> Any:
            t0 = time.perf_counter()
            fields: dict[str, Any] = {}
            if self.shutting_down.is_set():
                abort(context, ShuttingDownError(_SHUTTING_DOWN))
            try:
                resp = fn(self, request, context, fields)
            except Exception as exc:
                _handle_error(name, context, exc, fields)
                raise  # unreachable: abort raises
            _log_ok(name, level, context, t0, fields)
            return resp

        return wrapper

    return deco


class DeviceServicer(pb_grpc.DeviceServicer):
    """``firstspike.v1.Device`` over a :class:`DeviceHost`."""

    def __init__(self, host: DeviceHost, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.host = host
        self.max_message_bytes = max_message_bytes
        self.shutting_down = threading.Event()
        self._info = wire.info_to_pb(
            host.info,
            server_version=_version(),
            max_message_bytes=max_message_bytes,
            default_lease_ttl_ms=int(host.default_ttl_s * 1000),
            max_lease_ttl_ms=int(host.max_ttl_s * 1000),
        )

    @_unary("GetInfo", logging.DEBUG)
    def GetInfo(self, request: pb.GetInfoRequest, context: grpc.ServicerContext, fields: dict) -> pb.GetInfoResponse:
        return self._info

    @_unary("AcquireLease")
    def AcquireLease(
        self, request: pb.AcquireLeaseRequest, context: grpc.ServicerContext, fields: dict
    ) -> pb.AcquireLeaseResponse:
        le = self.host.acquire(request.client_name, context.peer(), request.exclusive, request.ttl_ms, request.wait_ms)
        fields.update(lease=le.short, client=le.client, exclusive=le.exclusive, ttl_s=le.ttl_s)
        return pb.AcquireLeaseResponse(lease_id=le.id, ttl_ms=int(le.ttl_s * 1000), config_id=le.config_id)

    @_unary("RenewLease", logging.DEBUG)
    def RenewLease(
        self, request: pb.RenewLeaseRequest, context: grpc.ServicerContext, fields: dict
    ) -> pb.RenewLeaseResponse:
        le = self.host.lease(request.lease_id)
        fields.update(lease=le.short)
        return pb.RenewLeaseResponse(ttl_ms=int(le.ttl_s * 1000), config_id=le.config_id)

    @_unary("ReleaseLease")
    def ReleaseLease(
        self, request: pb.ReleaseLeaseRequest, context: grpc.ServicerContext, fields: dict
    ) -> pb.ReleaseLeaseResponse:
        le = self.host.release(request.lease_id)
        fields.update(lease=le.short, client=le.client)
        return pb.ReleaseLeaseResponse()

    def _config_response(self, le: Lease, unchanged: bool, fields: dict) -> pb.ConfigResponse:
        fields.update(lease=le.short, config=le.config_id[:12], unchanged=unchanged)
        return pb.ConfigResponse(config_id=le.config_id, summary=le.summary, unchanged=unchanged)

    @_unary("LoadConfig")
    def LoadConfig(
        self, request: pb.LoadConfigRequest, context: grpc.ServicerContext, fields: dict
    ) -> pb.ConfigResponse:
        check_lease_id(request.lease_id)
        cfg = ChipConfig.from_bytes(request.config)
        le, unchanged = self.host.set_config(request.lease_id, cfg, _time_remaining(context))
        return self._config_response(le, unchanged, fields)

    @_unary("LoadArtifact")
    def LoadArtifact(
        self, request: pb.LoadArtifactRequest, context: grpc.ServicerContext, fields: dict
    ) -> pb.ConfigResponse:
        check_lease_id(request.lease_id)
        try:
            from firstspike.compiler.artifact import CompiledNetwork
        except ImportError as e:
            raise UnsupportedError(
                f"this server cannot load compiled artifacts (firstspike.compiler.artifact is not importable: {e}); "
                "send the artifact's ChipConfig with LoadConfig instead"
            ) from e
        try:
            net = CompiledNetwork.from_bytes(request.artifact)
        except Exception as e:  # the compiler's decode errors (ArtifactDecodeError and kin) name the defect
            raise RequestError(f"artifact: {type(e).__name__}: {e}") from e
        n = len(net.stages)
        if request.stage >= n:
            raise RequestError(
                f"stage {request.stage} out of range; the artifact has {n} stage(s): allowed [0, {n - 1}]"
            )
        cfg = net.stages[request.stage].config
        fields.update(stage=request.stage, stages=n)
        le, unchanged = self.host.set_config(request.lease_id, cfg, _time_remaining(context))
        resp = self._config_response(le, unchanged, fields)
        resp.artifact.CopyFrom(wire.artifact_layout_to_pb(net, request.stage))
        return resp

    @_unary("GetConfig", logging.DEBUG)
    def GetConfig(
        self, request: pb.GetConfigRequest, context: grpc.ServicerContext, fields: dict
    ) -> pb.GetConfigResponse:
        le = self.host.lease(request.lease_id)
        fields.update(lease=le.short)
        return pb.GetConfigResponse(config_id=le.config_id, config=le.config.to_bytes())

    @_unary("UpdateConfig")
    def UpdateConfig(
        self, request: pb.UpdateConfigRequest, context: grpc.ServicerContext, fields: dict
    ) -> pb.ConfigResponse:
        check_lease_id(request.lease_id)
        diff = ConfigDiff.from_bytes(request.diff)
        fields.update(changed_entries=diff.changed_entries())
        le, unchanged = self.host.update_config(request.lease_id, diff, _time_remaining(context))
        return self._config_response(le, unchanged, fields)

    @_unary("Reset")
    def Reset(self, request: pb.ResetRequest, context: grpc.ServicerContext, fields: dict) -> pb.ConfigResponse:
        le = self.host.reset(request.lease_id, _time_remaining(context))
        return self._config_response(le, False, fields)

    def _run_one(self, request: pb.RunRequest, context: grpc.ServicerContext, fields: dict) -> pb.RunResponse:
        check_lease_id(request.lease_id)
        if not request.HasField("options"):
            raise RequestError("options is required (at least duration_ticks)")
        options = wire.options_from_pb(request.options)
        layout = wire.check_layout(request.result_layout, "result_layout")
        max_batch = int(self.host.info.max_batch)
        if request.inputs.batch_size > max_batch:
            # a capacity limit, not a malformed field, even above the wire format's own limit (2^16 entries)
            raise BatchTooLargeError(
                f"inputs.batch_size {request.inputs.batch_size} exceeds the device's max_batch {max_batch}; "
                f"send at most {max_batch} entries per Run (or per RunStream chunk, with consecutive entry_offset)"
            )
        inputs = wire.unpack_inputs(request.inputs)
        result, le, us = self.host.run(request.lease_id, request.config_id, inputs, options, _time_remaining(context))
        size = wire.max_spike_bytes(layout, result.spikes.batch_size, len(result.spikes))
        size += 0 if result.membrane is None else result.membrane.nbytes
        if size + 4096 > self.max_message_bytes:
            raise ResultTooLargeError(
                f"the result ({len(result.spikes)} events, {size} bytes) exceeds the server's message limit of "
                f"{self.max_message_bytes} bytes; run smaller batches or use RunStream with smaller chunks"
            )
        fields.update(
            lease=le.short, batch=inputs.batch_size, inputs=len(inputs), events=len(result.spikes), device_ms=us / 1000
        )
        return wire.result_to_pb(
            result, config_id=le.config_id, sequence=request.sequence, device_us=us, layout=layout
        )

    @_unary("Run", logging.DEBUG)
    def Run(self, request: pb.RunRequest, context: grpc.ServicerContext, fields: dict) -> pb.RunResponse:
        return self._run_one(request, context, fields)

    def RunStream(
        self, request_iterator: Iterator[pb.RunRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.RunResponse]:
        t0 = time.perf_counter()
        fields: dict[str, Any] = {"chunks": 0}
        if self.shutting_down.is_set():
            abort(context, ShuttingDownError(_SHUTTING_DOWN))
        try:
            for request in request_iterator:
                chunk: dict[str, Any] = {}
                resp = self._run_one(request, context, chunk)
                fields["chunks"] += 1
                fields["events"] = fields.get("events", 0) + chunk.get("events", 0)
                fields["lease"] = chunk.get("lease")
                yield resp
        except Exception as exc:
            _handle_error("RunStream", context, exc, fields)
            raise
        _log_ok("RunStream", logging.DEBUG, context, t0, fields)
