"""``firstspike serve``: serve a device over gRPC (default), or run the device side of the serial link.

    firstspike serve [--backend sim://...] [--host 127.0.0.1] [--port 50051] [--token T] [--tls-cert C --tls-key K]
    firstspike serve --serial-pty [--backend sim://...]        # a pseudo-terminal speaking the serial protocol
    firstspike serve --serial-tcp PORT [--backend sim://...]   # the serial protocol over a TCP socket
    firstspike serve --backend sim://?serial=3 --calibration chip3.fscal   # report the chip's calibration

``--calibration FILE`` (from ``firstspike calibrate``) is checked against the backend's chip and reported in the
device info (``extra["calibration"]``, :mod:`firstspike.runtime.calibration.serving`).

On start the gRPC server prints one JSON line to stdout, ``{"event": "listening", "address": ..., "port": ...}``
(``--port 0`` picks a free port); logs are JSON lines on stderr. SIGTERM/SIGINT shut down gracefully.
"""

from __future__ import annotations

import argparse
import sys

from firstspike.hal.backend import Backend
from firstspike.runtime import server


def run(args: argparse.Namespace) -> int:
    if args.serial_pty or args.serial_tcp is not None:
        return _serve_serial(args)
    if args.calibration is None:
        return server.serve(args)
    # server.serve opens the backend itself; hand it the calibrated one. (To be replaced by one line in server.serve,
    # ``backend = with_calibration_arg(backend, args)``, when that module can change.)
    opener = server.open_backend_for
    server.open_backend_for = lambda a: with_calibration_arg(opener(a), a)  # type: ignore[assignment]
    try:
        return server.serve(args)
    finally:
        server.open_backend_for = opener  # type: ignore[assignment]


def with_calibration_arg(backend: Backend, args: argparse.Namespace) -> Backend:
    """``backend`` wrapped with the ``--calibration`` file (if given); a file of another chip is refused: the
    backend is closed and ValueError raised (``firstspike serve`` reports it as "cannot open backend")."""
    if getattr(args, "calibration", None) is None:
        return backend
    from firstspike.runtime.calibration.serving import attach_calibration

    try:
        return attach_calibration(backend, args.calibration)
    except ValueError:
        backend.close()
        raise


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
    if args.serial_tcp is not None and not server.is_loopback(args.host):
        # The serial link has no authentication: never expose it beyond this machine.
        print(
            f"firstspike serve: refusing to expose the serial link on non-loopback address {args.host!r}; "
            "it has no authentication (use gRPC with --token and TLS for remote access)",
            file=sys.stderr,
        )
        return 2
    server.setup_logging(args.log_level)
    try:
        backend = with_calibration_arg(server.open_backend_for(args), args)
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a device over gRPC (or as a serial-link device)",
        description="Serve a device over gRPC (default), or run the device side of the serial link.",
    )
    server.add_arguments(p)
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
