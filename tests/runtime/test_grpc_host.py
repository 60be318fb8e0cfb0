"""The server's device host in-process (no gRPC): per-lease configurations, busy leases never expire,
exclusive leases, and the device keeps its configuration when a new one is rejected. The host raises hal errors;
the status each one becomes on the wire is checked through the server's one status table."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpc_fake_backend import FakeBackend, fake_result
from grpc_support import FAKE_OPTIONS, fake_config, fake_inputs

from firstspike.hal.config import ChipConfig
from firstspike.runtime.serve.errors import ConfigMismatchError, DeviceHeldError, LeaseUnknownError
from firstspike.runtime.serve.host import DeviceHost
from firstspike.runtime.serve.status import status_for


def test_leases_keep_their_own_configs_and_switch_minimally():
    dev = FakeBackend()
    host = DeviceHost(dev)
    a = host.acquire("a", "", False, 0, 0)
    b = host.acquire("b", "", False, 0, 0)
    ca, cb = fake_config(1), fake_config(2)
    host.set_config(a.id, ca, None)
    host.set_config(b.id, cb, None)
    x = fake_inputs(3, batch=4)
    n0 = dev.configures
    for _ in range(2):
        ra, _, _ = host.run(a.id, "", x, FAKE_OPTIONS, None)
        ra2, _, _ = host.run(a.id, ca.digest().hex(), x, FAKE_OPTIONS, None)
        rb, _, _ = host.run(b.id, "", x, FAKE_OPTIONS, None)
        assert ra.spikes == ra2.spikes == fake_result(ca, x, FAKE_OPTIONS).spikes
        assert rb.spikes == fake_result(cb, x, FAKE_OPTIONS).spikes
    assert dev.configures - n0 == 4  # one switch per change of lease, none for a repeated lease
    with pytest.raises(ConfigMismatchError) as ei:
        host.run(a.id, cb.digest().hex(), x, FAKE_OPTIONS, None)
    assert status_for(ei.value)[0] == grpc.StatusCode.FAILED_PRECONDITION


def test_rejected_config_leaves_lease_and_device_unchanged():
    class Picky(FakeBackend):
        def configure(self, config):
            cfg = config if isinstance(config, ChipConfig) else config.apply(self._config)
            if cfg.neurons.values["enabled"].sum() > 20:
                raise ValueError("this device supports at most 20 enabled neurons")
            super().configure(config)

    host = DeviceHost(Picky())
    le = host.acquire("p", "", False, 0, 0)
    good = fake_config(1, n_neurons=10)
    host.set_config(le.id, good, None)
    with pytest.raises(ValueError, match="at most 20"):
        host.set_config(le.id, fake_config(2, n_neurons=30), None)
    assert host.lease(le.id).digest == good.digest()
    x = fake_inputs(1, batch=2)
    assert host.run(le.id, "", x, FAKE_OPTIONS, None)[0].spikes == fake_result(good, x, FAKE_OPTIONS).spikes


def test_busy_lease_outlives_its_ttl():
    host = DeviceHost(FakeBackend(delay_ms=600))
    le = host.acquire("slow", "", False, 200, 0)  # ttl 0.2 s, run 0.6 s
    host.run(le.id, "", fake_inputs(1, batch=1), FAKE_OPTIONS, None)
    assert host.lease(le.id) is le  # still alive (renewed when the run ended)
    time.sleep(0.35)
    with pytest.raises(LeaseUnknownError) as ei:
        host.lease(le.id)
    assert status_for(ei.value)[0] == grpc.StatusCode.NOT_FOUND


def test_exclusive_lease_blocks_others_until_released():
    host = DeviceHost(FakeBackend())
    owner = host.acquire("owner", "", True, 0, 0)
    other = host.acquire("other", "", False, 0, 0)
    with pytest.raises(DeviceHeldError) as ei:
        host.run(other.id, "", fake_inputs(1, batch=1), FAKE_OPTIONS, 0.3)
    assert status_for(ei.value)[0] == grpc.StatusCode.ABORTED and "exclusively" in str(ei.value)
    with pytest.raises(DeviceHeldError) as ei:
        host.acquire("rival", "", True, 0, 100)
    assert status_for(ei.value)[0] == grpc.StatusCode.ABORTED
    # A waiter gets its turn as soon as the exclusive lease is released.
    done = []
    t = threading.Thread(
        target=lambda: done.append(host.run(other.id, "", fake_inputs(1, batch=1), FAKE_OPTIONS, 10.0))
    )
    t.start()
    time.sleep(0.3)
    assert not done
    host.release(owner.id)
    t.join(5)
    assert done and done[0][0].spikes.batch_size == 1


def test_host_forwards_a_clients_diff_and_reloads_whole_after_a_failed_run():
    class Recording(FakeBackend):
        def __init__(self) -> None:
            super().__init__()
            self.received: list[object] = []
            self.fail_runs = 0

        def configure(self, config):
            self.received.append(config)
            super().configure(config)

        def run(self, inputs, options):
            if self.fail_runs:
                self.fail_runs -= 1
                raise RuntimeError("the device hung up mid-run")
            return super().run(inputs, options)

    dev = Recording()
    host = DeviceHost(dev)
    le = host.acquire("c", "", False, 0, 0)
    ca, cb = fake_config(1), fake_config(2)
    host.set_config(le.id, ca, None)
    assert isinstance(dev.received[-1], ChipConfig)  # the device's state was unknown: the whole config
    diff = ca.diff(cb)
    host.update_config(le.id, diff, None)
    assert dev.received[-1] is diff  # the device holds the diff's base: the client's own diff goes on
    x = fake_inputs(4, batch=2)
    dev.fail_runs = 1
    with pytest.raises(RuntimeError, match="mid-run"):
        host.run(le.id, "", x, FAKE_OPTIONS, None)
    assert not dev.mirror.known  # a failed run may leave the device anywhere
    n = len(dev.received)
    assert host.run(le.id, "", x, FAKE_OPTIONS, None)[0].spikes == fake_result(cb, x, FAKE_OPTIONS).spikes
    assert len(dev.received) == n + 1 and isinstance(dev.received[-1], ChipConfig)
