"""Host side of firstspike: open devices by URI, sessions, gRPC client and server, TTFS training, CLI.

``firstspike.runtime.open(uri)`` is the public way to get a device; it is imported when first used, so that importing
a part of the runtime (the command line, for one) does not load the device stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firstspike.runtime.devices import open as open


def __getattr__(name: str) -> Any:
    if name == "open":
        from firstspike.runtime.devices import open as open_device

        globals()["open"] = open_device  # later lookups skip this function
        return open_device
    raise AttributeError(f"module 'firstspike.runtime' has no attribute {name!r}")
