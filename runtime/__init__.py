"""Host side of firstspike: open devices by URI, sessions, gRPC client and server, TTFS training, CLI."""
