"""Server lifecycle: killed mid-run (clear client error within the deadline, recovery after restart),
graceful SIGTERM (in-flight runs finish), lease keepalive and expiry, structured logs."""

from __future__ import annotations

import gc
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpc_fake_backend import fake_result
from grpc_support import FAKE_OPTIONS, ServerProcess, fake_config, fake_inputs

from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.proto.firstspike.v1 import device_pb2_grpc as pb_grpc
from firstspike.runtime.remote import GrpcBackend, RemoteUnavailableError


def _run_in_thread(fn):
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def test_kill_mid_run_then_restart_recovers():
    deadline_s = 8.0
    srv = ServerProcess.start("fake://?delay_ms=3000")
    port = srv.port
    cfg = fake_config(21)
    inputs = fake_inputs(22, batch=6)
    dev = GrpcBackend(srv.target, run_timeout_s=deadline_s, client_name="survivor")
    srv2 = None
    try:
        dev.configure(cfg)
        t0 = time.monotonic()
        t, box = _run_in_thread(lambda: dev.run(inputs, FAKE_OPTIONS))
        time.sleep(0.7)  # the run is in flight on the server
        srv.kill()
        t.join(deadline_s + 10)  # generous join: the assertion below is about the client's own deadline
        elapsed = time.monotonic() - t0
        assert not t.is_alive(), "the client hung after the server died"
        assert isinstance(box.get("error"), RemoteUnavailableError), box
        assert "UNAVAILABLE" in str(box["error"]) and "Run" in str(box["error"])
        assert elapsed < deadline_s
        # Restart on the same port (no delay this time); the same client object recovers: new lease,
        # configuration uploaded again, results correct.
        srv2 = ServerProcess.start("fake://", port=port)
        got = dev.run(inputs, FAKE_OPTIONS)
        assert got.spikes == fake_result(cfg, inputs, FAKE_OPTIONS).spikes
        loads = [r for r in srv2.log_records() if r.get("rpc") == "LoadConfig" and r.get("code") == "OK"]
        assert len(loads) == 1 and loads[0]["config"] == cfg.digest().hex()[:12]
    finally:
        dev.close()
        srv.close()
        if srv2 is not None:
            srv2.close()


def test_sigterm_lets_inflight_runs_finish():
    srv = ServerProcess.start("fake://?delay_ms=1500")
    try:
        cfg = fake_config(31)
        inputs = fake_inputs(32, batch=3)
        dev = GrpcBackend(srv.target, retries=0, client_name="inflight")
        dev.configure(cfg)
        t, box = _run_in_thread(lambda: dev.run(inputs, FAKE_OPTIONS))
        time.sleep(0.5)
        assert srv.terminate() == 0
        t.join(10)
        assert box.get("result") is not None, box.get("error")
        assert box["result"].spikes == fake_result(cfg, inputs, FAKE_OPTIONS).spikes
        with pytest.raises(RemoteUnavailableError):
            dev.run(inputs, FAKE_OPTIONS)
        dev.close()
        events = [r.get("event") for r in srv.log_records()]
        assert "serving" in events and "shutdown" in events and events[-1] == "stopped"
        shutdown = next(r for r in srv.log_records() if r.get("event") == "shutdown")
        assert shutdown["signal"] == "SIGTERM" and shutdown["level"] == "info"
    finally:
        srv.close()


def test_lease_keepalive_and_expiry():
    srv = ServerProcess.start("fake://", "--lease-ttl", "0.4")
    try:
        cfg = fake_config(41)
        with GrpcBackend(srv.target, lease_ttl_s=0.4, client_name="idle") as dev:
            dev.configure(cfg)
            lease = dev.lease_id
            time.sleep(1.5)  # idle for several ttls: the keepalive thread renews the lease
            inputs = fake_inputs(42, batch=2)
            assert dev.run(inputs, FAKE_OPTIONS).spikes == fake_result(cfg, inputs, FAKE_OPTIONS).spikes
            assert dev.lease_id == lease
        # A backend dropped without close() is collected; its keepalive thread ends (the lease then expires).
        dropped = GrpcBackend(srv.target, lease_ttl_s=0.4, client_name="dropped")
        dropped.configure(cfg)
        thread = dropped._keepalive
        assert thread is not None and thread.is_alive()
        del dropped
        gc.collect()
        thread.join(3)
        assert not thread.is_alive()
        # Without renewal a lease expires.
        ch = grpc.insecure_channel(srv.target)
        stub = pb_grpc.DeviceStub(ch)
        lid = stub.AcquireLease(pb.AcquireLeaseRequest(ttl_ms=200), timeout=5).lease_id
        time.sleep(0.8)
        with pytest.raises(grpc.RpcError) as ei:
            stub.RenewLease(pb.RenewLeaseRequest(lease_id=lid), timeout=5)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND
        ch.close()
        acquired = [r for r in srv.log_records() if r.get("rpc") == "AcquireLease"]
        assert len(acquired) == 3  # the idle client never had to re-acquire
    finally:
        srv.close()


def test_cli_serve_grpc_health_and_reflection():
    """``firstspike serve`` (through the CLI module) serves the device, health and reflection."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    srv = ServerProcess(["serve", "--backend", "null://", "--port", "0"], module="firstspike.runtime.cli")
    try:
        ch = grpc.insecure_channel(srv.target)
        hs = health_pb2_grpc.HealthStub(ch)
        for service in ("", "firstspike.v1.Device"):
            resp = hs.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        answers = list(
            refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        )
        names = {s.name for s in answers[0].list_services_response.service}
        assert {"firstspike.v1.Device", "grpc.health.v1.Health"} <= names
        with GrpcBackend(srv.target) as dev:
            assert dev.info().model == "null-mock" and dev.health() == "SERVING"
        ch.close()
    finally:
        srv.close()


def test_cli_serve_serial_side_is_wired():
    srv = ServerProcess(["serve", "--backend", "null://", "--serial-tcp", "0"], module="firstspike.runtime.cli")
    try:
        assert srv.first_line.startswith("serial:///?url=socket://127.0.0.1:")
    finally:
        srv.close()
