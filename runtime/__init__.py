"""Host side of firstspike: open devices by URI, sessions, gRPC client and server, TTFS training, CLI."""

from firstspike.runtime.devices import open as open  # firstspike.runtime.open(uri): the public way to get a device
