"""Registry and URIs: parsing, parameter checks, entry-point discovery, the null:// mock."""

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from firstspike.hal import registry
from firstspike.hal.backend import Backend, RunOptions
from firstspike.hal.config import ChipConfig
from firstspike.hal.errors import BackendError, CapacityError, FieldRangeError, UnknownBackendError
from firstspike.hal.events import InputSpikes
from firstspike.hal.null_backend import NullBackend
from firstspike.hal.registry import DeviceURI


def test_parse_uri_forms():
    u = DeviceURI.parse("sim://?serial=7&noise=0")
    assert (u.scheme, u.params) == ("sim", {"serial": "7", "noise": "0"})
    assert u.int_param("serial", 0, 0, 100) == 7
    g = DeviceURI.parse("grpc://127.0.0.1:50051")
    assert (g.scheme, g.netloc) == ("grpc", "127.0.0.1:50051")
    assert DeviceURI.parse("sim").scheme == "sim"
    with pytest.raises(ValueError, match="no scheme"):
        DeviceURI.parse("/dev/ttyUSB0")
    with pytest.raises(ValueError, match="non-empty"):
        DeviceURI.parse("")
    with pytest.raises(ValueError, match=r"serial=.x.*not an integer"):
        DeviceURI.parse("sim://?serial=x").int_param("serial", 0, 0, 9)
    with pytest.raises(ValueError, match=r"out of range \[0, 9\]"):
        DeviceURI.parse("sim://?serial=10").int_param("serial", 0, 0, 9)
    with pytest.raises(ValueError, match="does not take parameter"):
        DeviceURI.parse("sim://?seriall=1").check_params({"serial"})
    t = DeviceURI.parse("grpc://h:1?timeout=2.5")
    assert t.float_param("timeout", 1.0, 0.0, 10.0) == 2.5 and t.float_param("ttl", 1.0, 0.0, 10.0) == 1.0
    with pytest.raises(ValueError, match=r"grpc:// parameter timeout=.x. is not a number"):
        DeviceURI.parse("grpc://h:1?timeout=x").float_param("timeout", 1.0, 0.0, 10.0)
    for bad in ("11", "-1", "nan"):
        with pytest.raises(ValueError, match=r"out of range \[0.0, 10.0\]"):
            DeviceURI.parse(f"grpc://h:1?timeout={bad}").float_param("timeout", 1.0, 0.0, 10.0)


@given(st.text(max_size=60))
def test_uri_parser_never_crashes_unexpectedly(text):
    with contextlib.suppress(ValueError):
        DeviceURI.parse(text)


def test_builtin_entry_points_are_discovered():
    schemes = registry.available_schemes()
    assert {"null", "sim", "grpc", "serial"} <= set(schemes)
    with pytest.raises(UnknownBackendError, match=r"no backend for scheme 'nope'.*available"):
        registry.open_backend("nope://")


def test_runtime_registration_and_null_backend():
    registry.register("nulltest", NullBackend.from_uri)
    dev = registry.open_backend("nulltest://?serial=3")
    assert isinstance(dev, Backend)
    assert dev.info().serial == 3 and dev.info().extra["mock"]
    cfg = ChipConfig()
    cfg.synapses.weights[0, 0, 0] = 5
    dev.configure(cfg)
    dev.configure(cfg.diff(ChipConfig()))
    assert dev.config == ChipConfig()
    res = dev.run(InputSpikes.from_times(np.array([[1.0, 2.0]])), RunOptions(duration_ticks=100))
    assert len(res.spikes) == 0 and res.spikes.batch_size == 1
    with pytest.raises(FieldRangeError, match="inside the run"):
        dev.run(InputSpikes.from_times(np.array([[200.0]])), RunOptions(duration_ticks=100))
    with pytest.raises(CapacityError, match="readout"):
        dev.run(InputSpikes.from_times(np.array([[1.0]])), RunOptions(duration_ticks=100, readout=(1,)))
    dev.close()
    with pytest.raises(BackendError, match="closed"):
        dev.info()


def test_run_options_are_range_checked():
    with pytest.raises(FieldRangeError, match="duration_ticks"):
        RunOptions(duration_ticks=0)
    with pytest.raises(ValueError, match="record"):
        RunOptions(record="some")  # type: ignore[arg-type]
    with pytest.raises(FieldRangeError, match="readout"):
        RunOptions(readout=(512,))
