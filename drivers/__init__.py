"""drivers: real devices behind a serial line, and the device side of that line.

* :mod:`firstspike.drivers.framing` — COBS + header + CRC-32 frames, pure functions;
* :mod:`firstspike.drivers.streams` — byte streams with timeouts (pyserial, ptys, sockets, memory pipes);
* :mod:`firstspike.drivers.arq` — the link protocol (selective-repeat ARQ) as a sans-IO state machine: bytes,
  messages and time in, frames and wake-up times out;
* :mod:`firstspike.drivers.link` — reliable ordered messages over a byte stream: threads driving that machine;
* :mod:`firstspike.drivers.messages` — request/response encodings (handshake, configure, run, result, errors);
* :mod:`firstspike.drivers.serial_backend` — ``serial://``, the :class:`firstspike.hal.backend.Backend` over pyserial;
* :mod:`firstspike.drivers.device_side` — the board firmware's side around any Backend (pty, TCP);
* :mod:`firstspike.drivers.faults` — fault injection for tests and benchmarks.

``drivers`` imports only ``hal``. The protocol is described in ``docs/serial-protocol.md``.
"""
