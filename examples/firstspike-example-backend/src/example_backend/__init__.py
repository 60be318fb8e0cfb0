"""An example firstspike backend: ``example://``, an ideal event-driven float64 LIF device."""

from example_backend.backend import VERSION, ExampleBackend

__all__ = ["VERSION", "ExampleBackend"]
