"""The device server's lease and scheduling logic alone: no grpc, a fake clock, hal errors.

(tests/runtime/test_grpc_host.py covers the same host with real threads and timing.)
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpc_fake_backend import FakeBackend, fake_result
from grpc_support import FAKE_OPTIONS, fake_config, fake_inputs

from firstspike.hal.errors import CapacityError, ConfigError, DeviceBusyError, HalError, LinkError
from firstspike.runtime.serve.errors import (
    ConfigMismatchError,
    DeviceHeldError,
    DiffBaseError,
    LeaseUnknownError,
    RequestError,
    ShuttingDownError,
    TooManyLeasesError,
)
from firstspike.runtime.serve.host import DeviceHost, check_config_id, check_lease_id
from firstspike.runtime.serve.jsonlog import JsonFormatter

REPO = Path(__file__).resolve().parents[2]


class Clock:
    """A clock that moves only when told (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_host_imports_no_grpc_and_no_protobuf():
    code = ("import sys; import firstspike.runtime.serve.host, firstspike.runtime.serve.errors; "
            "bad = sorted(m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', 'google.protobuf'))); "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_ids_are_checked_with_request_errors():
    for bad in ("", "zz", "A" * 32, "0" * 31):
        with pytest.raises(RequestError):
            check_lease_id(bad)
    check_lease_id("0123456789abcdef" * 2)
    with pytest.raises(RequestError, match="64 lowercase hex"):
        check_config_id("xyz")
    check_config_id("ab" * 32)
    assert issubclass(RequestError, ValueError) and issubclass(RequestError, HalError)


def test_acquire_checks_its_arguments_and_the_lease_limit():
    host = DeviceHost(FakeBackend(), max_leases=2, clock=Clock())
    with pytest.raises(RequestError, match="at most 128"):
        host.acquire("x" * 129, "", False, 0, 0)
    with pytest.raises(RequestError, match="ttl_ms 50 out of range"):
        host.acquire("a", "", False, 50, 0)
    with pytest.raises(RequestError, match="wait_ms"):
        host.acquire("a", "", False, 0, 10**9)
    host.acquire("a", "", False, 0, 0)
    host.acquire("b", "", False, 0, 0)
    with pytest.raises(TooManyLeasesError, match="already holds 2 leases") as ei:
        host.acquire("c", "", False, 0, 0)
    assert isinstance(ei.value, CapacityError)


def test_leases_expire_on_the_hosts_clock_and_the_expiry_is_logged(caplog: pytest.LogCaptureFixture):
    clock = Clock()
    host = DeviceHost(FakeBackend(), clock=clock)
    le = host.acquire("sleepy", "", False, 1000, 0)  # ttl 1 s
    clock.now += 0.9
    assert host.lease(le.id) is le  # renewed: expires 1 s from now
    clock.now += 0.9
    assert host.lease_count() == 1
    clock.now += 1.1
    with caplog.at_level(logging.INFO, logger="firstspike.server"), pytest.raises(LeaseUnknownError, match="expired"):
        host.lease(le.id)
    assert host.lease_count() == 0
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    assert any(r["event"] == "lease_expired" and r["client"] == "sleepy" and r["lease"] == le.short for r in lines)


def test_configurations_per_lease_diffs_and_mismatches():
    host = DeviceHost(FakeBackend(), clock=Clock())
    le = host.acquire("c", "", False, 0, 0)
    ca, cb = fake_config(1), fake_config(2)
    assert host.set_config(le.id, ca, None)[1] is False
    assert host.set_config(le.id, ca, None)[1] is True  # unchanged
    diff = ca.diff(cb)
    assert host.update_config(le.id, diff, None)[1] is False
    assert host.update_config(le.id, diff, None)[1] is True  # a replay: already applied
    with pytest.raises(DiffBaseError, match="does not match the lease's configuration") as ei:
        host.update_config(le.id, ca.diff(fake_config(3)), None)
    assert isinstance(ei.value, ConfigError)
    x = fake_inputs(2, batch=3)
    with pytest.raises(ConfigMismatchError):
        host.run(le.id, ca.digest().hex(), x, FAKE_OPTIONS, None)
    result, lease, us = host.run(le.id, cb.digest().hex(), x, FAKE_OPTIONS, None)
    assert lease is le and us >= 0 and result.spikes == fake_result(cb, x, FAKE_OPTIONS).spikes
    host.release(le.id)
    with pytest.raises(LeaseUnknownError):
        host.run(le.id, "", x, FAKE_OPTIONS, None)


def test_an_exclusive_lease_refuses_others_at_once_when_they_may_not_wait():
    host = DeviceHost(FakeBackend(), clock=Clock())
    owner = host.acquire("owner", "", True, 0, 0)
    other = host.acquire("other", "", False, 0, 0)
    held = r"held exclusively by lease [0-9a-f]{8} of client 'owner'; waited 0 ms"
    with pytest.raises(DeviceHeldError, match=held) as ei:
        host.acquire("rival", "", True, 0, 0)
    assert isinstance(ei.value, DeviceBusyError)
    with pytest.raises(DeviceHeldError, match=r"gave up after 0\.0 s"):
        host.run(other.id, "", fake_inputs(1, batch=1), FAKE_OPTIONS, 0.0)
    host.run(owner.id, "", fake_inputs(1, batch=1), FAKE_OPTIONS, 0.0)  # the owner itself never waits
    host.release(owner.id)
    host.run(other.id, "", fake_inputs(1, batch=1), FAKE_OPTIONS, 0.0)


def test_a_closed_host_refuses_device_work():
    dev = FakeBackend()
    host = DeviceHost(dev, clock=Clock())
    le = host.acquire("c", "", False, 0, 0)
    host.close()
    with pytest.raises(ShuttingDownError, match="shutting down") as ei:
        host.run(le.id, "", fake_inputs(1, batch=1), FAKE_OPTIONS, None)
    assert isinstance(ei.value, LinkError)
    host.close()  # idempotent
