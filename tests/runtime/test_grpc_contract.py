"""The wire contract as a client in another language sees it: generated stubs and docs/protocol.md only.

The raw client here uses the generated protobuf stubs, numpy and ``struct``; never ``firstspike.runtime.wire`` or
``firstspike.runtime.remote``. It loads a compiled network with LoadArtifact, reads the layout the response carries
(input channels with the bias spikes, output neurons, tau_s in ticks, stages), runs a batch and rebuilds the
first-spike times per output class from the raw response, which must equal what
:class:`firstspike.runtime.session.Session` gets from the same server. Also: every ``RunResponse.stats`` key is
documented, a batch over ``max_batch`` is RESOURCE_EXHAUSTED, and the bearer scheme is case-insensitive.
"""

from __future__ import annotations

import math
import re
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpc_support import ServerProcess
from itl_support import compiled_small, yinyang_like_inputs

from firstspike.compiler import CompiledNetwork, CompileOptions, Layer, Network, compile
from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.proto.firstspike.v1 import device_pb2_grpc as pb_grpc
from firstspike.runtime.devices import open as open_device
from firstspike.runtime.session import Session

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TOKEN = "contract-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
SEED = 11
MARGIN_TAU = 6.0  # docs/protocol.md 3.3: the run window the Python session picks


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One realistic simulated chip (mismatch and noise on, serial 3) behind a token, for the whole module."""
    srv = ServerProcess.start("sim://?serial=3", "--token", TOKEN)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.DeviceStub]:
    ch = grpc.insecure_channel(server.target)
    try:
        yield pb_grpc.DeviceStub(ch)
    finally:
        ch.close()


# ---- the raw client ---------------------------------------------------------------------------------------------
def _ticks(t: np.ndarray, tau: float) -> np.ndarray:
    """Model times -> ticks, round half to even (numpy's rint), as docs/protocol.md 3.3 says."""
    return np.rint(t * tau)


def raw_inputs(layout: pb.ArtifactLayout, stage_in: np.ndarray) -> tuple[bytes, int, float]:
    """Records (section 4.1) for ``stage_in``: (B, k) ticks of the stage's non-bias inputs (NaN = no spike), the bias
    spikes from the layout; returns (records, batch size, latest spike in model units)."""
    b = stage_in.shape[0]
    rows: list[tuple[int, int, int]] = []
    latest = -math.inf
    for inp in layout.inputs:
        if inp.kind == pb.INPUT_KIND_BIAS:
            rows += [(e, inp.bias_ticks, inp.channel) for e in range(b)]
            latest = max(latest, inp.bias_time)
            continue
        assert inp.kind in (pb.INPUT_KIND_NETWORK, pb.INPUT_KIND_REPLAYED)
        col = stage_in[:, inp.index]
        for e in np.flatnonzero(np.isfinite(col)):
            rows.append((int(e), int(col[e]), inp.channel))
            latest = max(latest, float(col[e]) / layout.tau_s_ticks)
    return b"".join(struct.pack("<IIH", *r) for r in rows), b, latest


def first_ticks(records: bytes, b: int, neurons: list[int]) -> np.ndarray:
    """(B, len(neurons)) first spike tick per entry and neuron from 10-byte records; NaN = silent."""
    out = np.full((b, len(neurons)), np.nan)
    col = {n: k for k, n in enumerate(neurons)}
    for off in range(0, len(records), 10):
        e, t, n = struct.unpack_from("<IIH", records, off)
        k = col.get(n)
        if k is not None and np.isnan(out[e, k]):
            out[e, k] = t
    return out


def raw_session(stub: pb_grpc.DeviceStub, artifact: bytes, x: np.ndarray, seed: int) -> tuple[list, np.ndarray]:
    """Run ``x`` (B, n_inputs model times, inf = none) through every stage of ``artifact`` with raw RPCs only.
    Returns (the layout of every stage, (B, classes) output first-spike times in model units, inf = silent)."""
    lease = stub.AcquireLease(pb.AcquireLeaseRequest(client_name="raw"), metadata=AUTH, timeout=10).lease_id
    layouts: list[pb.ArtifactLayout] = []
    try:
        first = stub.LoadArtifact(pb.LoadArtifactRequest(lease_id=lease, artifact=artifact), metadata=AUTH, timeout=30)
        tau = first.artifact.tau_s_ticks
        stage_in = _ticks(np.where(np.isfinite(x) & (x >= 0), x, np.nan), tau)
        duration = None
        recorded: dict[int, np.ndarray] = {}  # layer index -> (B, n) first-spike ticks
        for s in range(first.artifact.stages):
            resp = first if s == 0 else stub.LoadArtifact(
                pb.LoadArtifactRequest(lease_id=lease, artifact=artifact, stage=s), metadata=AUTH, timeout=30)
            lay = resp.artifact
            layouts.append(lay)
            if s > 0:  # the previous stage's recorded layer, replayed
                src = {i.layer for i in lay.inputs if i.kind == pb.INPUT_KIND_REPLAYED}
                assert len(src) == 1
                stage_in = recorded[src.pop()]
            events, b, latest = raw_inputs(lay, stage_in)
            if duration is None:  # one window for every stage, from the first stage's latest spike
                duration = math.ceil((max(latest, 0.0) + MARGIN_TAU) * tau)
            run = stub.Run(pb.RunRequest(
                lease_id=lease, config_id=resp.config_id, inputs=pb.SpikeBatch(batch_size=b, events=events),
                options=pb.RunOptions(duration_ticks=duration, record=pb.RECORD_FIRST, seed=seed)),
                metadata=AUTH, timeout=60)
            for layer in lay.layers:
                if layer.stage == s:
                    recorded[layer.index] = first_ticks(run.spikes.events, b, list(layer.neuron_ids))
        out_ticks = first_ticks(run.spikes.events, x.shape[0], list(layouts[-1].output_neurons))
    finally:
        stub.ReleaseLease(pb.ReleaseLeaseRequest(lease_id=lease), metadata=AUTH, timeout=10)
    return layouts, np.where(np.isnan(out_ticks), np.inf, out_ticks / tau)


def _session_times(server: ServerProcess, compiled: CompiledNetwork, x: np.ndarray, seed: int) -> np.ndarray:
    with open_device(server.uri(token=TOKEN)) as dev:
        return Session(dev, compiled).run(x, seed=seed).output_times


# ---- LoadArtifact's layout --------------------------------------------------------------------------------------
def test_a_raw_client_reads_an_artifacts_results_without_parsing_it(server, stub):
    compiled = compiled_small(seed=1)
    x = yinyang_like_inputs(40, seed=3)
    x[::7, 1] = np.inf  # some inputs without a spike
    layouts, got = raw_session(stub, compiled.to_bytes(), x, SEED)
    (lay,) = layouts
    # The layout says what the .fsn container holds.
    assert lay.stages == 1 and lay.stage == 0 and lay.n_inputs == compiled.n_inputs == 4
    assert lay.tau_s_ticks == compiled.tau_s_ticks
    net_inputs = [i for i in lay.inputs if i.kind == pb.INPUT_KIND_NETWORK]
    assert [i.index for i in net_inputs] == [0, 1, 2, 3]
    assert [i.channel for i in net_inputs] == [int(c) for c in compiled.input_channels]
    biases = [i for i in lay.inputs if i.kind == pb.INPUT_KIND_BIAS]
    want_bias = [(k, b) for k, b in enumerate(compiled.bias_inputs) if b is not None]
    assert [(i.layer, i.channel, i.bias_time) for i in biases] == [(k, ch, t) for k, (ch, t) in want_bias]
    assert all(i.bias_ticks == round(i.bias_time * lay.tau_s_ticks) for i in biases) and len(biases) == 2
    assert [list(L.neuron_ids) for L in lay.layers] == [[int(n) for n in ids] for ids in compiled.output_neuron_ids]
    assert list(lay.output_neurons) == list(lay.layers[-1].neuron_ids) and len(lay.output_neurons) == 3
    assert [(L.n_in, L.has_bias, L.stage) for L in lay.layers] == [(4, True, 0), (20, True, 0)]
    # The raw reconstruction equals the Python session's on the same (noisy, seeded) device, bit for bit.
    want = _session_times(server, compiled, x, SEED)
    assert np.isfinite(got).sum() > 60  # most entries have output spikes: the comparison is not vacuous
    np.testing.assert_array_equal(got, want)


def test_a_two_stage_artifact_replays_the_recorded_layer(server, stub):
    g = torch.Generator().manual_seed(0)
    w1 = (torch.randn(5, 200, generator=g, dtype=torch.float64) * 0.8 + 1.5).numpy()
    w2 = (torch.randn(200, 200, generator=g, dtype=torch.float64) * 0.2 + 0.12).numpy()
    w3 = (torch.randn(200, 3, generator=g, dtype=torch.float64) * 0.2 + 0.12).numpy()
    net = Network(4, (Layer(w1, bias_time=0.9), Layer(w2), Layer(w3)), "three")
    compiled = compile(net, CompileOptions(weight_scale=(12.0, 40.0, 40.0)))
    assert compiled.n_stages == 2
    x = yinyang_like_inputs(12, seed=5)
    layouts, got = raw_session(stub, compiled.to_bytes(), x, SEED)
    assert [lay.stage for lay in layouts] == [0, 1] and all(lay.stages == 2 for lay in layouts)
    replayed = [i for i in layouts[1].inputs if i.kind == pb.INPUT_KIND_REPLAYED]
    src = compiled.stages[1].input_source
    assert [i.index for i in replayed] == list(range(compiled.layers[src].n_out))
    assert {i.layer for i in replayed} == {src}
    assert [i.channel for i in replayed] == [int(c) for c in compiled.stages[1].input_channels]
    assert not any(i.kind == pb.INPUT_KIND_NETWORK for i in layouts[1].inputs)
    want = _session_times(server, compiled, x, SEED)
    assert np.isfinite(got).any()
    np.testing.assert_array_equal(got, want)


def test_load_artifact_answers_the_layout_also_when_nothing_changed(stub):
    compiled = compiled_small(seed=2)
    lease = stub.AcquireLease(pb.AcquireLeaseRequest(), metadata=AUTH, timeout=10).lease_id
    try:
        req = pb.LoadArtifactRequest(lease_id=lease, artifact=compiled.to_bytes())
        a = stub.LoadArtifact(req, metadata=AUTH, timeout=30)
        b = stub.LoadArtifact(req, metadata=AUTH, timeout=30)
        assert not a.unchanged and b.unchanged and a.artifact == b.artifact and a.HasField("artifact")
        # LoadConfig answers no layout (the configuration alone does not say what its channels mean)
        cfg = stub.GetConfig(pb.GetConfigRequest(lease_id=lease), metadata=AUTH, timeout=10).config
        c = stub.LoadConfig(pb.LoadConfigRequest(lease_id=lease, config=cfg), metadata=AUTH, timeout=30)
        assert not c.HasField("artifact")
    finally:
        stub.ReleaseLease(pb.ReleaseLeaseRequest(lease_id=lease), metadata=AUTH, timeout=10)


# ---- RunResponse.stats ------------------------------------------------------------------------------------------
def documented_stats() -> dict[str, str]:
    """Key -> unit of the rows of the stats table in docs/protocol.md (section 3.4)."""
    text = DOC.read_text()
    start = text.index("<!-- stats-table -->")
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \| ([^|]+) \|$", text[start:].split("\n\n")[1], re.M)
    return {key: unit.strip() for key, _meaning, unit in rows}


def test_every_stats_key_of_a_sim_run_is_documented(stub):
    documented = documented_stats()
    assert len(documented) >= 4
    compiled = compiled_small(seed=1)
    lease = stub.AcquireLease(pb.AcquireLeaseRequest(), metadata=AUTH, timeout=10).lease_id
    try:
        resp = stub.LoadArtifact(pb.LoadArtifactRequest(lease_id=lease, artifact=compiled.to_bytes()),
                                 metadata=AUTH, timeout=30)
        events, b, _ = raw_inputs(resp.artifact, _ticks(yinyang_like_inputs(30, seed=1), resp.artifact.tau_s_ticks))
        for record in (pb.RECORD_FIRST, pb.RECORD_ALL):
            run = stub.Run(pb.RunRequest(lease_id=lease, inputs=pb.SpikeBatch(batch_size=b, events=events),
                                         options=pb.RunOptions(duration_ticks=8000, record=record, seed=3)),
                           metadata=AUTH, timeout=60)
            assert set(run.stats) == set(documented), record
            assert run.stats["spikes"] >= len(run.spikes.events) // 10 > 0  # every spike, recorded or not
            assert run.stats["input_events"] + run.stats["lost_input_events"] == len(events) // 10
            assert run.stats["synaptic_events"] > run.stats["input_events"]
    finally:
        stub.ReleaseLease(pb.ReleaseLeaseRequest(lease_id=lease), metadata=AUTH, timeout=10)


# ---- limits and authentication ----------------------------------------------------------------------------------
def _code(call, request, metadata=AUTH) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as ei:
        call(request, metadata=metadata, timeout=30)
    reason = dict(ei.value.trailing_metadata() or ()).get("fs-reason", "")
    return ei.value.code(), ei.value.details(), reason


def test_a_batch_over_max_batch_is_resource_exhausted(stub):
    info = stub.GetInfo(pb.GetInfoRequest(), metadata=AUTH, timeout=10)
    assert info.max_batch == 65536  # the simulator's, which is also the wire format's limit
    lease = stub.AcquireLease(pb.AcquireLeaseRequest(), metadata=AUTH, timeout=10).lease_id
    try:
        options = pb.RunOptions(duration_ticks=100)
        over = pb.RunRequest(lease_id=lease, inputs=pb.SpikeBatch(batch_size=info.max_batch + 1), options=options)
        code, details, reason = _code(stub.Run, over)
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "capacity"), details
        assert "max_batch 65536" in details and "65537" in details
        with pytest.raises(grpc.RpcError) as ei:  # a RunStream chunk the same
            list(stub.RunStream(iter([over]), metadata=AUTH, timeout=30))
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        at = pb.RunRequest(lease_id=lease, inputs=pb.SpikeBatch(batch_size=info.max_batch), options=options)
        assert stub.Run(at, metadata=AUTH, timeout=60).spikes.batch_size == info.max_batch  # the limit itself runs
    finally:
        stub.ReleaseLease(pb.ReleaseLeaseRequest(lease_id=lease), metadata=AUTH, timeout=10)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(stub, scheme):
    md = (("authorization", f"{scheme} {TOKEN}"),)
    assert stub.GetInfo(pb.GetInfoRequest(), metadata=md, timeout=10).protocol == "firstspike.v1"
    code, details, reason = _code(stub.GetInfo, pb.GetInfoRequest(), (("authorization", f"{scheme} wrong"),))
    assert (code, reason, details) == (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", "invalid bearer token")


@pytest.mark.parametrize("value", [f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}", "Bearer ", f"Token {TOKEN}"])
def test_other_schemes_and_a_bare_token_are_refused(stub, value):
    code, details, reason = _code(stub.GetInfo, pb.GetInfoRequest(), (("authorization", value),))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")
    assert "not a bearer token" in details
