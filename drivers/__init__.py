"""drivers: real devices behind a serial line, and the device side of that line.

* :mod:`firstspike.drivers.framing` — COBS + header + CRC-32 frames, pure functions;
* :mod:`firstspike.drivers.streams` — byte streams with timeouts (pyserial, ptys, sockets, memory pipes);
* :mod:`firstspike.drivers.link` — reliable ordered messages over a byte stream (selective-repeat ARQ);
* :mod:`firstspike.drivers.messages` — request/response encodings (handshake, configure, run, result, errors);
* :mod:`firstspike.drivers.serial_backend` — ``serial://``, the :class:`firstspike.hal.backend.Backend` over pyserial;
* :mod:`firstspike.drivers.device_side` — the board firmware's side around any Backend (pty, TCP);
* :mod:`firstspike.drivers.faults` — fault injection for tests and benchmarks.

``drivers`` imports only ``hal``. The protocol is described in ``docs/serial-protocol.md``.
"""
