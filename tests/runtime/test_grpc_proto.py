"""The generated stubs are current (regenerating from proto/ changes nothing) and importable as a package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _gen_module():
    spec = importlib.util.spec_from_file_location("fs_gen_proto", REPO / "scripts" / "gen_proto.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_regenerating_the_stubs_changes_nothing():
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates the stubs")
    gen = _gen_module()
    files = gen.generate()
    assert {p.name for p in files} == {"device_pb2.py", "device_pb2.pyi", "device_pb2_grpc.py"}
    assert gen.stale(files) == [], "stubs are out of date: run python scripts/gen_proto.py"
    assert gen.generate() == files  # deterministic
    assert gen.main(["--check"]) == 0


def test_stubs_import_from_the_package_path():
    from firstspike.proto.firstspike.v1 import device_pb2, device_pb2_grpc

    assert device_pb2.DESCRIPTOR.name == "firstspike/v1/device.proto"
    assert device_pb2.DESCRIPTOR.package == "firstspike.v1"
    assert device_pb2.RunRequest.__module__ == "firstspike.proto.firstspike.v1.device_pb2"
    service = device_pb2.DESCRIPTOR.services_by_name["Device"]
    assert {m.name for m in service.methods} == {
        "GetInfo",
        "AcquireLease",
        "RenewLease",
        "ReleaseLease",
        "LoadConfig",
        "LoadArtifact",
        "GetConfig",
        "UpdateConfig",
        "Run",
        "RunStream",
        "Reset",
    }
    assert hasattr(device_pb2_grpc, "DeviceStub") and hasattr(device_pb2_grpc, "add_DeviceServicer_to_server")
