"""Compatibility entry point: ``python -m firstspike.runtime.server`` is ``firstspike serve`` with its gRPC options.

The server lives in :mod:`firstspike.runtime.serve` (one module per job) and its command line in
:mod:`firstspike.runtime.commands.serve`. The names below stay importable from here for embedders.
"""

from __future__ import annotations

import sys

from firstspike.runtime.commands.serve import main
from firstspike.runtime.serve.server import DEFAULT_PORT, RunningServer, build_server, tune_allocator

__all__ = ["DEFAULT_PORT", "RunningServer", "build_server", "main", "tune_allocator"]

if __name__ == "__main__":
    sys.exit(main())
