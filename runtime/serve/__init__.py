"""The gRPC device server (``firstspike.v1.Device`` around any hal Backend), one module per job.

    errors.py    the server's own request errors: hal errors whose message is the status detail (no grpc)
    host.py      leases and device scheduling: per-lease configurations, exclusivity, one device lock (no grpc)
    status.py    the one table from exceptions to gRPC status codes and fs-reason metadata
    servicer.py  protobuf <-> host: one method per RPC, one structured log line per call
    auth.py      who may call: the bearer-token interceptor and the loopback rule
    server.py    assembly: build_server() starts a grpc.Server with health and reflection; RunningServer
    jsonlog.py   the JSON-lines log format and the ``firstspike.server`` logger every part logs to

The command line (options, signals, the startup line) is :mod:`firstspike.runtime.commands.serve`. This package
imports nothing on its own, so ``errors`` and ``host`` can be used and tested without grpc.
"""
