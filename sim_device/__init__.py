"""sim_device: the bit-accurate simulated chip (``sim://``).

The behaviour is specified as integer arithmetic in ``docs/device-spec.md``; :mod:`firstspike.sim_device.reference` is
that spec as plain, slow Python; :mod:`firstspike.sim_device.engine` is the fast, bit-identical implementation;
:mod:`firstspike.sim_device.analog` draws fixed-pattern mismatch and temporal noise from a counter-based PRNG;
:mod:`firstspike.sim_device.backend` exposes it all as the ``sim://`` :class:`firstspike.hal.backend.Backend`.
"""

from firstspike.sim_device.backend import SimBackend
from firstspike.sim_device.spec import SPEC_VERSION

__all__ = ["SPEC_VERSION", "SimBackend"]
