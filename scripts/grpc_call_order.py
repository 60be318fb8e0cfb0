"""Does a gRPC run pay for the in-process run before it? A diagnostic behind benchmarks/grpc_overhead.py's
block design (docs/results.md, gRPC session 4).

    python scripts/grpc_call_order.py [--pairs 60] [--gap-ms 0]

Starts ``python -m firstspike.runtime.server --backend sim://`` on a free loopback port, then repeats: one yin-yang
batch of 1000 in-process, then the same batch as a raw ``Run`` stub call (spikes as columns), each after ``--gap-ms`` of
sleep. Prints one JSON line: medians of the in-process time, the server's own device time
(``RunResponse.device_us``) and the stub call, and the median per pair of ``device - inprocess`` (how much slower
the server's device ran than the in-process run just before it) and of ``stub - device`` (the gRPC stack).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=60)
    p.add_argument("--gap-ms", type=float, default=0.0, help="sleep before each timed call (default 0)")
    args = p.parse_args(argv)
    from grpc_overhead import _network, served

    from firstspike.hal.registry import open_backend
    from firstspike.proto.firstspike.v1 import device_pb2 as pb
    from firstspike.runtime import wire
    from firstspike.runtime.allocator import tune_malloc
    from firstspike.runtime.remote import GrpcBackend

    tune_malloc()
    with served("sim://") as (_, port):
        cfg, make, options, desc = _network()
        rng = np.random.default_rng(123)
        inputs = [make(1000, rng) for _ in range(4)]
        local = open_backend("sim://")
        local.configure(cfg)
        remote = GrpcBackend(f"127.0.0.1:{port}", run_timeout_s=600)
        remote.configure(cfg)
        opts = wire.options_to_pb(options)
        reqs = [
            pb.RunRequest(
                lease_id=remote.lease_id,
                config_id=remote.config_id,
                inputs=wire.pack_events(x.events, x.batch_size),
                options=opts,
                result_layout=wire.COLUMNS,
            )
            for x in inputs
        ]
        for k in range(4):  # warm up both sides
            local.run(inputs[k], options)
            remote._stub.Run(reqs[k], timeout=600)
        rows = []
        for k in range(args.pairs):
            time.sleep(args.gap_ms / 1000)
            s = time.perf_counter()
            local.run(inputs[k % 4], options)
            t_local = time.perf_counter() - s
            time.sleep(args.gap_ms / 1000)
            s = time.perf_counter()
            resp = remote._stub.Run(reqs[k % 4], timeout=600)
            t_stub = time.perf_counter() - s
            rows.append((t_local, resp.device_us * 1e-6, t_stub))
        a = np.array(rows) * 1e3
        out = {
            "benchmark": "grpc_call_order",
            "case": f"gap{args.gap_ms:g}ms",
            "pairs": args.pairs,
            "inprocess_p50_ms": round(float(np.median(a[:, 0])), 3),
            "server_device_p50_ms": round(float(np.median(a[:, 1])), 3),
            "stub_p50_ms": round(float(np.median(a[:, 2])), 3),
            "device_minus_inprocess_p50_ms": round(float(np.median(a[:, 1] - a[:, 0])), 3),
            "stack_p50_ms": round(float(np.median(a[:, 2] - a[:, 1])), 3),
            "network": desc,
        }
        print(json.dumps(out), flush=True)
        remote.close()
        local.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
