"""Host side of firstspike: open devices by URI, sessions, gRPC client and server, TTFS training, CLI."""

from runtime.devices import open as open  # runtime.open(uri): the public way to get a device
