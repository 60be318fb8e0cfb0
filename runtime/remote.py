"""``grpc://host:port``: a hal Backend on a firstspike device server (see docs/protocol.md).

:class:`GrpcBackend` implements exactly the hal Backend interface (info/configure/run/close), so sessions
and training work unchanged over the network. Underneath it

* holds a lease, acquired on first use, renewed by a keepalive thread, released on :meth:`close`;
* keeps two configuration mirrors (:mod:`firstspike.hal.mirror`): the Backend's own, the configuration this client
  gave the device (a full ``configure`` travels as LoadConfig, a diff as UpdateConfig), and one of what the
  server's lease holds. Before every call the lease is brought to the client's configuration. After a server
  restart (lease unknown) the client acquires a new lease, uploads the configuration again, then repeats the call;
* puts a deadline on every call, retries UNAVAILABLE with exponential backoff only for idempotent calls
  (everything but AcquireLease), and turns status codes into Python exceptions that are also hal errors
  (:class:`RemoteError` and subclasses);
* asks for results in the columns layout (4-6 bytes per spike instead of 10);
* sends batches larger than ``stream_threshold`` entries whose largest possible result does not fit one message
  as a pipelined RunStream of chunks (one Run is much cheaper when it fits).

``grpc://h1:p1,h2:p2`` opens a :class:`firstspike.runtime.devices.DevicePool` of one GrpcBackend per server.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from firstspike.hal.backend import Backend, DeviceInfo, RunOptions, RunResult
from firstspike.hal.config import ChipConfig, ConfigDiff
from firstspike.hal.errors import BackendError, CapacityError, DeviceBusyError, LinkError
from firstspike.hal.events import InputSpikes
from firstspike.hal.mirror import ConfigMirror
from firstspike.hal.registry import DeviceURI
from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.proto.firstspike.v1 import device_pb2_grpc as pb_grpc
from firstspike.runtime import wire
from firstspike.runtime.devices import DevicePool

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RUN_TIMEOUT_S = 300.0
DEFAULT_RETRIES = 4
DEFAULT_LEASE_TTL_S = 30.0
DEFAULT_STREAM_THRESHOLD = 4096
DEFAULT_CHUNK_ENTRIES = 1024
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20
_BACKOFF_START_S = 0.1
_BACKOFF_MAX_S = 1.0


# ---- errors ------------------------------------------------------------------------------------------
class RemoteError(BackendError):
    """A call to a device server failed. ``code`` (grpc.StatusCode), ``reason`` (the server's fs-reason
    metadata, may be empty), ``method`` and ``target`` say which call and why."""

    def __init__(
        self, message: str, *, code: grpc.StatusCode | None = None, reason: str = "", method: str = "", target: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.method = method
        self.target = target


class RemoteInvalidArgumentError(RemoteError, ValueError):
    """The server rejected a request's values (INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION)."""


class RemoteCapacityError(RemoteError, CapacityError):
    """The request exceeds what the device or the server accepts (RESOURCE_EXHAUSTED)."""


class RemoteBusyError(RemoteError, DeviceBusyError):
    """Another client holds the device exclusively (ABORTED)."""


class RemoteUnavailableError(RemoteError, LinkError):
    """The server could not be reached in time (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED)."""


class RemoteAuthError(RemoteError, PermissionError):
    """Missing or wrong bearer token (UNAUTHENTICATED, PERMISSION_DENIED)."""


class RemoteNotFoundError(RemoteError, LookupError):
    """An id the server does not know (NOT_FOUND), e.g. an expired lease."""


class RemoteUnimplementedError(RemoteError, NotImplementedError):
    """The server does not support this call (UNIMPLEMENTED)."""


_ERROR_TYPES: dict[grpc.StatusCode, type[RemoteError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: RemoteInvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: RemoteInvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: RemoteInvalidArgumentError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RemoteCapacityError,
    grpc.StatusCode.ABORTED: RemoteBusyError,
    grpc.StatusCode.UNAVAILABLE: RemoteUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: RemoteUnavailableError,
    grpc.StatusCode.CANCELLED: RemoteUnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: RemoteAuthError,
    grpc.StatusCode.PERMISSION_DENIED: RemoteAuthError,
    grpc.StatusCode.NOT_FOUND: RemoteNotFoundError,
    grpc.StatusCode.UNIMPLEMENTED: RemoteUnimplementedError,
}


def _reason(e: grpc.RpcError) -> str:
    try:
        md = e.trailing_metadata() or ()  # type: ignore[attr-defined]
    except Exception:  # some RpcErrors (e.g. raised before the call started) carry no metadata
        return ""
    for k, v in md:
        if k == wire.REASON_KEY:
            return v if isinstance(v, str) else v.decode("latin-1")
    return ""


def remote_error(e: grpc.RpcError, method: str, target: str, attempts: int = 1) -> RemoteError:
    """Turn a grpc.RpcError into the matching :class:`RemoteError` subclass with a clear message."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = (e.details() if hasattr(e, "details") else str(e)) or ""
    cls = _ERROR_TYPES.get(code, RemoteError)
    msg = f"grpc://{target} {method}: {code.name}: {details}"
    if code == grpc.StatusCode.UNAVAILABLE:
        msg += f" (server unreachable or restarting; gave up after {attempts} attempt(s))"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        msg += " (the call's deadline passed: raise timeout/run_timeout for long runs)"
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        msg += " (pass ?token=... in the URI or set FIRSTSPIKE_TOKEN)"
    return cls(msg, code=code, reason=_reason(e), method=method, target=target)


_RECOVERABLE = (wire.REASON_LEASE_UNKNOWN, wire.REASON_CONFIG_MISMATCH, wire.REASON_DIFF_BASE)
#: A configuration the lease must hold: (config, its digest, a diff to it that may be sent instead, or None).
_Upload = tuple[ChipConfig, bytes, ConfigDiff | None]


# ---- the backend -------------------------------------------------------------------------------------
def _rejected(e: grpc.RpcError) -> bool:
    """The server refused the request's values: it changed nothing (the Backend contract)."""
    cls = _ERROR_TYPES.get(e.code()) if hasattr(e, "code") else None
    return cls is not None and issubclass(cls, ValueError)


def _bool_param(uri: DeviceURI, name: str, default: bool) -> bool:
    v = uri.param(name)
    if v is None:
        return default
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"grpc:// parameter {name}={v!r} is not a boolean; use 1/0, true/false")


def parse_targets(netloc: str) -> list[str]:
    """``h1:p1,h2:p2`` -> ["h1:p1", "h2:p2"]; every entry needs a host and a port 1..65535."""
    if not netloc:
        raise ValueError("grpc:// needs host:port, e.g. grpc://127.0.0.1:50051 (or h1:p1,h2:p2 for a pool)")
    out = []
    for part in netloc.split(","):
        part = part.strip()
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"grpc:// target {part!r} is not host:port with a port in [1, 65535]")
        if host.startswith("[") != host.endswith("]"):
            raise ValueError(f"grpc:// target {part!r}: IPv6 addresses go in brackets, e.g. [::1]:50051")
        out.append(f"{host}:{int(port)}")
    return out


URI_PARAMS = {
    "token",
    "tls",
    "ca",
    "server_name",
    "timeout",
    "run_timeout",
    "retries",
    "ttl",
    "exclusive",
    "wait",
    "name",
    "stream_threshold",
    "chunk",
    "max_message_mb",
}


class GrpcBackend(Backend):
    """A device on a firstspike gRPC server (``grpc://host:port``). Not thread-safe for concurrent calls
    from several threads except :meth:`close`; open one per thread (each holds its own lease).

    Times are seconds. ``timeout_s`` bounds each non-run call (retries included), ``run_timeout_s`` each run.
    """

    scheme = "grpc"
    #: A failed upload leaves the client's previous configuration in force: the lease gets it back before the
    #: next call.
    restores_config_on_error = True

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        server_name: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        run_timeout_s: float = DEFAULT_RUN_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        exclusive: bool = False,
        wait_s: float = 0.0,
        client_name: str = "",
        stream_threshold: int = DEFAULT_STREAM_THRESHOLD,
        chunk_entries: int = DEFAULT_CHUNK_ENTRIES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if chunk_entries < 1 or stream_threshold < 1:
            raise ValueError("chunk_entries and stream_threshold must be >= 1")
        self.target = target
        self.timeout_s = float(timeout_s)
        self.run_timeout_s = float(run_timeout_s)
        self.retries = int(retries)
        self.lease_ttl_s = float(lease_ttl_s)
        self.exclusive = bool(exclusive)
        self.wait_s = float(wait_s)
        self.client_name = client_name or f"pid{os.getpid()}"
        self.stream_threshold = int(stream_threshold)
        self.chunk_entries = int(chunk_entries)
        self.max_message_bytes = int(max_message_bytes)
        token = token if token is not None else os.environ.get("FIRSTSPIKE_TOKEN")
        self._metadata: tuple[tuple[str, str], ...] = ((wire.AUTH_KEY, f"Bearer {token}"),) if token else ()
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Reconnect quickly after a server restart (the default backoff grows to 2 minutes).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 500),  # < the retry window (0.1+0.2+0.4+0.8 s by default)
            ("grpc.enable_retries", 0),  # we retry ourselves, idempotent calls only
            ("grpc.use_local_subchannel_pool", 1),  # own connection: closing one backend never affects another
        ]
        if tls or ca_file:
            root = None
            if ca_file:
                with open(ca_file, "rb") as f:
                    root = f.read()
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root), options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.DeviceStub(self._channel)
        self._lock = threading.RLock()  # one call at a time; the keepalive thread only tries it
        self._closed = False
        self._lease: str | None = None
        self._lease_ttl_s = self.lease_ttl_s
        self._last_call = time.monotonic()
        self.mirror.commit_default()  # the client's configuration: what every lease of this backend must hold
        self._on_lease = ConfigMirror()  # what the server's lease holds (by digest; unknown without a lease)
        #: a diff the client has taken but the lease not yet: it travels with the next Run (one round trip per
        #: training step); (the base configuration, its digest, the diff)
        self._deferred: tuple[ChipConfig, bytes, ConfigDiff] | None = None
        self._step = ""  # the RPC in progress (named in error messages)
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None
        try:
            self._info = wire.info_from_pb(
                self._call("GetInfo", self._stub.GetInfo, pb.GetInfoRequest, idempotent=True, session=False)
            )
        except BaseException:
            self._channel.close()
            raise

    @classmethod
    def from_uri(cls, uri: DeviceURI) -> Backend:
        """``grpc://host:port?token=..&tls=1&ca=PATH&timeout=S&run_timeout=S&retries=N&ttl=S&exclusive=1&
        wait=S&name=TEXT&stream_threshold=N&chunk=N&max_message_mb=MB``; several comma-separated
        ``host:port`` give a :class:`firstspike.runtime.devices.DevicePool`."""
        uri.check_params(URI_PARAMS)
        targets = parse_targets(uri.netloc)
        kw: dict[str, Any] = {
            "token": uri.param("token"),
            "tls": _bool_param(uri, "tls", False),
            "ca_file": uri.param("ca"),
            "server_name": uri.param("server_name"),
            "timeout_s": uri.float_param("timeout", DEFAULT_TIMEOUT_S, 0.01, 86400.0),
            "run_timeout_s": uri.float_param("run_timeout", DEFAULT_RUN_TIMEOUT_S, 0.01, 7 * 86400.0),
            "retries": uri.int_param("retries", DEFAULT_RETRIES, 0, 100),
            "lease_ttl_s": uri.float_param("ttl", DEFAULT_LEASE_TTL_S, 0.1, 600.0),
            "exclusive": _bool_param(uri, "exclusive", False),
            "wait_s": uri.float_param("wait", 0.0, 0.0, 600.0),
            "client_name": uri.param("name", "") or "",
            "stream_threshold": uri.int_param("stream_threshold", DEFAULT_STREAM_THRESHOLD, 1, 1 << 16),
            "chunk_entries": uri.int_param("chunk", DEFAULT_CHUNK_ENTRIES, 1, 1 << 16),
            "max_message_bytes": int(uri.float_param("max_message_mb", 64.0, 0.01, 2047.0) * 2**20),
        }
        if len(targets) == 1:
            return cls(targets[0], **kw)
        return DevicePool.open([functools.partial(cls, t, **kw) for t in targets])

    # ---- plumbing --------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(f"grpc://{self.target} is closed")

    def _call(
        self,
        method: str,
        rpc: Callable[..., Any],
        make_request: Callable[[], Any],
        *,
        idempotent: bool,
        session: bool,
        timeout_s: float | None = None,
        upload: _Upload | None = None,
    ) -> Any:
        """One logical call: deadline over all attempts, backoff on UNAVAILABLE (idempotent calls only),
        and for session calls a lease + uploaded configuration first, recovered once if the server lost them.
        ``upload``: the configuration the lease must hold (default: the client's current one)."""
        budget = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + budget
        backoff = _BACKOFF_START_S
        attempts = 0
        recoveries = 0
        while True:
            attempts += 1
            try:
                if session:
                    self._ensure_session(deadline, upload)
                self._step = method
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RemoteUnavailableError(
                        f"grpc://{self.target} {method}: deadline of {budget} s passed after {attempts - 1} attempt(s)",
                        code=grpc.StatusCode.DEADLINE_EXCEEDED,
                        method=method,
                        target=self.target,
                    )
                resp = rpc(make_request(), timeout=remaining, metadata=self._metadata)
                self._last_call = time.monotonic()
                return resp
            except grpc.RpcError as e:
                code, reason = e.code(), _reason(e)
                if session and reason in _RECOVERABLE and recoveries < 2:
                    # The server restarted (lease unknown) or holds another config: set the session up again.
                    recoveries += 1
                    self._forget_session(lease_lost=reason == wire.REASON_LEASE_UNKNOWN)
                    continue
                retryable = code == grpc.StatusCode.UNAVAILABLE and (idempotent or self._step != method)
                if retryable and attempts <= self.retries and deadline - time.monotonic() > backoff:
                    time.sleep(backoff)
                    backoff = min(2 * backoff, _BACKOFF_MAX_S)
                    if reason == wire.REASON_SHUTTING_DOWN:
                        self._forget_session(lease_lost=True)  # the next instance will not know our lease
                    continue
                raise remote_error(e, self._step, self.target, attempts) from None

    def _forget_session(self, *, lease_lost: bool) -> None:
        if lease_lost:
            self._lease = None
            self._deferred = None  # a new lease gets the client's whole configuration
        self._on_lease.forget()

    def _ensure_session(self, deadline: float, upload: _Upload | None) -> None:
        """Hold a lease whose configuration is ``upload``'s, or the client's (acquire and/or upload as needed)."""
        if upload is None:
            self._deferred = None  # a call without the waiting diff: the client's configuration goes as planned below
        if self._lease is None:
            timeout = max(0.001, deadline - time.monotonic())
            req = pb.AcquireLeaseRequest(
                client_name=self.client_name[:128],
                exclusive=self.exclusive,
                ttl_ms=int(self.lease_ttl_s * 1000),
                wait_ms=int(self.wait_s * 1000),
            )
            self._step = "AcquireLease"
            resp = self._stub.AcquireLease(req, timeout=timeout + self.wait_s, metadata=self._metadata)
            self._lease = resp.lease_id
            self._lease_ttl_s = resp.ttl_ms / 1000.0
            self._on_lease.commit(None, bytes.fromhex(resp.config_id))
            self._start_keepalive()
        cfg, digest, diff = upload if upload is not None else (self.mirror.config, self.mirror.digest, None)
        if digest is not None and self._on_lease.holds(digest):
            return  # the common case, every run: nothing to upload
        if cfg is None or digest is None:
            raise BackendError(f"grpc://{self.target}: this client's configuration is unknown after a failed "
                               "upload; configure the device again")
        # The client sends what it was given: a diff as UpdateConfig (if the lease holds its base), a full
        # configuration whole, never a diff of its own making.
        plan = self._on_lease.plan(cfg, digest, diff=diff, compute_diff=False)
        if plan.kind == "none":
            return
        timeout = max(0.001, deadline - time.monotonic())
        try:
            if plan.kind == "diff":
                assert plan.diff is not None
                self._step = "UpdateConfig"
                req = pb.UpdateConfigRequest(lease_id=self._lease, diff=plan.diff.to_bytes())
                resp = self._stub.UpdateConfig(req, timeout=timeout, metadata=self._metadata)
            else:
                self._step = "LoadConfig"
                req = pb.LoadConfigRequest(lease_id=self._lease, config=cfg.to_bytes())
                resp = self._stub.LoadConfig(req, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            if not _rejected(e):
                self._on_lease.forget()  # it may or may not have arrived
            raise
        got = bytes.fromhex(resp.config_id)
        self._on_lease.commit(None, got)
        if got != digest:
            raise RemoteError(
                f"grpc://{self.target}: the server holds configuration {resp.config_id[:12]} after the upload, "
                f"expected {digest.hex()[:12]} (encoding mismatch between client and server?)",
                target=self.target,
            )

    def _config_id(self) -> str:
        digest = self.mirror.digest
        return "" if digest is None else digest.hex()

    def _start_keepalive(self) -> None:
        if self._keepalive is None or not self._keepalive.is_alive():
            self._stop.clear()
            # The thread holds only a weak reference: a backend nobody closed is still collected (its lease
            # then simply expires on the server).
            self._keepalive = threading.Thread(
                target=_keepalive_loop,
                args=(weakref.ref(self), self._stop),
                name=f"fs-lease-{self.target}",
                daemon=True,
            )
            self._keepalive.start()

    def _renew_if_idle(self) -> None:
        """One keepalive step: renew the lease if no call did recently and none is in flight."""
        if time.monotonic() - self._last_call < self._lease_ttl_s / 3:
            return  # a recent call renewed the lease
        if not self._lock.acquire(blocking=False):
            return  # a call is in flight: it renews the lease
        try:
            lease = self._lease
            if lease is None or self._closed:
                return
            try:
                self._stub.RenewLease(
                    pb.RenewLeaseRequest(lease_id=lease),
                    timeout=min(5.0, self._lease_ttl_s / 3),
                    metadata=self._metadata,
                )
                self._last_call = time.monotonic()
            except grpc.RpcError as e:
                if _reason(e) == wire.REASON_LEASE_UNKNOWN:
                    self._forget_session(lease_lost=True)  # next call re-acquires and re-uploads
        finally:
            self._lock.release()

    # ---- the Backend interface -------------------------------------------------------------------
    def info(self) -> DeviceInfo:
        """The server's device info (fetched once at open; server fields in ``extra['server']``)."""
        self._check_open()
        return self._info

    def _load_config(self, config: ChipConfig, digest: bytes) -> None:
        """Primitive: the lease takes ``config`` (LoadConfig, or nothing if it holds it)."""
        self._deferred = None  # a whole configuration supersedes a diff still waiting for a run
        self._push((config, digest, None))

    def _apply_diff(self, diff: ConfigDiff, target: ChipConfig | None) -> None:
        """Primitive: the lease takes ``diff``. If the lease holds its base, the diff waits for the next
        :meth:`run`, which carries it (``RunRequest.config_diff``: new weights and their run in one round trip);
        any other call sends it first as UpdateConfig. Otherwise it goes now (the full target if the lease holds
        another base)."""
        if target is None:  # this mirror holds the client's own configuration, never only a digest
            raise BackendError(f"grpc://{self.target}: no configuration to apply the diff to")
        self._flush_deferred()
        base = self.mirror.config  # the client's configuration before this diff (committed after it)
        if self._lease is not None and base is not None and self._on_lease.holds(diff.base_digest):
            self._deferred = (base, diff.base_digest, diff)
            return
        self._push((target, diff.target_digest, diff))

    def _flush_deferred(self) -> None:
        """Send a diff waiting for a run now (UpdateConfig), for any call other than :meth:`run`."""
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            cfg = self.mirror.config
            assert cfg is not None  # committed by Backend.sync after _apply_diff
            try:
                self._push((cfg, deferred[2].target_digest, deferred[2]))
            except BaseException:
                self._deferred = deferred  # still owed: the next call tries again
                raise

    def _push(self, upload: _Upload) -> None:
        with self._lock:
            self._call("Configure", lambda *a, **k: None, lambda: None, idempotent=True, session=True, upload=upload)

    @property
    def config(self) -> ChipConfig:
        """The last configuration given to this backend (a private copy; do not mutate)."""
        cfg = self.mirror.config
        if cfg is None:
            raise BackendError(f"grpc://{self.target}: the configuration is unknown after a failed upload")
        return cfg

    @property
    def config_id(self) -> str:
        """Hex SHA-256 of :attr:`config` (the id the server reports)."""
        return self._config_id()

    def run(self, inputs: InputSpikes, options: RunOptions) -> RunResult:
        """Run on the server; batches above ``stream_threshold`` entries whose result may not fit one message
        (:meth:`result_fits_one_message`) go as a pipelined RunStream."""
        self._check_open()
        self.check_run_request(inputs, options)
        if inputs.batch_size > self.stream_threshold and not self.result_fits_one_message(inputs, options):
            return self.run_stream(inputs, options)
        with self._lock:
            opts = wire.options_to_pb(options)
            batch = wire.pack_events(inputs.events, inputs.batch_size)
            deferred = self._deferred
            diff_bytes = b"" if deferred is None else deferred[2].to_bytes()

            def make() -> pb.RunRequest:
                return pb.RunRequest(
                    lease_id=self._lease or "",
                    config_id=self._config_id(),
                    inputs=batch,
                    options=opts,
                    result_layout=wire.COLUMNS,
                    config_diff=diff_bytes,
                )

            # with a diff the lease must hold its base (re-uploaded after a lost lease), then takes it in the Run
            base = None if deferred is None else (deferred[0], deferred[1], None)
            try:
                resp = self._call("Run", self._stub.Run, make, idempotent=True, session=True,
                                  timeout_s=self.run_timeout_s, upload=base)
            except BaseException:
                if deferred is not None:
                    # the diff may or may not have been applied: the next call uploads the whole configuration
                    self._deferred = None
                    self._on_lease.forget()
                raise
            if deferred is not None:
                self._deferred = None
                self._on_lease.commit(None, bytes.fromhex(resp.config_id))
        return wire.result_from_pb(resp)

    def result_fits_one_message(self, inputs: InputSpikes, options: RunOptions) -> bool:
        """Whether the largest result this run can return fits one response (both sides' message limits).

        The bound: first spikes (``record="first"``) are at most one per enabled neuron and entry, all spikes at
        most the device's ``max_events``; spikes travel as columns (4 bytes per entry, at most 6 per spike),
        membrane samples as int32. Large batches whose result fits go as one ``Run``: on loopback, 10 000
        yin-yang entries took 282 ms as one Run against 266 ms in-process, and 419 ms as a RunStream of
        1024-entry chunks against 343 ms (one benchmark run each, docs/protocol.md section 11)."""
        b = inputs.batch_size
        info = self.info()
        events = info.max_events if info.max_events else 1 << 62
        if options.record == "first":
            events = min(events, b * int(np.count_nonzero(self.config.neurons.values["enabled"])))
        samples = -(-options.duration_ticks // max(1, options.readout_period))  # a sample at 0, P, 2P, ... < duration
        membrane = 4 * b * len(options.readout) * samples
        request = wire.max_spike_bytes(wire.RECORDS, b, len(inputs)) + 4096
        server_limit = int(info.extra.get("server", {}).get("max_message_bytes") or self.max_message_bytes)
        limit = min(self.max_message_bytes, server_limit)
        return max(wire.max_spike_bytes(wire.COLUMNS, b, events) + membrane + 4096, request) <= limit

    def run_stream(self, inputs: InputSpikes, options: RunOptions, chunk_entries: int | None = None) -> RunResult:
        """Run as a RunStream of chunks of ``chunk_entries`` entries (server computes one while the next
        travels); results joined in the original order. Noise keys are chunking-invariant (entry_offset)."""
        self._check_open()
        self.check_run_request(inputs, options)
        n = int(chunk_entries or self.chunk_entries)
        if n < 1:
            raise ValueError(f"chunk_entries must be >= 1, got {n}")
        sizes = [min(n, inputs.batch_size - s) for s in range(0, inputs.batch_size, n)] or [0]
        chunks = inputs.split(sizes)
        starts = np.cumsum([0, *sizes[:-1]]).tolist()
        with self._lock:
            self._flush_deferred()  # chunks do not carry a diff
            base = wire.options_to_pb(options)

            def requests() -> Iterator[pb.RunRequest]:
                for k, (chunk, start) in enumerate(zip(chunks, starts, strict=True)):
                    opts = pb.RunOptions()
                    opts.CopyFrom(base)
                    opts.entry_offset = options.entry_offset + int(start)
                    yield pb.RunRequest(
                        lease_id=self._lease or "",
                        config_id=self._config_id(),
                        sequence=k,
                        inputs=wire.pack_events(chunk.events, chunk.batch_size),
                        options=opts,
                        result_layout=wire.COLUMNS,
                    )

            def stream(req_iter: Iterator[pb.RunRequest], *, timeout: float, metadata: Any) -> list[pb.RunResponse]:
                # Materialise inside the attempt so a broken stream is retried as a whole.
                return list(self._stub.RunStream(req_iter, timeout=timeout, metadata=metadata))

            responses = self._call(
                "RunStream", stream, requests, idempotent=True, session=True, timeout_s=self.run_timeout_s
            )
        if [r.sequence for r in responses] != list(range(len(chunks))):
            raise RemoteError(
                f"grpc://{self.target} RunStream: answers out of order or missing "
                f"({len(responses)} for {len(chunks)} chunks)",
                target=self.target,
            )
        return RunResult.concatenate([wire.result_from_pb(r) for r in responses])

    def close(self) -> None:
        """Release the lease (best effort) and close the connection. Closing twice is harmless."""
        if self._closed:
            return
        self._stop.set()
        with self._lock:
            self._closed = True
            lease, self._lease = self._lease, None
            if lease is not None:
                # If the server is gone or forgot the lease there is nothing to release.
                with contextlib.suppress(grpc.RpcError):
                    self._stub.ReleaseLease(
                        pb.ReleaseLeaseRequest(lease_id=lease),
                        timeout=min(2.0, self.timeout_s),
                        metadata=self._metadata,
                    )
            self._channel.close()
        if self._keepalive is not None and self._keepalive is not threading.current_thread():
            self._keepalive.join(timeout=1.0)

    # ---- explicit session API --------------------------------------------------------------------
    @property
    def lease_id(self) -> str | None:
        """The current lease id (None before the first configure/run or after the server lost it)."""
        return self._lease

    def acquire(self) -> str:
        """Acquire the lease now (otherwise the first configure/run does); returns its id."""
        self._check_open()
        with self._lock:
            self._call("AcquireLease", lambda *a, **k: None, lambda: None, idempotent=False, session=True)
            assert self._lease is not None
            return self._lease

    def release(self) -> None:
        """Release the lease now (a later call acquires a new one and uploads the configuration again)."""
        self._check_open()
        with self._lock:
            lease = self._lease
            if lease is None:
                return
            self._forget_session(lease_lost=True)
            try:
                self._stub.ReleaseLease(
                    pb.ReleaseLeaseRequest(lease_id=lease), timeout=self.timeout_s, metadata=self._metadata
                )
            except grpc.RpcError as e:
                if _reason(e) != wire.REASON_LEASE_UNKNOWN:
                    raise remote_error(e, "ReleaseLease", self.target) from None

    def reset(self) -> None:
        """Reset: the lease's configuration becomes the default ChipConfig and the device is reconfigured."""
        self._check_open()
        with self._lock:
            self._call(
                "Reset",
                self._stub.Reset,
                lambda: pb.ResetRequest(lease_id=self._lease or ""),
                idempotent=True,
                session=True,
            )
            self.mirror.commit_default()
            self._on_lease.commit(None, self.mirror.digest)

    def load_artifact(self, artifact: bytes, stage: int = 0) -> str:
        """Configure from a compiled artifact (``CompiledNetwork.to_bytes()``), parsed by the server; returns
        the configuration id. The client then fetches the resulting ChipConfig (GetConfig) and keeps it, for
        diffs and for re-uploading after a server restart."""
        self._check_open()
        if not isinstance(artifact, bytes | bytearray | memoryview):
            raise TypeError(f"load_artifact() takes the artifact's bytes, not {type(artifact).__name__}")
        with self._lock:
            self._call(
                "LoadArtifact",
                self._stub.LoadArtifact,
                lambda: pb.LoadArtifactRequest(lease_id=self._lease or "", artifact=bytes(artifact), stage=int(stage)),
                idempotent=True,
                session=True,
            )
            # From here the server's lease holds the artifact's config, which we do not know yet.
            self._on_lease.forget()
            resp = self._call(
                "GetConfig",
                self._stub.GetConfig,
                lambda: pb.GetConfigRequest(lease_id=self._lease or ""),
                idempotent=True,
                session=False,
            )
            cfg = ChipConfig.from_bytes(resp.config)
            digest = hashlib.sha256(resp.config).digest()
            if digest.hex() != resp.config_id:
                raise RemoteError(
                    f"grpc://{self.target} GetConfig: config bytes do not match config_id {resp.config_id[:12]}",
                    target=self.target,
                )
            self.mirror.commit(cfg, digest)
            self._on_lease.commit(None, digest)
            return resp.config_id

    def health(self, service: str = "") -> str:
        """The standard health check: "SERVING", "NOT_SERVING", ... (raises RemoteError if unreachable)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout_s)
        except grpc.RpcError as e:
            raise remote_error(e, "Health.Check", self.target) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def _keepalive_loop(ref: weakref.ref[GrpcBackend], stop: threading.Event) -> None:
    while True:
        backend = ref()
        if backend is None:
            return
        interval = max(0.05, backend._lease_ttl_s / 3)
        del backend  # do not keep it alive while sleeping
        if stop.wait(interval):
            return
        backend = ref()
        if backend is None:
            return
        backend._renew_if_idle()
        del backend


__all__ = [
    "GrpcBackend",
    "RemoteAuthError",
    "RemoteBusyError",
    "RemoteCapacityError",
    "RemoteError",
    "RemoteInvalidArgumentError",
    "RemoteNotFoundError",
    "RemoteUnavailableError",
    "RemoteUnimplementedError",
    "remote_error",
]
