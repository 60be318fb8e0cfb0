"""sim_device: the bit-accurate simulated chip (``sim://``).

The behaviour is specified as integer arithmetic in ``docs/device-spec.md``; :mod:`sim_device.reference` is
that spec as plain, slow Python; :mod:`sim_device.engine` is the fast, bit-identical implementation;
:mod:`sim_device.analog` draws fixed-pattern mismatch and temporal noise from a counter-based PRNG;
:mod:`sim_device.backend` exposes it all as the ``sim://`` :class:`hal.backend.Backend`.
"""

from sim_device.backend import SimBackend
from sim_device.spec import SPEC_VERSION

__all__ = ["SPEC_VERSION", "SimBackend"]
