# ruff: noqa: N802  (servicer methods carry the gRPC method names)
"""The gRPC device server: ``firstspike.v1.Device`` around ANY hal :class:`~firstspike.hal.backend.Backend`.

One server hosts one device. Clients open leases (sessions); each lease holds its own ChipConfig, and the
server applies a lease's configuration to the device (as a diff from what the device holds) right before
that lease's run, under one lock per device. So interleaved clients never mix configurations, and a client
that is alone on the device pays for its configuration once. An exclusive lease makes every other lease
wait (up to its deadline) and then fail with ABORTED.

Entry points: :func:`build_server` (embed it), :func:`serve` (blocking, signals, logs) and :func:`main`
(``python -m firstspike.runtime.server``, the same options as ``firstspike serve``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import hmac
import importlib
import ipaddress
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import (
    BackendError,
    CapacityError,
    DeviceBusyError,
    HalError,
    LinkError,
)
from firstspike.hal.events import InputSpikes
from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.proto.firstspike.v1 import device_pb2_grpc as pb_grpc
from firstspike.runtime import wire
from firstspike.runtime.allocator import tune_malloc

log = logging.getLogger("firstspike.server")

DEFAULT_PORT = 50051
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20
DEFAULT_LEASE_TTL_S = 30.0
MAX_LEASE_TTL_S = 600.0
MIN_LEASE_TTL_S = 0.1
MAX_WAIT_S = 600.0
MAX_CLIENT_NAME = 128
#: How long a request waits for another client's exclusive lease when it carries no deadline (seconds).
DEFAULT_BUSY_WAIT_S = 30.0
_HEX = frozenset("0123456789abcdef")


def _version() -> str:
    try:
        return metadata.version("firstspike")
    except metadata.PackageNotFoundError:
        return "unknown"


class StatusError(Exception):
    """An error to return as a gRPC status: ``code``, a message saying what is wrong, and a machine reason."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and reason for an exception raised while serving (order matters: subclasses first)."""
    if isinstance(exc, StatusError):
        return exc.code, exc.reason
    if isinstance(exc, CapacityError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, wire.REASON_CAPACITY
    if isinstance(exc, DeviceBusyError):
        return grpc.StatusCode.ABORTED, wire.REASON_DEVICE_BUSY
    if isinstance(exc, LinkError):
        return grpc.StatusCode.UNAVAILABLE, wire.REASON_BACKEND
    if isinstance(exc, ValueError | TypeError):  # FieldRangeError, ConfigError, ConfigDecodeError, WireError
        return grpc.StatusCode.INVALID_ARGUMENT, wire.REASON_INVALID
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, wire.REASON_UNIMPLEMENTED
    if isinstance(exc, HalError | BackendError):
        return grpc.StatusCode.INTERNAL, wire.REASON_BACKEND
    return grpc.StatusCode.INTERNAL, wire.REASON_INTERNAL


# ---- leases and the device ---------------------------------------------------------------------------
@dataclass
class Lease:
    """One client session: its configuration (with digest) and its lifetime."""

    id: str
    client: str
    peer: str
    exclusive: bool
    ttl_s: float
    expires: float
    config: ChipConfig
    digest: bytes
    summary: dict[str, int] = field(default_factory=dict)
    busy: int = 0  # calls of this lease waiting for or using the device (a busy lease never expires)

    @property
    def config_id(self) -> str:
        return self.digest.hex()

    @property
    def short(self) -> str:
        return self.id[:8]


def _hexdigest(cfg_bytes: bytes) -> bytes:
    return hashlib.sha256(cfg_bytes).digest()


class DeviceHost:
    """A Backend, the leases on it and the lock that serialises every device access (configure, run).

    Thread-safe. Methods raise :class:`StatusError` or hal errors; the servicer turns them into statuses.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        default_ttl_s: float = DEFAULT_LEASE_TTL_S,
        max_ttl_s: float = MAX_LEASE_TTL_S,
        max_leases: int = 256,
        busy_wait_s: float = DEFAULT_BUSY_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.info: DeviceInfo = backend.info()
        self.default_ttl_s = default_ttl_s
        self.max_ttl_s = max_ttl_s
        self.max_leases = max_leases
        self.busy_wait_s = busy_wait_s
        self._clock = clock
        self._meta = threading.Condition()  # guards _leases and _exclusive
        # Serialises backend calls (backends need not be thread-safe). They run on whichever RPC thread holds
        # it: measured faster for the numba simulator's small batches than one dedicated device thread.
        self._device = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._exclusive: str | None = None
        self._next_sweep = 0.0
        default = ChipConfig()
        self._default = (default, _hexdigest(default.to_bytes()), default.summary())
        self._closed = False

    # ---- leases ----------------------------------------------------------------------------------
    def _sweep_locked(self, now: float, force: bool = False) -> None:
        if not force and now < self._next_sweep:
            return
        self._next_sweep = now + 0.5
        dead = [lid for lid, le in self._leases.items() if le.expires <= now and not le.busy]
        for lid in dead:
            le = self._leases.pop(lid)
            log.info(
                "lease expired", extra={"fields": {"event": "lease_expired", "lease": le.short, "client": le.client}}
            )
            if self._exclusive == lid:
                self._exclusive = None
        if dead:
            self._meta.notify_all()

    def acquire(self, client: str, peer: str, exclusive: bool, ttl_ms: int, wait_ms: int) -> Lease:
        if len(client) > MAX_CLIENT_NAME:
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"client_name has {len(client)} characters; at most {MAX_CLIENT_NAME} allowed",
                wire.REASON_INVALID,
            )
        ttl_s = self.default_ttl_s if ttl_ms == 0 else ttl_ms / 1000.0
        if not MIN_LEASE_TTL_S <= ttl_s <= self.max_ttl_s:
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"ttl_ms {ttl_ms} out of range; allowed 0 (server default {int(self.default_ttl_s * 1000)}) or "
                f"[{int(MIN_LEASE_TTL_S * 1000)}, {int(self.max_ttl_s * 1000)}]",
                wire.REASON_INVALID,
            )
        if wait_ms > MAX_WAIT_S * 1000:
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"wait_ms {wait_ms} out of range; allowed [0, {int(MAX_WAIT_S * 1000)}]",
                wire.REASON_INVALID,
            )
        with self._meta:
            now = self._clock()
            self._sweep_locked(now, force=True)
            if len(self._leases) >= self.max_leases:
                raise StatusError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the server already holds {len(self._leases)} leases (its maximum); release unused leases",
                    wire.REASON_TOO_MANY_LEASES,
                )
            if exclusive:
                self._wait_exclusive_locked(
                    now + wait_ms / 1000.0, None, f"waited {wait_ms} ms (set wait_ms to wait longer)"
                )
            cfg, digest, summary = self._default
            lease = Lease(
                id=secrets.token_hex(16),
                client=client,
                peer=peer,
                exclusive=exclusive,
                ttl_s=ttl_s,
                expires=self._clock() + ttl_s,
                config=cfg,
                digest=digest,
                summary=summary,
            )
            self._leases[lease.id] = lease
            if exclusive:
                self._exclusive = lease.id
        return lease

    def lease(self, lease_id: str) -> Lease:
        """The live lease with this id (renewed), or NOT_FOUND / INVALID_ARGUMENT."""
        check_lease_id(lease_id)
        with self._meta:
            now = self._clock()
            self._sweep_locked(now)
            le = self._leases.get(lease_id)
            if le is None or (le.expires <= now and not le.busy):
                raise StatusError(
                    grpc.StatusCode.NOT_FOUND,
                    f"lease {lease_id[:8]}... is unknown or expired (the server may have restarted, or the lease "
                    "was not renewed within its ttl); acquire a new lease and load the configuration again",
                    wire.REASON_LEASE_UNKNOWN,
                )
            le.expires = now + le.ttl_s
            return le

    def release(self, lease_id: str) -> Lease:
        le = self.lease(lease_id)
        with self._meta:
            self._leases.pop(le.id, None)
            if self._exclusive == le.id:
                self._exclusive = None
            self._meta.notify_all()
        return le

    def lease_count(self) -> int:
        with self._meta:
            return len(self._leases)

    def _wait_exclusive_locked(self, give_up: float, own: str | None, waited: str) -> None:
        """Wait (holding ``_meta``) until no lease but ``own`` holds the device exclusively; ABORTED at
        ``give_up`` (server clock), the message ending in ``waited``."""
        while self._exclusive is not None and self._exclusive != own:
            holder = self._leases.get(self._exclusive)
            remaining = give_up - self._clock()
            if remaining <= 0:
                raise StatusError(
                    grpc.StatusCode.ABORTED,
                    f"device is held exclusively by lease {self._exclusive[:8]} of client "
                    f"{holder.client if holder else '?'!r}; {waited}",
                    wire.REASON_DEVICE_BUSY,
                )
            self._meta.wait(min(remaining, 0.2))
            self._sweep_locked(self._clock(), force=True)

    def _wait_turn(self, le: Lease, time_remaining: float | None) -> None:
        """Block while another lease holds the device exclusively (ABORTED after the caller's deadline)."""
        budget = self.busy_wait_s if time_remaining is None else max(0.0, time_remaining - 0.05)
        with self._meta:
            self._wait_exclusive_locked(self._clock() + budget, le.id, f"gave up after {budget:.1f} s (retry later)")
            if le.id not in self._leases:
                raise StatusError(
                    grpc.StatusCode.NOT_FOUND,
                    f"lease {le.short}... expired while waiting for the device",
                    wire.REASON_LEASE_UNKNOWN,
                )

    @contextlib.contextmanager
    def _device_turn(self, le: Lease, time_remaining: float | None) -> Iterator[None]:
        """Hold the device lock on this lease's turn. Re-checks exclusivity after locking (a lease may have
        become exclusive while we queued). The lease cannot expire meanwhile and is renewed at the end."""
        with self._meta:
            le.busy += 1
        try:
            while True:
                self._wait_turn(le, time_remaining)
                self._device.acquire()
                with self._meta:
                    if self._exclusive is None or self._exclusive == le.id:
                        break
                self._device.release()
            try:
                if self._closed:
                    raise StatusError(
                        grpc.StatusCode.UNAVAILABLE,
                        "the device is closed (server shutting down)",
                        wire.REASON_SHUTTING_DOWN,
                    )
                yield
            finally:
                self._device.release()
        finally:
            with self._meta:
                le.busy -= 1
                le.expires = max(le.expires, self._clock() + le.ttl_s)

    # ---- configuration ---------------------------------------------------------------------------
    def _apply_locked(self, cfg: ChipConfig, digest: bytes, diff: ConfigDiff | None = None) -> None:
        """Make the backend hold ``cfg`` (device lock held). Its configuration mirror decides what travels:
        nothing, the client's diff, a diff from what it holds, or the whole configuration."""
        self.backend.sync(cfg, digest=digest, diff=diff)

    def set_config(
        self,
        lease_id: str,
        cfg: ChipConfig,
        time_remaining: float | None,
        diff: ConfigDiff | None = None,
        digest: bytes | None = None,
    ) -> tuple[Lease, bool]:
        """Give the lease ``cfg`` and apply it to the device now (so the backend validates it). ``digest``:
        ``cfg.digest()`` if the caller has just established it (a diff's checked target).

        Returns (lease, unchanged). Raises before changing the lease if the backend rejects the config.
        """
        if digest is None:
            digest = _hexdigest(cfg.to_bytes())
        le = self.lease(lease_id)
        if le.digest == digest:
            return le, True
        summary = cfg.summary()
        with self._device_turn(le, time_remaining):
            self._apply_locked(cfg, digest, diff)
            with self._meta:  # under the device lock: a run of this lease sees the old or the new config whole
                le.config, le.digest, le.summary = cfg, digest, summary
        return le, False

    def update_config(self, lease_id: str, diff: ConfigDiff, time_remaining: float | None) -> tuple[Lease, bool]:
        le = self.lease(lease_id)
        if diff.target_digest == le.digest:
            return le, True  # a replayed diff: already applied (UpdateConfig is idempotent)
        if diff.base_digest != le.digest:
            raise StatusError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"diff base {diff.base_digest.hex()[:12]} does not match the lease's configuration "
                f"{le.digest.hex()[:12]}; send the full configuration with LoadConfig",
                wire.REASON_DIFF_BASE,
            )
        # The lease's config is private and le.digest is its digest; apply checks the result against the target.
        new = diff.apply(le.config, base_digest=le.digest)  # ConfigError if the result is not the target
        return self.set_config(lease_id, new, time_remaining, diff=diff, digest=diff.target_digest)

    def reset(self, lease_id: str, time_remaining: float | None) -> Lease:
        le = self.lease(lease_id)
        cfg, digest, summary = self._default
        with self._device_turn(le, time_remaining):
            self.backend.mirror.forget()  # a reset reconfigures the device from scratch
            self._apply_locked(cfg, digest)
            with self._meta:
                le.config, le.digest, le.summary = cfg, digest, summary
        return le

    # ---- runs ------------------------------------------------------------------------------------
    def run(
        self,
        lease_id: str,
        expected_config_id: str,
        inputs: InputSpikes,
        options: RunOptions,
        time_remaining: float | None,
    ) -> tuple[RunResult, Lease, int]:
        """Run on the lease's configuration; returns (result, lease, device microseconds)."""
        le = self.lease(lease_id)
        if expected_config_id:
            check_config_id(expected_config_id)
            if expected_config_id != le.config_id:
                raise StatusError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"config_id {expected_config_id[:12]} is not the lease's configuration {le.config_id[:12]}; "
                    "load the configuration again",
                    wire.REASON_CONFIG_MISMATCH,
                )
        with self._device_turn(le, time_remaining):
            cfg, digest = le.config, le.digest  # read under the device lock: configs change only under it
            self._apply_locked(cfg, digest)
            t0 = time.perf_counter()
            try:
                result = self.backend.run(inputs, options)
            except (ValueError, TypeError):
                raise  # validation: nothing ran
            except BaseException:
                self.backend.mirror.forget()  # a failed run may leave the device anywhere
                raise
            us = int((time.perf_counter() - t0) * 1e6)
        return result, le, us

    def close(self) -> None:
        """Close the backend after any run in progress has finished."""
        with self._device:
            if not self._closed:
                self._closed = True
                self.backend.close()


def check_lease_id(lease_id: str) -> None:
    if not lease_id:
        raise StatusError(
            grpc.StatusCode.INVALID_ARGUMENT, "lease_id is required (call AcquireLease first)", wire.REASON_INVALID
        )
    if len(lease_id) != 32 or not set(lease_id) <= _HEX:
        raise StatusError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"lease_id {lease_id[:40]!r} is malformed; expected the 32 lowercase hex characters AcquireLease returned",
            wire.REASON_INVALID,
        )


def check_config_id(config_id: str) -> None:
    if len(config_id) != 64 or not set(config_id) <= _HEX:
        raise StatusError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"config_id {config_id[:70]!r} is malformed; expected 64 lowercase hex characters (SHA-256) or empty",
            wire.REASON_INVALID,
        )


# ---- the servicer ------------------------------------------------------------------------------------
def _time_remaining(context: grpc.ServicerContext) -> float | None:
    t = context.time_remaining()
    return None if t is None or t > 1e8 else float(t)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, reason: str) -> None:
    context.set_trailing_metadata(((wire.REASON_KEY, reason),))
    context.abort(code, message)


def _handle_error(name: str, context: grpc.ServicerContext, exc: BaseException, fields: dict[str, Any]) -> None:
    code, reason = status_for(exc)
    message = exc.message if isinstance(exc, StatusError) else f"{type(exc).__name__}: {exc}"
    level = logging.ERROR if code == grpc.StatusCode.INTERNAL else logging.WARNING
    log.log(
        level,
        "rpc failed",
        exc_info=exc if reason == wire.REASON_INTERNAL else None,
        extra={
            "fields": {
                "event": "rpc",
                "rpc": name,
                "peer": context.peer(),
                "code": code.name,
                "reason": reason,
                "error": message,
                **fields,
            }
        },
    )
    _abort(context, code, message, reason)


def _unary(name: str, level: int = logging.INFO) -> Callable:
    """Wrap a unary handler: status mapping, timing and one structured log line per call."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(self: DeviceServicer, request: Any, context: grpc.ServicerContext) -> Any:
            t0 = time.perf_counter()
            fields: dict[str, Any] = {}
            if self.shutting_down.is_set():
                _abort(
                    context,
                    grpc.StatusCode.UNAVAILABLE,
                    "server is shutting down; retry against a new instance",
                    wire.REASON_SHUTTING_DOWN,
                )
            try:
                resp = fn(self, request, context, fields)
            except Exception as exc:
                _handle_error(name, context, exc, fields)
                raise  # unreachable: abort raises
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "rpc",
                    extra={
                        "fields": {
                            "event": "rpc",
                            "rpc": name,
                            "peer": context.peer(),
                            "code": "OK",
                            "ms": round((time.perf_counter() - t0) * 1e3, 3),
                            **fields,
                        }
                    },
                )
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
            raise StatusError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"this server cannot load compiled artifacts (firstspike.compiler.artifact is not importable: {e}); "
                "send the artifact's ChipConfig with LoadConfig instead",
                wire.REASON_UNIMPLEMENTED,
            ) from e
        try:
            net = CompiledNetwork.from_bytes(request.artifact)
        except Exception as e:  # the compiler's decode errors (ArtifactDecodeError and kin) name the defect
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT, f"artifact: {type(e).__name__}: {e}", wire.REASON_INVALID
            ) from e
        n = len(net.stages)
        if request.stage >= n:
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"stage {request.stage} out of range; the artifact has {n} stage(s): allowed [0, {n - 1}]",
                wire.REASON_INVALID,
            )
        cfg = net.stages[request.stage].config
        fields.update(stage=request.stage, stages=n)
        le, unchanged = self.host.set_config(request.lease_id, cfg, _time_remaining(context))
        return self._config_response(le, unchanged, fields)

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
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT, "options is required (at least duration_ticks)", wire.REASON_INVALID
            )
        options = wire.options_from_pb(request.options)
        layout = wire.check_layout(request.result_layout, "result_layout")
        inputs = wire.unpack_inputs(request.inputs)
        result, le, us = self.host.run(request.lease_id, request.config_id, inputs, options, _time_remaining(context))
        size = wire.max_spike_bytes(layout, result.spikes.batch_size, len(result.spikes))
        size += 0 if result.membrane is None else result.membrane.nbytes
        if size + 4096 > self.max_message_bytes:
            raise StatusError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the result ({len(result.spikes)} events, {size} bytes) exceeds the server's message limit of "
                f"{self.max_message_bytes} bytes; run smaller batches or use RunStream with smaller chunks",
                wire.REASON_CAPACITY,
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
            _abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "server is shutting down; retry against a new instance",
                wire.REASON_SHUTTING_DOWN,
            )
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
        log.debug(
            "rpc",
            extra={
                "fields": {
                    "event": "rpc",
                    "rpc": "RunStream",
                    "peer": context.peer(),
                    "code": "OK",
                    "ms": round((time.perf_counter() - t0) * 1e3, 3),
                    **fields,
                }
            },
        )


# ---- authentication ----------------------------------------------------------------------------------
_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


class TokenInterceptor(grpc.ServerInterceptor):
    """Require ``authorization: Bearer <token>`` metadata on every RPC except the health check."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        if handler_call_details.method.startswith(_OPEN_PREFIXES):
            return continuation(handler_call_details)
        got = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == wire.AUTH_KEY:
                got = value if isinstance(value, str) else value.decode("latin-1")
        if hmac.compare_digest(got.encode(), self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        missing = not got
        message = (
            "missing bearer token: send metadata 'authorization: Bearer <token>'" if missing else "invalid bearer token"
        )
        log.warning(
            "unauthenticated",
            extra={"fields": {"event": "unauthenticated", "rpc": handler_call_details.method, "missing": missing}},
        )

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, message, wire.REASON_UNAUTHENTICATED)

        # Answer with a handler of the same streaming shape as the real one.
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(bool(handler.request_streaming), bool(handler.response_streaming))]
        return make(deny, handler.request_deserializer, handler.response_serializer)


# ---- server assembly ---------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True for loopback addresses and 'localhost' (the only hosts served without a token)."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass
class RunningServer:
    """A started server: the grpc.Server, its port, the servicer and health service (for shutdown)."""

    server: grpc.Server
    port: int
    host: str
    servicer: DeviceServicer
    health: health.HealthServicer
    tls: bool

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def stop(self, grace_s: float = 10.0) -> None:
        """Graceful stop: health NOT_SERVING, refuse new RPCs, let in-flight ones finish (up to ``grace_s``),
        then close the device after any run still in progress."""
        self.servicer.shutting_down.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        self.servicer.host.close()


def build_server(
    backend: Backend,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    tls_cert: bytes | None = None,
    tls_key: bytes | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_workers: int = 64,
    default_ttl_s: float = DEFAULT_LEASE_TTL_S,
    max_leases: int = 256,
) -> RunningServer:
    """Start serving ``backend`` (non-blocking). Refuses a non-loopback ``host`` without ``token``."""
    if not is_loopback(host) and not token:
        raise ValueError(
            f"refusing to serve on non-loopback address {host!r} without a token: pass --token (and preferably "
            "--tls-cert/--tls-key), or bind 127.0.0.1"
        )
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
    if not 1024 <= max_message_bytes <= 2**31 - 1:
        raise ValueError(f"max_message_bytes {max_message_bytes} out of range; allowed [1024, {2**31 - 1}]")
    dev = DeviceHost(backend, default_ttl_s=default_ttl_s, max_leases=max_leases)
    servicer = DeviceServicer(dev, max_message_bytes=max_message_bytes)
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it silently
    ]
    interceptors = [TokenInterceptor(token)] if token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fs-rpc"),
        options=options,
        interceptors=interceptors,
    )
    pb_grpc.add_DeviceServicer_to_server(servicer, server)
    hs = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    names = (
        pb.DESCRIPTOR.services_by_name["Device"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if tls_cert is not None and tls_key is not None:
            bound = server.add_secure_port(bind, grpc.ssl_server_credentials([(tls_key, tls_cert)]))
        else:
            bound = server.add_insecure_port(bind)
    except RuntimeError as e:
        raise OSError(f"cannot bind {bind}: {e} (port in use or address not available?)") from e
    if not bound:
        raise OSError(f"cannot bind {bind} (port in use or address not available?)")
    server.start()
    for name in ("", wire.SERVICE_NAME):
        hs.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, bound, host, servicer, hs, tls_cert is not None)


# ---- logging -----------------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "info") -> None:
    """Structured (JSON lines) logs of the ``firstspike`` loggers to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("firstspike")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


# ---- process tuning ----------------------------------------------------------------------------------
#: Allocations below this many bytes come from the (reused) heap instead of fresh mmap pages.
SERVER_MMAP_THRESHOLD = 32 << 20
#: Free heap memory above this many bytes is returned to the OS.
SERVER_TRIM_THRESHOLD = 256 << 20


def tune_allocator() -> bool:
    """Make glibc keep freed memory of every thread's heap for reuse (process-wide; False where not glibc).

    The server calls the backend from RPC worker threads, and glibc gives each thread its own arena that hands
    freed memory straight back to the OS and maps large blocks afresh; a simulator run allocates temporaries of
    0.1-10 MB, so on a worker thread a batch-1 run page-faulted 300-630 times (measured: device time 2.3-2.7 ms
    instead of 1.0-1.2 ms). :func:`serve` calls this; embedders of :func:`build_server` may. See
    :func:`firstspike.runtime.allocator.tune_malloc`.
    """
    return tune_malloc(SERVER_MMAP_THRESHOLD, SERVER_TRIM_THRESHOLD)


# ---- command line ------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``firstspike serve`` / ``python -m firstspike.runtime.server`` (gRPC part)."""
    p.add_argument("--backend", default="sim://", help="device URI to serve (default sim://)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 50051; 0 = pick a free one)")
    p.add_argument(
        "--token",
        default=None,
        help="bearer token required on every RPC (default: $FIRSTSPIKE_TOKEN); needed off loopback",
    )
    p.add_argument("--token-file", default=None, help="read the token from this file (keeps it out of ps)")
    p.add_argument("--tls-cert", default=None, help="PEM certificate chain file (enables TLS)")
    p.add_argument("--tls-key", default=None, help="PEM private key file")
    p.add_argument(
        "--max-message-mb",
        type=float,
        default=DEFAULT_MAX_MESSAGE_BYTES / 2**20,
        help="largest request/response in MiB (default 64)",
    )
    p.add_argument("--max-workers", type=int, default=64, help="RPC worker threads (default 64)")
    p.add_argument(
        "--lease-ttl",
        type=float,
        default=DEFAULT_LEASE_TTL_S,
        help="default lease lifetime without renewal, seconds (default 30)",
    )
    p.add_argument("--max-leases", type=int, default=256, help="most leases held at once (default 256)")
    p.add_argument(
        "--grace", type=float, default=10.0, help="seconds in-flight RPCs may take to finish on SIGTERM (default 10)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    # Testing aid: import modules (e.g. one registering a fake backend scheme) before opening the backend.
    p.add_argument("--import", dest="imports", action="append", default=[], help=argparse.SUPPRESS)


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            return f.read().strip() or None
    return args.token or os.environ.get("FIRSTSPIKE_TOKEN") or None


def open_backend_for(args: argparse.Namespace) -> Backend:
    """Import the ``--import`` modules, then open ``--backend``."""
    for mod in args.imports:
        importlib.import_module(mod)
    from firstspike.runtime.devices import open as open_device

    return open_device(args.backend)


def serve(args: argparse.Namespace, *, announce: Callable[[str], None] = print) -> int:
    """Run a server until SIGTERM/SIGINT; prints one JSON line with the bound address on stdout."""
    setup_logging(args.log_level)
    tune_allocator()  # before any RPC thread allocates
    token = _token(args)
    if not is_loopback(args.host) and not token:
        print(
            f"firstspike serve: refusing to bind non-loopback address {args.host!r} without a token; pass --token "
            "(or --token-file / $FIRSTSPIKE_TOKEN) and preferably --tls-cert/--tls-key",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.port <= 65535:
        print(f"firstspike serve: --port {args.port} out of range [0, 65535]", file=sys.stderr)
        return 2
    try:
        backend = open_backend_for(args)
    except (HalError, ValueError, ImportError, OSError) as e:
        print(f"firstspike serve: cannot open backend {args.backend!r}: {e}", file=sys.stderr)
        return 2
    try:
        running = build_server(
            backend,
            host=args.host,
            port=args.port,
            token=token,
            tls_cert=_read(args.tls_cert),
            tls_key=_read(args.tls_key),
            max_message_bytes=int(args.max_message_mb * 2**20),
            max_workers=args.max_workers,
            default_ttl_s=args.lease_ttl,
            max_leases=args.max_leases,
        )
    except (OSError, ValueError) as e:
        backend.close()
        print(f"firstspike serve: {e}", file=sys.stderr)
        return 2
    if token and not running.tls and not is_loopback(args.host):
        log.warning(
            "token sent in clear text",
            extra={"fields": {"event": "insecure_token", "hint": "use --tls-cert/--tls-key"}},
        )
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    info = running.servicer.host.info
    log.info(
        "serving",
        extra={
            "fields": {
                "event": "serving",
                "address": running.address,
                "tls": running.tls,
                "auth": bool(token),
                "backend": args.backend,
                "model": info.model,
                "serial": info.serial,
                "version": info.version,
                "pid": os.getpid(),
            }
        },
    )
    announce(
        json.dumps(
            {
                "event": "listening",
                "address": running.address,
                "port": running.port,
                "tls": running.tls,
                "pid": os.getpid(),
            }
        )
    )
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    sig = signal.Signals(received[0]).name if received else "?"
    log.info(
        "shutting down",
        extra={
            "fields": {
                "event": "shutdown",
                "signal": sig,
                "grace_s": args.grace,
                "leases": running.servicer.host.lease_count(),
            }
        },
    )
    running.stop(args.grace)
    log.info("stopped", extra={"fields": {"event": "stopped"}})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m firstspike.runtime.server [--backend URI] [--host H] [--port P] ...``"""
    parser = argparse.ArgumentParser(prog="python -m firstspike.runtime.server", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
