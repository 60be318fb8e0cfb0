"""``firstspike serve``: serve a device over gRPC (default), or run the device side of the serial link.

    firstspike serve [--backend sim://...] [--host 127.0.0.1] [--port 50051] [--token T] [--tls-cert C --tls-key K]
    firstspike serve --serial-pty [--backend sim://...]        # a pseudo-terminal speaking the serial protocol
    firstspike serve --serial-tcp PORT [--backend sim://...]   # the serial protocol over a TCP socket
    firstspike serve --backend sim://?serial=3 --calibration chip3.fscal   # report the chip's calibration

``--calibration FILE`` (from ``firstspike calibrate``) is checked against the backend's chip and reported in the
device info (``extra["calibration"]``, :mod:`firstspike.runtime.calibration.serving`).

On start the gRPC server prints one JSON line to stdout, ``{"event": "listening", "address": ..., "port": ...}``
(``--port 0`` picks a free port); logs are JSON lines on stderr. SIGTERM/SIGINT shut down gracefully.

This module's job: the options, the startup line and the signal loop. The server itself is assembled by
:mod:`firstspike.runtime.serve` (``python -m firstspike.runtime.server`` runs :func:`main` here).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from firstspike.hal.backend import Backend
from firstspike.hal.errors import HalError
from firstspike.runtime.serve.auth import is_loopback
from firstspike.runtime.serve.host import DEFAULT_LEASE_TTL_S
from firstspike.runtime.serve.jsonlog import event, setup_logging
from firstspike.runtime.serve.server import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PORT, build_server, tune_allocator


def run(args: argparse.Namespace) -> int:
    if args.serial_pty or args.serial_tcp is not None:
        return _serve_serial(args)
    return serve_grpc(args)


def add_grpc_arguments(p: argparse.ArgumentParser) -> None:
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


def with_calibration_arg(backend: Backend, args: argparse.Namespace) -> Backend:
    """``backend`` wrapped with the ``--calibration`` file (if given): the server then reports its chip's calibration
    in the device info; a file of another chip is refused: the backend is closed and ValueError raised."""
    if getattr(args, "calibration", None) is None:
        return backend
    from firstspike.runtime.calibration.serving import attach_calibration

    try:
        return attach_calibration(backend, args.calibration)
    except ValueError:
        backend.close()
        raise


def open_backend_for(args: argparse.Namespace) -> Backend:
    """Import the ``--import`` modules, then open ``--backend``."""
    for mod in args.imports:
        importlib.import_module(mod)
    from firstspike.runtime.devices import open as open_device

    return open_device(args.backend)


def serve_grpc(args: argparse.Namespace, *, announce: Callable[[str], None] = print) -> int:
    """Run a server until SIGTERM/SIGINT; prints one JSON line with the bound address on stdout."""
    setup_logging(args.log_level)
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
        backend = with_calibration_arg(open_backend_for(args), args)
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
        event(logging.WARNING, "token sent in clear text",
              {"event": "insecure_token", "hint": "use --tls-cert/--tls-key"})
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    info = running.servicer.host.info
    event(
        logging.INFO,
        "serving",
        {
            "event": "serving",
            "address": running.address,
            "tls": running.tls,
            "auth": bool(token),
            "backend": args.backend,
            "model": info.model,
            "serial": info.serial,
            "version": info.version,
            "pid": os.getpid(),
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
    event(
        logging.INFO,
        "shutting down",
        {"event": "shutdown", "signal": sig, "grace_s": args.grace, "leases": running.servicer.host.lease_count()},
    )
    running.stop(args.grace)
    event(logging.INFO, "stopped", {"event": "stopped"})
    return 0


def _serve_serial(args: argparse.Namespace) -> int:
    try:
        from firstspike.drivers.device_side import run_serial_device  # the drivers package provides the device side
    except ImportError as e:
        print(f"firstspike serve: the serial device side is not available (firstspike.drivers.device_side: {e})",
              file=sys.stderr)
        return 2
    if args.serial_pty and args.serial_tcp is not None:
        print("firstspike serve: choose one of --serial-pty and --serial-tcp", file=sys.stderr)
        return 2
    if args.serial_tcp is not None and not is_loopback(args.host):
        # The serial link has no authentication: never expose it beyond this machine.
        print(
            f"firstspike serve: refusing to expose the serial link on non-loopback address {args.host!r}; "
            "it has no authentication (use gRPC with --token and TLS for remote access)",
            file=sys.stderr,
        )
        return 2
    setup_logging(args.log_level)
    try:
        backend = with_calibration_arg(open_backend_for(args), args)
    except (ValueError, ImportError, OSError, LookupError) as e:
        print(f"firstspike serve: cannot open backend {args.backend!r}: {e}", file=sys.stderr)
        return 2

    def announce(line: str) -> None:
        print(line, flush=True)

    try:
        run_serial_device(backend, pty=args.serial_pty, tcp_port=args.serial_tcp, host=args.host, on_ready=announce)
    finally:
        backend.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m firstspike.runtime.server [--backend URI] [--host H] [--port P] ...`` (the gRPC options only)."""
    parser = argparse.ArgumentParser(
        prog="python -m firstspike.runtime.server",
        description="The gRPC device server: ``firstspike.v1.Device`` around ANY hal "
        ":class:`~firstspike.hal.backend.Backend`.",
    )
    add_grpc_arguments(parser)
    args = parser.parse_args(argv)
    tune_allocator()  # this entry point bypasses the firstspike command line, which does it for every command
    return serve_grpc(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a device over gRPC (or as a serial-link device)",
        description="Serve a device over gRPC (default), or run the device side of the serial link.",
    )
    add_grpc_arguments(p)
    p.add_argument("--calibration", default=None, metavar="FILE",
                   help="the served chip's calibration file (firstspike calibrate); refused if it is another chip's; "
                        "reported in the device info")
    g = p.add_argument_group("serial device side (instead of gRPC)")
    g.add_argument(
        "--serial-pty",
        action="store_true",
        help="expose the backend as a serial device on a new pseudo-terminal (prints its path)",
    )
    g.add_argument(
        "--serial-tcp",
        type=int,
        default=None,
        metavar="PORT",
        help="expose the backend's serial protocol on a TCP port of --host",
    )
    p.set_defaults(func=run)
