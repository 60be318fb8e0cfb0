"""Wire codec cost: a run result into a RunResponse and back, spikes as records vs columns.

    python benchmarks/wire_codec.py [--batch 1000] [--repeats 200]

Runs the yin-yang network of ``benchmarks/grpc_overhead.py`` on ``sim://`` once, then times (median of
``--repeats``) what the server does after the device call (``wire.result_to_pb`` + ``SerializeToString``) and
what the client does with the bytes (``FromString`` + ``wire.result_from_pb``: validation, order check, hal
containers), for each spike layout. One JSON line per layout: ``encode_p50_ms``, ``decode_p50_ms``,
``message_bytes``, ``events``; the columns line adds ``ratio_bytes_vs_records``. Single process, no gRPC.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout; grpc_overhead (the shared network) sits beside this file
    sys.path.insert(0, str(ROOT))


def _p50_ms(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    lat = []
    for _ in range(repeats):
        s = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - s)
    return round(float(np.median(lat)) * 1e3, 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args(argv)
    from grpc_overhead import _network

    from firstspike.hal.registry import open_backend
    from firstspike.proto.firstspike.v1 import device_pb2 as pb
    from firstspike.runtime import wire
    from firstspike.runtime.allocator import tune_malloc

    tune_malloc()  # as the server and the trainers do
    cfg, make, options, desc = _network()
    dev = open_backend("sim://")
    dev.configure(cfg)
    result = dev.run(make(args.batch, np.random.default_rng(123)), options)
    sizes = {}
    for name, layout in (("records", wire.RECORDS), ("columns", wire.COLUMNS)):
        blob = wire.result_to_pb(result, layout=layout).SerializeToString()
        assert wire.result_from_pb(pb.RunResponse.FromString(blob)).spikes == result.spikes
        sizes[name] = len(blob)
        out = {
            "benchmark": "wire_codec",
            "case": name,
            "batch": args.batch,
            "events": len(result.spikes),
            "message_bytes": len(blob),
            "encode_p50_ms": _p50_ms(
                lambda lay=layout: wire.result_to_pb(result, layout=lay).SerializeToString(), args.repeats
            ),
            "decode_p50_ms": _p50_ms(lambda b=blob: wire.result_from_pb(pb.RunResponse.FromString(b)), args.repeats),
            "network": desc,
        }
        if name == "columns":
            out["ratio_bytes_vs_records"] = round(len(blob) / sizes["records"], 3)
        print(json.dumps(out), flush=True)
    dev.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
