"""End to end through real server subprocesses: bit-identical results in-process / gRPC / 2-server pool,
16 concurrent clients with different networks, diffs, streaming, leases, artifacts and firstspike.runtime.open."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpc_fake_backend import FakeBackend, fake_result
from grpc_support import (
    FAKE_OPTIONS,
    ServerProcess,
    fake_config,
    fake_inputs,
    sim_case,
)

from firstspike import runtime
from firstspike.hal.backend import RunOptions
from firstspike.hal.registry import open_backend
from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.runtime import wire
from firstspike.runtime.devices import DevicePool, default_uri
from firstspike.runtime.remote import GrpcBackend, RemoteBusyError

NOISY = "fake://?noise=7"


@pytest.fixture(scope="module")
def fake_servers():
    servers = []
    try:
        for _ in range(2):
            servers.append(ServerProcess.start(NOISY))
        yield servers
    finally:
        for s in servers:
            s.close()


def test_fake_bit_identical_inprocess_grpc_stream_and_pool(fake_servers):
    a, b = fake_servers
    cfg = fake_config(1)
    inputs = fake_inputs(2, batch=37)
    opts = RunOptions(duration_ticks=3000, seed=11, record="all", readout=(3, 9), readout_period=100)
    local = open_backend(NOISY)
    local.configure(cfg)
    want = local.run(inputs, opts)
    local.close()
    assert len(want.spikes) > 50  # the case is not trivially empty
    with runtime.open(a.uri()) as dev:
        assert isinstance(dev, GrpcBackend)
        dev.configure(cfg)
        got = dev.run(inputs, opts)
        streamed = dev.run_stream(inputs, opts, chunk_entries=5)
    with runtime.open(f"grpc://{a.target},{b.target}") as pool:
        assert isinstance(pool, DevicePool)
        pool.configure(cfg)
        pooled = pool.run(inputs, opts)
    for r in (got, streamed, pooled):
        assert r.spikes == want.spikes
        np.testing.assert_array_equal(r.membrane, want.membrane)
        assert r.stats == want.stats
        assert r.dropped == want.dropped


def test_noise_depends_on_entry_offset(fake_servers):
    """Guards the pool test above: with noise, results do depend on the entry index (so the pool's offsets
    matter), and on the seed."""
    cfg, inputs = fake_config(1), fake_inputs(2, batch=8)
    base = fake_result(cfg, inputs, RunOptions(duration_ticks=3000, seed=11), noise=7)
    shifted = fake_result(cfg, inputs, RunOptions(duration_ticks=3000, seed=11, entry_offset=3), noise=7)
    assert base.spikes != shifted.spikes


def test_pool_splits_contiguously_and_in_parallel(fake_servers):
    a, b = fake_servers
    with runtime.open(f"grpc://{a.target},{b.target}") as pool:
        assert pool.split_sizes(5) == [3, 2]
        assert pool.info().max_batch == 2 * FakeBackend().info().max_batch
        assert pool.info().extra["homogeneous"] is True
        pool.configure(fake_config(3))
        r = pool.run(fake_inputs(4, batch=1), FAKE_OPTIONS)  # fewer entries than members
        assert r.spikes.batch_size == 1
        r0 = pool.run(fake_inputs(4, batch=0), FAKE_OPTIONS)
        assert r0.spikes.batch_size == 0 and len(r0.spikes) == 0


def test_sixteen_concurrent_clients_get_their_own_results(fake_servers):
    srv = fake_servers[0]
    n = 16
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    ok = [0] * n

    def client(k: int) -> None:
        try:
            cfg = fake_config(100 + k, n_neurons=4 + k)
            with GrpcBackend(srv.target, client_name=f"client{k}") as dev:
                barrier.wait(timeout=60)
                for rnd in range(3):
                    dev.configure(cfg)
                    inputs = fake_inputs(1000 * k + rnd, batch=3 + k)
                    got = dev.run(inputs, FAKE_OPTIONS)
                    want = fake_result(cfg, inputs, FAKE_OPTIONS, noise=7)
                    assert got.spikes == want.spikes, f"client {k} round {rnd} got another client's result"
                    ok[k] += 1
                    cfg = fake_config(200 + 16 * rnd + k, n_neurons=4 + k)  # a new network next round
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    assert ok == [3] * n
    # The device really was shared: its configuration switched between clients many times.
    switches = [r for r in srv.log_records() if r.get("rpc") == "LoadConfig"]
    assert len(switches) >= n * 3


def _ok(srv: ServerProcess, rpc: str) -> list[dict]:
    return [r for r in srv.log_records() if r.get("rpc") == rpc and r.get("code") == "OK"]


def test_configure_diff_sends_only_changes(fake_servers):
    """A diff whose base the lease holds travels with the next Run (one round trip per training step); any other
    call sends it first as UpdateConfig with only the changed entries."""
    srv = fake_servers[0]
    cfg = fake_config(7)
    with GrpcBackend(srv.target, client_name="differ") as dev:
        dev.configure(cfg)
        updates = len(_ok(srv, "UpdateConfig"))
        new = cfg.copy()
        new.synapses.weights[0, 0, :5] = 1
        dev.configure(cfg.diff(new))
        inputs = fake_inputs(8, batch=4)
        assert dev.run(inputs, FAKE_OPTIONS).spikes == fake_result(new, inputs, FAKE_OPTIONS, noise=7).spikes
        assert dev.config == new and len(_ok(srv, "UpdateConfig")) == updates  # the diff went with the Run
        # the lease holds the new configuration: the next run needs no upload, and the server says so
        lease = dev.lease_id
        assert lease is not None
        got = dev._stub.GetConfig(pb.GetConfigRequest(lease_id=lease), timeout=10)
        assert got.config_id == dev.config_id == new.digest().hex()
        # a RunStream does not carry diffs: the waiting one goes first as UpdateConfig, only the changes
        newer = new.copy()
        newer.synapses.weights[0, 1, :3] = 2
        dev.configure(new.diff(newer))
        streamed = dev.run_stream(inputs, FAKE_OPTIONS, chunk_entries=2)
        assert streamed.spikes == fake_result(newer, inputs, FAKE_OPTIONS, noise=7).spikes
    sent = _ok(srv, "UpdateConfig")
    assert len(sent) == updates + 1
    assert sent[-1]["changed_entries"] == int(np.count_nonzero(new.synapses.weights[0, 1, :3] != 2))


def test_a_whole_configuration_supersedes_a_waiting_diff(fake_servers):
    srv = fake_servers[0]
    cfg, other = fake_config(31), fake_config(32)
    inputs = fake_inputs(10, batch=3)
    with GrpcBackend(srv.target, client_name="supersede") as dev:
        dev.configure(cfg)
        new = cfg.copy()
        new.synapses.weights[0, 0, :4] = 2
        dev.configure(cfg.diff(new))  # waits for a run ...
        dev.configure(other)  # ... which never comes for it
        assert dev.run(inputs, FAKE_OPTIONS).spikes == fake_result(other, inputs, FAKE_OPTIONS, noise=7).spikes
        lease = dev.lease_id
        assert lease is not None
        got = dev._stub.GetConfig(pb.GetConfigRequest(lease_id=lease), timeout=10)
        assert got.config_id == dev.config_id == other.digest().hex()


def test_a_run_carrying_a_diff_survives_a_lost_lease_and_a_wrong_base(fake_servers):
    """The diff waiting for a run is applied on the base it was made from: after the server lost the lease the
    client re-uploads the base and sends the diff again; a Run whose diff does not fit the lease's configuration
    is refused (FAILED_PRECONDITION, fs-reason diff-base) and changes nothing."""
    srv = fake_servers[1]
    cfg = fake_config(21)
    inputs = fake_inputs(9, batch=3)
    with GrpcBackend(srv.target, client_name="lost") as dev:
        dev.configure(cfg)
        new = cfg.copy()
        new.synapses.weights[1, 2, :4] = 3
        dev.configure(cfg.diff(new))
        lease = dev.lease_id
        assert lease is not None
        dev._stub.ReleaseLease(pb.ReleaseLeaseRequest(lease_id=lease), timeout=10)  # as if the server restarted
        assert dev.run(inputs, FAKE_OPTIONS).spikes == fake_result(new, inputs, FAKE_OPTIONS, noise=7).spikes
        assert dev.lease_id != lease
        # raw: a diff from another base
        other = fake_config(22)
        other_new = other.copy()
        other_new.synapses.weights[0, 0, :2] = 1
        bad = other.diff(other_new)
        lease = dev.lease_id
        assert lease is not None
        req = pb.RunRequest(lease_id=lease, inputs=wire.pack_events(inputs.events, inputs.batch_size),
                            options=wire.options_to_pb(FAKE_OPTIONS), config_diff=bad.to_bytes())
        with pytest.raises(grpc.RpcError) as e:
            dev._stub.Run(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert dict(e.value.trailing_metadata() or ())[wire.REASON_KEY] == wire.REASON_DIFF_BASE
        got = dev._stub.GetConfig(pb.GetConfigRequest(lease_id=lease), timeout=10)
        assert got.config_id == new.digest().hex()  # unchanged


def test_explicit_lease_reset_and_exclusive(fake_servers):
    srv = fake_servers[1]
    owner = GrpcBackend(srv.target, exclusive=True, client_name="owner")
    other = GrpcBackend(srv.target, timeout_s=0.8, run_timeout_s=0.8, client_name="other")
    try:
        lease = owner.acquire()
        assert len(lease) == 32 and owner.lease_id == lease
        owner.configure(fake_config(9))
        other.acquire()  # shared leases may be taken while an exclusive one is held ...
        with pytest.raises(RemoteBusyError, match="held exclusively"):
            other.run(fake_inputs(1, batch=2), FAKE_OPTIONS)  # ... but their runs wait, then ABORTED
        owner.reset()
        assert owner.run(fake_inputs(1, batch=2), FAKE_OPTIONS).spikes.events.size == 0  # default config: silent
        owner.release()
        assert owner.lease_id is None
        assert other.run(fake_inputs(1, batch=2), FAKE_OPTIONS).spikes.batch_size == 2
    finally:
        owner.close()
        other.close()


def test_load_artifact(fake_servers):
    from firstspike import compiler

    rng = np.random.default_rng(0)
    net = compiler.Network(
        n_inputs=4,
        layers=(
            compiler.Layer(rng.normal(1.5, 0.8, (5, 16)), bias_time=0.9),
            compiler.Layer(rng.normal(0.5, 0.8, (17, 3)), bias_time=0.9),
        ),
    )
    art = compiler.compile(net)
    with GrpcBackend(fake_servers[0].target) as dev:
        cid = dev.load_artifact(art.to_bytes())
        assert cid == art.config.digest().hex()
        assert dev.config == art.config
        new = art.config.copy()
        new.synapses.weights[new.synapses.weights > 0] -= 1
        dev.configure(art.config.diff(new))  # diffs work on the artifact's config
        assert dev.config_id == new.digest().hex()


def test_runtime_open_default_and_env(fake_servers, monkeypatch):
    monkeypatch.delenv("FIRSTSPIKE_DEVICE", raising=False)
    assert default_uri() == "sim://"
    monkeypatch.setenv("FIRSTSPIKE_DEVICE", fake_servers[0].uri(timeout=5))
    with runtime.open() as dev:
        assert isinstance(dev, GrpcBackend) and dev.timeout_s == 5
        assert dev.info().model == "fake-test"
    monkeypatch.setenv("FIRSTSPIKE_DEVICE", "fake://")
    assert isinstance(runtime.open(), FakeBackend)


# ---- the simulator -------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["sim://?serial=3&noise=0", "sim://?serial=3"], ids=["noise0", "noisy"])
def sim_servers(request):
    servers = []
    try:
        for _ in range(2):
            servers.append(ServerProcess.start(request.param))
        yield request.param, servers
    finally:
        for s in servers:
            s.close()


def test_sim_bit_identical_inprocess_grpc_stream_pool(sim_servers):
    """The acceptance check on the bit-accurate simulator: the same network and inputs give identical events
    in-process, through one server (unary and streamed in chunks) and through a 2-server pool."""
    uri, (a, b) = sim_servers
    case = sim_case(seed=4, batch=24)
    opts = case.options
    local = open_backend(uri)
    local.configure(case.config)
    want = local.run(case.inputs, opts)
    local.close()
    assert len(want.spikes) > 24  # hidden and output neurons fire
    with runtime.open(a.uri()) as dev:
        assert dev.info().model == "firstspike-sim"
        dev.configure(case.config)
        got = dev.run(case.inputs, opts)
        streamed = dev.run_stream(case.inputs, opts, chunk_entries=7)
    with runtime.open(f"grpc://{a.target},{b.target}") as pool:
        pool.configure(case.config)
        pooled = pool.run(case.inputs, opts)
    for r in (got, streamed, pooled):
        assert r.spikes == want.spikes
        assert r.stats == want.stats and r.dropped == want.dropped


def test_sim_sixteen_concurrent_clients(sim_servers):
    """16 clients with 16 different networks share one simulated device; each gets exactly its own events."""
    uri, (srv, _) = sim_servers
    n = 16
    cases = [sim_case(seed=50 + k, batch=2 + k % 5) for k in range(n)]
    local = open_backend(uri)
    want = []
    for c in cases:
        local.configure(c.config)
        want.append(local.run(c.inputs, c.options).spikes)
    local.close()
    assert len({w.events.tobytes() for w in want}) == n  # the networks really differ
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            with GrpcBackend(srv.target, client_name=f"sim{k}") as dev:
                dev.configure(cases[k].config)
                barrier.wait(timeout=60)
                for _ in range(2):
                    got = dev.run(cases[k].inputs, cases[k].options)
                    assert got.spikes == want[k], f"client {k} got another network's events"
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[0]


def test_large_batches_go_as_one_run_when_the_result_fits(fake_servers, monkeypatch):
    a, _ = fake_servers
    cfg = fake_config(1)
    inputs = fake_inputs(2, batch=37)
    first = RunOptions(duration_ticks=3000, seed=11)
    with GrpcBackend(a.target, stream_threshold=4, chunk_entries=5) as dev:
        dev.configure(cfg)
        want = dev.run_stream(inputs, first)
        streamed: list[int] = []
        real = dev.run_stream
        monkeypatch.setattr(dev, "run_stream", lambda x, o, chunk_entries=None: streamed.append(1) or real(x, o))
        # First spikes of 37 entries x the enabled neurons: far below 64 MiB, so one Run despite the threshold.
        assert dev.result_fits_one_message(inputs, first)
        assert dev.run(inputs, first).spikes == want.spikes and streamed == []
        # Every spike may be up to max_events (2**24 x 6 bytes > 64 MiB): above the threshold that streams.
        every = RunOptions(duration_ticks=3000, seed=11, record="all")
        assert not dev.result_fits_one_message(inputs, every)
        dev.run(inputs, every)
        assert streamed == [1]
        # At or below the threshold it is always one Run.
        dev.run(fake_inputs(2, batch=4), every)
        assert streamed == [1]
    # A client whose own message limit is too small for the bound streams first spikes too: 12 enabled
    # neurons x 5000 entries x 6 bytes = 360 kB > 300 KiB (the configuration upload, 273 kB, still fits).
    big = fake_inputs(3, batch=5000, n=4)
    with GrpcBackend(a.target, stream_threshold=4, chunk_entries=1000, max_message_bytes=300 << 10) as small:
        small.configure(cfg)
        assert not small.result_fits_one_message(big, first)
        assert small.run(big, first).spikes == dev_free_result(a, cfg, big, first)


def dev_free_result(server: ServerProcess, cfg, inputs, options):
    """The spikes of one plain Run on ``server`` with a default client (no streaming)."""
    with GrpcBackend(server.target) as dev:
        dev.configure(cfg)
        return dev.run(inputs, options).spikes
