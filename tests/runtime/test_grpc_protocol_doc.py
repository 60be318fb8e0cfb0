"""docs/protocol.md is enough to write a client: this one builds every byte with ``struct`` from the tables in
the document (no hal encoders), talks to a real server and checks the answers against the in-process device."""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpc_fake_backend import fake_result
from grpc_support import ServerProcess

from firstspike.hal.backend import RunOptions
from firstspike.hal.config import ChipConfig
from firstspike.hal.events import InputSpikes
from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.proto.firstspike.v1 import device_pb2_grpc as pb_grpc

# Section 4.2, in the document's order: (name, dtype string, shape or None for the route columns, default).
DOC_FIELDS = [
    ("neurons.leak", "<u2", (512,), 300),
    ("neurons.threshold", "<u2", (512,), 600),
    ("neurons.reset", "<u2", (512,), 300),
    ("neurons.tau_mem", "<u2", (512,), 188),
    ("neurons.tau_syn_exc", "<u2", (512,), 188),
    ("neurons.tau_syn_inh", "<u2", (512,), 188),
    ("neurons.refractory", "<u2", (512,), 0),
    ("neurons.gain_exc", "<u2", (512,), 64),
    ("neurons.gain_inh", "<u2", (512,), 64),
    ("neurons.enabled", "|b1", (512,), 0),
    ("neurons.merged_columns", "|b1", (256,), 0),
    ("synapses.weights", "|u1", (2, 256, 256), 0),
    ("synapses.labels", "|u1", (2, 256, 256), 0),
    ("rows.modes", "|u1", (2, 256), 0),
    ("routing.kind", "|u1", None, 0),
    ("routing.source", "<u2", None, 0),
    ("routing.half", "|u1", None, 0),
    ("routing.row", "|u1", None, 0),
    ("routing.address", "|u1", None, 0),
]
_FMT = {"<u2": "H", "|u1": "B", "|b1": "B"}


def encode_config(values: dict[str, list[int]], n_routes: int = 0) -> bytes:
    """The FSCF container of section 4.2, written with struct."""
    body = b"FSCF" + struct.pack("<HHI", 1, 0, 0) + struct.pack("<I", len(DOC_FIELDS))
    for name, dtype, shape, default in DOC_FIELDS:
        shape = shape or (n_routes,)
        n = int(np.prod(shape))
        data = values.get(name, [default] * n)
        raw = struct.pack(f"<{n}{_FMT[dtype]}", *data)
        body += struct.pack("<B", len(name)) + name.encode() + struct.pack("<B", len(dtype)) + dtype.encode()
        body += struct.pack(f"<B{len(shape)}I", len(shape), *shape) + struct.pack("<I", len(raw)) + raw
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def pack_events(rows: list[tuple[int, int, int]]) -> bytes:
    return b"".join(struct.pack("<IIH", b, t, label) for b, t, label in rows)  # section 4.1


def unpack_events(raw: bytes) -> list[tuple[int, int, int]]:
    assert len(raw) % 10 == 0
    return [struct.unpack_from("<IIH", raw, 10 * k) for k in range(len(raw) // 10)]


def test_a_client_written_from_the_document():
    srv = ServerProcess.start("fake://")
    try:
        stub = pb_grpc.DeviceStub(grpc.insecure_channel(srv.target))
        info = stub.GetInfo(pb.GetInfoRequest(), timeout=5)
        assert info.protocol == "firstspike.v1"
        lease = stub.AcquireLease(pb.AcquireLeaseRequest(client_name="doc-client"), timeout=5)
        # The default configuration, byte for byte as the document describes it.
        assert lease.config_id == hashlib.sha256(encode_config({})).hexdigest()
        # A small network: neurons 3 and 300 enabled, a few weights.
        enabled = [0] * 512
        enabled[3] = enabled[300] = 1
        weights = [0] * (2 * 256 * 256)
        weights[0 * 65536 + 5 * 256 + 3] = 40  # half 0, row 5, column 3 -> neuron 3
        weights[1 * 65536 + 7 * 256 + 44] = 60  # half 1, row 7, column 44 -> neuron 300
        cfg_bytes = encode_config({"neurons.enabled": enabled, "synapses.weights": weights})
        resp = stub.LoadConfig(pb.LoadConfigRequest(lease_id=lease.lease_id, config=cfg_bytes), timeout=5)
        assert resp.config_id == hashlib.sha256(cfg_bytes).hexdigest()
        assert resp.summary["enabled_neurons"] == 2 and resp.summary["nonzero_synapses"] == 2
        rows = [(0, 100, 5), (1, 250, 7), (1, 260, 5)]  # (entry, tick, input channel)
        req = pb.RunRequest(
            lease_id=lease.lease_id,
            config_id=resp.config_id,
            inputs=pb.SpikeBatch(batch_size=2, events=pack_events(rows)),
            options=pb.RunOptions(duration_ticks=3000, record=pb.RECORD_FIRST, seed=1),
        )
        out = stub.Run(req, timeout=10)
        got = unpack_events(out.spikes.events)
        # The same through hal in-process.
        cfg = ChipConfig.from_bytes(cfg_bytes)
        ev = InputSpikes.from_times(np.array([[100, np.nan], [260, 250]]), channels=np.array([5, 7]))
        want = fake_result(cfg, ev, RunOptions(duration_ticks=3000, seed=1)).spikes.events
        assert got == [tuple(int(x) for x in r) for r in want] and len(got) == 3
        # The columns layout both ways: inputs as columns, results as columns (section 4.1).
        entries = [sum(1 for b, _, _ in rows if b == e) for e in range(2)]
        req.inputs.CopyFrom(
            pb.SpikeBatch(
                batch_size=2,
                layout=pb.SPIKE_LAYOUT_COLUMNS,
                entry_counts=struct.pack("<2I", *entries),
                times=struct.pack("<3H", *(t for _, t, _ in rows)),
                labels=struct.pack("<3H", *(c for _, _, c in rows)),
                time_bytes=2,
            )
        )
        req.result_layout = pb.SPIKE_LAYOUT_COLUMNS
        col = stub.Run(req, timeout=10).spikes
        assert col.layout == pb.SPIKE_LAYOUT_COLUMNS and not col.events and col.time_bytes in (2, 4)
        counts = struct.unpack(f"<{col.batch_size}I", col.entry_counts)
        times = struct.unpack(f"<{sum(counts)}{'H' if col.time_bytes == 2 else 'I'}", col.times)
        labels = struct.unpack(f"<{sum(counts)}H", col.labels)
        batch_of = [e for e, c in enumerate(counts) for _ in range(c)]
        assert list(zip(batch_of, times, labels, strict=True)) == got
        stub.ReleaseLease(pb.ReleaseLeaseRequest(lease_id=lease.lease_id), timeout=5)
    finally:
        srv.close()
