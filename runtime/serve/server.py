"""Server assembly: a started ``grpc.Server`` serving one Backend, with health checks and reflection.

:func:`build_server` wires the parts together: the :class:`~firstspike.runtime.serve.host.DeviceHost` (leases and
scheduling), the :class:`~firstspike.runtime.serve.servicer.DeviceServicer`, the token check
(:mod:`firstspike.runtime.serve.auth`), the standard health service and server reflection. It returns a
:class:`RunningServer` to stop it gracefully. :func:`tune_allocator` is the process-wide memory setting
recommended for a server process. The command line around it is :mod:`firstspike.runtime.commands.serve`.
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from firstspike.hal.backend import Backend
from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.proto.firstspike.v1 import device_pb2_grpc as pb_grpc
from firstspike.runtime import wire
from firstspike.runtime.allocator import tune_malloc
from firstspike.runtime.serve.auth import TokenInterceptor, is_loopback
from firstspike.runtime.serve.host import DEFAULT_LEASE_TTL_S, DeviceHost
from firstspike.runtime.serve.servicer import DEFAULT_MAX_MESSAGE_BYTES, DeviceServicer

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "DEFAULT_PORT", "RunningServer", "build_server", "tune_allocator"]

DEFAULT_PORT = 50051


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


def tune_allocator() -> bool:
    """Make glibc keep freed memory of every thread's heap for reuse (process-wide; False where not glibc).

    The server calls the backend from RPC worker threads, and glibc gives each thread its own arena that hands
    freed memory straight back to the OS and maps large blocks afresh; a simulator run allocates temporaries of
    0.1-10 MB, so on a worker thread a batch-1 run page-faulted 300-630 times (measured: device time 2.3-2.7 ms
    instead of 1.0-1.2 ms). The ``firstspike`` command line does it once for every command (``serve`` included);
    embedders of :func:`build_server` should call this. It is :func:`firstspike.runtime.allocator.tune_malloc`
    with its defaults, the one setting of the project.
    """
    return tune_malloc()
