"""The wire contract as a client in another language sees it: generated stubs and docs/protocol.md only.

The raw client here uses the generated protobuf stubs only, never ``firstspike.runtime.remote``: a batch over
``max_batch`` is RESOURCE_EXHAUSTED, and the bearer scheme is case-insensitive.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpc_support import ServerProcess

from firstspike.proto.firstspike.v1 import device_pb2 as pb
from firstspike.proto.firstspike.v1 import device_pb2_grpc as pb_grpc

TOKEN = "contract-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


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
