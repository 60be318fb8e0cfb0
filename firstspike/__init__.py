"""firstspike: a hardware abstraction layer, device drivers and exact time-to-first-spike learning for a
BrainScaleS-2-like neuromorphic chip.

Inside (each imported only when first used, so ``import firstspike`` is cheap: no torch, numba or grpc):

* ``firstspike.hal``: what the chip is: constants, typed coordinates, ``ChipConfig`` with its exact binary encoding
  and diffs, spike events and time units (ticks), the ``Backend`` interface, the backend registry;
* ``firstspike.compiler``: network (PyTorch TTFS model, NIR graph, own IR) -> design rules -> placement ->
  quantisation -> deployable ``CompiledNetwork`` (``.fsn``);
* ``firstspike.sim_device``: the bit-accurate simulated chip (``sim://``);
* ``firstspike.drivers``: real hardware over the framed, acknowledged serial protocol (``serial://``);
* ``firstspike.runtime``: the host side: devices by URI, sessions, gRPC client and server, TTFS math and training,
  the ``firstspike`` command line;
* ``firstspike.proto``: the gRPC wire contract.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firstspike import compiler, drivers, hal, proto, runtime, sim_device

__all__ = ["__version__", "compiler", "drivers", "hal", "proto", "runtime", "sim_device"]

_SUBPACKAGES = frozenset({"compiler", "drivers", "hal", "proto", "runtime", "sim_device"})


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("firstspike")
        except PackageNotFoundError:  # run from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'firstspike' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
