"""Bad requests of every kind get the right status, a message naming what is wrong and the fs-reason
metadata; the server stays healthy. Authentication (token), loopback-only binding without a token, TLS."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpc_fake_backend import fake_result
from grpc_support import FAKE_OPTIONS, ServerProcess, fake_config, fake_inputs

from firstspike.hal import chip
from firstspike.hal.config import CONFIG_MAGIC, CONFIG_VERSION, ChipConfig
from firstspike.hal.encoding import encode_arrays
from firstspike.hal.errors import CapacityError, FieldRangeError
from firstspike.hal.events import SPIKE_DTYPE
from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.proto.firstspike.v1 import device_pb2_grpc as pb_grpc
from firstspike.runtime import wire
from firstspike.runtime.cli import main as cli_main
from firstspike.runtime.remote import (
    GrpcBackend,
    RemoteAuthError,
    RemoteCapacityError,
    RemoteUnavailableError,
)
from firstspike.runtime.serve import auth as serve_auth
from firstspike.runtime.serve import server as serve_server

INVALID = grpc.StatusCode.INVALID_ARGUMENT
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def server():
    # max_batch=8 exercises capacity errors; 0.5 MiB messages exercise the size limits.
    srv = ServerProcess.start("fake://?max_batch=64", "--max-message-mb", "0.5")
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def stub(server):
    ch = grpc.insecure_channel(server.target)
    try:
        yield pb_grpc.DeviceStub(ch)
    finally:
        ch.close()


def _fail(call, request, metadata=()):
    with pytest.raises(grpc.RpcError) as ei:
        call(request, timeout=10, metadata=metadata)
    e = ei.value
    reason = dict(e.trailing_metadata() or ()).get(wire.REASON_KEY, "")
    return e.code(), e.details(), reason


def _events(rows):
    ev = np.zeros(len(rows), SPIKE_DTYPE)
    for i, (b, t, lab) in enumerate(rows):
        ev[i] = (b, t, lab)
    return ev.tobytes()


COLS = pb.SPIKE_LAYOUT_COLUMNS


def _u32(*values: int) -> bytes:
    return np.array(values, "<u4").tobytes()


def _u16(*values: int) -> bytes:
    return np.array(values, "<u2").tobytes()


INV = "invalid-argument"


def _cols(batch: int, counts: list[int], times: list[int], labels: list[int], time_bytes: int = 2) -> pb.SpikeBatch:
    """A SpikeBatch in the columns layout (u16 times unless told otherwise)."""
    return pb.SpikeBatch(
        batch_size=batch,
        layout=COLS,
        entry_counts=_u32(*counts),
        times=_u16(*times),
        labels=_u16(*labels),
        time_bytes=time_bytes,
    )


def _healthy(server, stub):
    hs = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.target))
    assert (
        hs.Check(health_pb2.HealthCheckRequest(service=wire.SERVICE_NAME), timeout=5).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    lease = stub.AcquireLease(pb.AcquireLeaseRequest(client_name="probe"), timeout=5).lease_id
    cfg = fake_config(1)
    stub.LoadConfig(pb.LoadConfigRequest(lease_id=lease, config=cfg.to_bytes()), timeout=5)
    inputs = fake_inputs(1, batch=3)
    want = fake_result(cfg, inputs, FAKE_OPTIONS).spikes
    # Inputs in either layout, results in either layout (records when result_layout is left unset).
    for inputs_layout, result_layout in ((wire.RECORDS, None), (wire.COLUMNS, wire.COLUMNS), (wire.RECORDS, COLS)):
        request = pb.RunRequest(
            lease_id=lease, inputs=wire.pack_spikes(inputs, inputs_layout), options=wire.options_to_pb(FAKE_OPTIONS)
        )
        if result_layout is not None:
            request.result_layout = result_layout
        resp = stub.Run(request, timeout=5)
        assert resp.spikes.layout == (result_layout or wire.RECORDS)
        assert bool(resp.spikes.events) == (resp.spikes.layout == wire.RECORDS) and len(want) > 0
        assert wire.result_from_pb(resp).spikes == want
    stub.ReleaseLease(pb.ReleaseLeaseRequest(lease_id=lease), timeout=5)


def test_bad_requests_get_the_right_status(server, stub):
    lease = stub.AcquireLease(pb.AcquireLeaseRequest(client_name="tester"), timeout=5).lease_id
    good_opts = wire.options_to_pb(FAKE_OPTIONS)
    ok_inputs = pb.SpikeBatch(batch_size=2, events=_events([(0, 10, 1), (1, 20, 2)]))
    unknown = "0" * 32
    other_cfg = fake_config(2)
    moved = ChipConfig()
    moved.synapses.weights[0, 0, 0] = 5
    wrong_base = ChipConfig().diff(moved)  # the lease holds fake_config(1), not the default
    stub.LoadConfig(pb.LoadConfigRequest(lease_id=lease, config=fake_config(1).to_bytes()), timeout=5)
    bad_weights = ChipConfig().fields()
    bad_weights["synapses.weights"] = bad_weights["synapses.weights"].copy()
    bad_weights["synapses.weights"][1, 2, 3] = 64
    out_of_range_cfg = encode_arrays(CONFIG_MAGIC, CONFIG_VERSION, bad_weights)
    corrupted = bytearray(fake_config(1).to_bytes())
    corrupted[100] ^= 0xFF

    def run(**kw):
        fields = {"lease_id": lease, "inputs": ok_inputs, "options": good_opts, **kw}
        return pb.RunRequest(**fields)

    cases = [
        # (rpc, request, expected code, text in the message, reason)
        (stub.Run, run(lease_id=""), INVALID, "lease_id is required", "invalid-argument"),
        (stub.Run, run(lease_id="xyz"), INVALID, "malformed", "invalid-argument"),
        (stub.Run, run(lease_id=unknown), Code.NOT_FOUND, "unknown or expired", "lease-unknown"),
        (stub.Run, pb.RunRequest(lease_id=lease, inputs=ok_inputs), INVALID, "options is required", "invalid-argument"),
        (stub.Run, run(options=pb.RunOptions()), INVALID, "duration_ticks", "invalid-argument"),
        (stub.Run, run(options=pb.RunOptions(duration_ticks=3000, record=7)), INVALID, "record", "invalid-argument"),
        (
            stub.Run,
            run(options=pb.RunOptions(duration_ticks=3000, seed=2**63)),
            INVALID,
            "RunOptions.seed",
            "invalid-argument",
        ),
        (
            stub.Run,
            run(options=pb.RunOptions(duration_ticks=chip.MAX_DURATION_TICKS + 1)),
            INVALID,
            "duration_ticks",
            "invalid-argument",
        ),
        (
            stub.Run,
            run(options=pb.RunOptions(duration_ticks=3000, readout=[600])),
            INVALID,
            "RunOptions.readout",
            "invalid-argument",
        ),
        (
            stub.Run,
            run(options=pb.RunOptions(duration_ticks=3000, readout=[1, 2, 3, 4, 5])),
            Code.RESOURCE_EXHAUSTED,
            "readout",
            "capacity",
        ),
        (
            stub.Run,
            run(options=pb.RunOptions(duration_ticks=30, readout=[1], readout_period=31)),
            INVALID,
            "readout_period",
            "invalid-argument",
        ),
        (
            stub.Run,
            run(inputs=pb.SpikeBatch(batch_size=2, events=b"\x00" * 15)),
            INVALID,
            "multiple of 10",
            "invalid-argument",
        ),
        (
            stub.Run,
            run(inputs=pb.SpikeBatch(batch_size=1, events=_events([(1, 5, 0)]))),
            INVALID,
            "InputSpikes.batch",
            "invalid-argument",
        ),
        (
            stub.Run,
            run(inputs=pb.SpikeBatch(batch_size=1, events=_events([(0, 5, 1024)]))),
            INVALID,
            "InputSpikes.label",
            "invalid-argument",
        ),
        (
            stub.Run,
            run(inputs=pb.SpikeBatch(batch_size=1, events=_events([(0, 3000, 0)]))),
            INVALID,
            "InputSpikes.time",
            "invalid-argument",
        ),
        (stub.Run, run(result_layout=5), INVALID, "result_layout: 5 is not a spike layout", "invalid-argument"),
        (stub.Run, run(inputs=pb.SpikeBatch(batch_size=2, layout=9)), INVALID, "inputs.layout", "invalid-argument"),
        (stub.Run, run(inputs=_cols(2, [1, 1], [5], [1, 2])), INVALID, "sum to 2 events but there are 1 times", INV),
        (stub.Run, run(inputs=_cols(2, [1], [5], [1])), INVALID, "1 counts for 2 batch entries", INV),
        (stub.Run, run(inputs=_cols(1, [1], [5], [1], time_bytes=3)), INVALID, "time_bytes: 3", INV),
        (stub.Run, run(inputs=_cols(1, [1], [5], [1024])), INVALID, "InputSpikes.label", INV),
        (
            stub.Run,
            run(inputs=pb.SpikeBatch(batch_size=1, events=_events([(0, 5, 1)]), labels=_u16(1))),
            INVALID,
            "labels set in the records layout",
            "invalid-argument",
        ),
        # above the device's max_batch is capacity, however large (docs/protocol.md section 5)
        (stub.Run, run(inputs=pb.SpikeBatch(batch_size=chip.MAX_BATCH + 1)), Code.RESOURCE_EXHAUSTED, "max_batch",
         "capacity"),
        (stub.Run, run(inputs=pb.SpikeBatch(batch_size=65)), Code.RESOURCE_EXHAUSTED, "max_batch", "capacity"),
        (
            stub.Run,
            run(config_id="ab" * 32),
            Code.FAILED_PRECONDITION,
            "not the lease's configuration",
            "config-mismatch",
        ),
        (stub.Run, run(config_id="XYZ"), INVALID, "config_id", "invalid-argument"),
        (
            stub.LoadConfig,
            pb.LoadConfigRequest(lease_id=lease, config=b"garbage"),
            INVALID,
            "truncated",
            "invalid-argument",
        ),
        (
            stub.LoadConfig,
            pb.LoadConfigRequest(lease_id=lease, config=b"XXXX" + bytes(100)),
            INVALID,
            "bad magic",
            "invalid-argument",
        ),
        (
            stub.LoadConfig,
            pb.LoadConfigRequest(lease_id=lease, config=bytes(corrupted)),
            INVALID,
            "checksum",
            "invalid-argument",
        ),
        (
            stub.LoadConfig,
            pb.LoadConfigRequest(lease_id=lease, config=out_of_range_cfg),
            INVALID,
            "synapses.weights",
            "invalid-argument",
        ),
        (
            stub.LoadConfig,
            pb.LoadConfigRequest(lease_id=unknown, config=other_cfg.to_bytes()),
            Code.NOT_FOUND,
            "unknown or expired",
            "lease-unknown",
        ),
        (
            stub.UpdateConfig,
            pb.UpdateConfigRequest(lease_id=lease, diff=b"FSCD" + bytes(40)),
            INVALID,
            "",
            "invalid-argument",
        ),
        (
            stub.UpdateConfig,
            pb.UpdateConfigRequest(lease_id=lease, diff=wrong_base.to_bytes()),
            Code.FAILED_PRECONDITION,
            "diff base",
            "diff-base-mismatch",
        ),
        (stub.AcquireLease, pb.AcquireLeaseRequest(ttl_ms=10**7), INVALID, "ttl_ms", "invalid-argument"),
        (stub.AcquireLease, pb.AcquireLeaseRequest(ttl_ms=5), INVALID, "ttl_ms", "invalid-argument"),
        (stub.AcquireLease, pb.AcquireLeaseRequest(client_name="x" * 200), INVALID, "client_name", "invalid-argument"),
        (
            stub.AcquireLease,
            pb.AcquireLeaseRequest(exclusive=True, wait_ms=10**9),
            INVALID,
            "wait_ms",
            "invalid-argument",
        ),
        (stub.RenewLease, pb.RenewLeaseRequest(lease_id=unknown), Code.NOT_FOUND, "unknown", "lease-unknown"),
        (stub.ReleaseLease, pb.ReleaseLeaseRequest(lease_id=unknown), Code.NOT_FOUND, "unknown", "lease-unknown"),
        (stub.Reset, pb.ResetRequest(lease_id=""), INVALID, "lease_id", "invalid-argument"),
        (stub.GetConfig, pb.GetConfigRequest(lease_id=unknown), Code.NOT_FOUND, "unknown", "lease-unknown"),
    ]
    try:
        import firstspike.compiler.artifact  # noqa: F401

        cases += [
            (
                stub.LoadArtifact,
                pb.LoadArtifactRequest(lease_id=lease, artifact=b"nonsense"),
                INVALID,
                "artifact",
                "invalid-argument",
            ),
        ]
    except ImportError:
        cases += [
            (
                stub.LoadArtifact,
                pb.LoadArtifactRequest(lease_id=lease, artifact=b"nonsense"),
                Code.UNIMPLEMENTED,
                "LoadConfig",
                "unimplemented",
            ),
        ]
    for call, request, code, text, reason in cases:
        got = _fail(call, request)
        assert got[0] == code, (type(request).__name__, request, got)
        assert text in got[1], (text, got)
        assert got[2] == reason, (text, got)
    # Still serving, and the lease still holds the config it had before the rejected uploads.
    cfg = pb.GetConfigRequest(lease_id=lease)
    assert stub.GetConfig(cfg, timeout=5).config == fake_config(1).to_bytes()
    _healthy(server, stub)


def test_size_limits(server, stub):
    lease = stub.AcquireLease(pb.AcquireLeaseRequest(), timeout=5).lease_id
    stub.LoadConfig(pb.LoadConfigRequest(lease_id=lease, config=fake_config(5, n_neurons=500).to_bytes()), timeout=5)
    # A request above the server's 0.5 MiB limit.
    big = pb.SpikeBatch(batch_size=64, events=bytes(10 * 60_000))
    code, details, _ = _fail(
        stub.Run, pb.RunRequest(lease_id=lease, inputs=big, options=pb.RunOptions(duration_ticks=3000))
    )
    assert code == Code.RESOURCE_EXHAUSTED, details
    # A result above the limit: 64 entries x ~500 neurons x 2 spikes (record=all) x 10 bytes ~ 640 kB.
    inputs = fake_inputs(3, batch=64, n=64)
    opts = pb.RunOptions(duration_ticks=3000, record=pb.RECORD_ALL)
    code, details, reason = _fail(
        stub.Run, pb.RunRequest(lease_id=lease, options=opts, inputs=wire.pack_events(inputs.events, 64))
    )
    assert code == Code.RESOURCE_EXHAUSTED and "message limit" in details and reason == "capacity"
    _healthy(server, stub)


def test_client_maps_statuses_to_exceptions(server):
    with GrpcBackend(server.target, max_message_bytes=8 << 20) as dev:
        dev.configure(fake_config(1))
        with pytest.raises(FieldRangeError, match=r"InputSpikes\.time"):  # checked locally, nothing sent
            dev.run(fake_inputs(1, batch=2, horizon=5000), FAKE_OPTIONS)
        with pytest.raises(CapacityError, match="max_batch"):  # the server's limits are checked locally too
            dev.run(fake_inputs(1, batch=65), FAKE_OPTIONS)
        dev.configure(fake_config(5, n_neurons=500))
        with pytest.raises(RemoteCapacityError, match="message limit") as ei:
            from firstspike.hal.backend import RunOptions

            # ~64 000 spikes (~260 kB as columns) + membrane samples (64 x 4 x 1500 x 2 bytes = 768 kB) > 0.5 MiB
            opts = RunOptions(duration_ticks=3000, record="all", readout=(0, 1, 2, 3), readout_period=2)
            dev.run(fake_inputs(3, batch=64, n=64), opts)
        assert ei.value.code == Code.RESOURCE_EXHAUSTED and ei.value.reason == "capacity"
        assert isinstance(ei.value, ValueError)  # a CapacityError is a hal ValueError
        # The backend stays usable after errors.
        dev.configure(fake_config(1))
        inputs = fake_inputs(2, batch=5)
        assert dev.run(inputs, FAKE_OPTIONS).spikes == fake_result(fake_config(1), inputs, FAKE_OPTIONS).spikes


def test_bad_uris_are_rejected_by_name():
    from firstspike.hal.registry import open_backend

    for uri, text in [
        ("grpc://", "host:port"),
        ("grpc://localhost", "host:port"),
        ("grpc://h:99999", "port"),
        ("grpc://h:1?bogus=1", "bogus"),
        ("grpc://h:1?timeout=abc", "timeout"),
        ("grpc://h:1?tls=maybe", "tls"),
        ("grpc://h:1?retries=-1", "retries"),
    ]:
        with pytest.raises(ValueError, match=text):
            open_backend(uri)


def test_unreachable_server_is_a_clear_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    with pytest.raises(RemoteUnavailableError, match=r"UNAVAILABLE.*gave up after 2 attempt"):
        GrpcBackend(f"127.0.0.1:{port}", retries=1, timeout_s=5)


# ---- authentication and binding ---------------------------------------------------------------------------
def test_token_required(tmp_path):
    srv = ServerProcess.start("fake://", "--token", "s3cret")
    try:
        ch = grpc.insecure_channel(srv.target)
        stub = pb_grpc.DeviceStub(ch)
        code, details, reason = _fail(stub.GetInfo, pb.GetInfoRequest())
        assert code == Code.UNAUTHENTICATED and "missing bearer token" in details and reason == "unauthenticated"
        code, details, _ = _fail(stub.GetInfo, pb.GetInfoRequest(), metadata=(("authorization", "Bearer nope"),))
        assert code == Code.UNAUTHENTICATED and "invalid" in details
        # The streaming RPC is guarded too.
        with pytest.raises(grpc.RpcError) as ei:
            list(stub.RunStream(iter([pb.RunRequest()]), timeout=5))
        assert ei.value.code() == Code.UNAUTHENTICATED
        # The health check stays open (load balancers probe without credentials).
        hs = health_pb2_grpc.HealthStub(ch)
        assert hs.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(RemoteAuthError, match="UNAUTHENTICATED"):
            GrpcBackend(srv.target)
        with GrpcBackend(srv.target, token="s3cret") as dev:
            dev.configure(fake_config(1))
            assert dev.run(fake_inputs(1, batch=2), FAKE_OPTIONS).spikes.batch_size == 2
        ch.close()
    finally:
        srv.close()


def test_non_loopback_bind_needs_a_token(capsys):
    assert cli_main(["serve", "--backend", "null://", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "refusing to bind non-loopback address '0.0.0.0' without a token" in capsys.readouterr().err
    assert cli_main(["serve", "--backend", "null://", "--host", "0.0.0.0", "--serial-tcp", "0"]) == 2
    assert "no authentication" in capsys.readouterr().err
    from firstspike.hal.null_backend import NullBackend

    with pytest.raises(ValueError, match="non-loopback"):
        serve_server.build_server(NullBackend(), host="10.1.2.3", port=0)
    assert serve_auth.is_loopback("127.0.0.1") and serve_auth.is_loopback("::1") and serve_auth.is_loopback("localhost")
    assert not serve_auth.is_loopback("0.0.0.0") and not serve_auth.is_loopback("example.org")


def test_tls(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a self-signed certificate (cryptography is not installed)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    srv = ServerProcess.start("fake://", "--tls-cert", str(cert), "--tls-key", str(key), "--token", "t0k")
    try:
        assert srv.announcement["tls"] is True
        from firstspike.runtime import open as open_device

        with open_device(srv.uri(tls=1, ca=cert, token="t0k")) as dev:
            cfg = fake_config(4)
            dev.configure(cfg)
            inputs = fake_inputs(5, batch=4)
            assert dev.run(inputs, FAKE_OPTIONS).spikes == fake_result(cfg, inputs, FAKE_OPTIONS).spikes
        with pytest.raises(RemoteUnavailableError):  # plaintext client against a TLS server
            GrpcBackend(srv.target, token="t0k", retries=0, timeout_s=3)
    finally:
        srv.close()
