"""The calibration file and the calibration a device server reports: exact round trips, every defect refused."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firstspike.hal.backend import DeviceInfo
from firstspike.hal.neuron_calibration import FACTOR_FIELDS, OFFSET_FIELDS, NeuronCalibration
from firstspike.hal.null_backend import NullBackend
from firstspike.runtime.calibration import CalibrationFileError, CalibrationResult, load_calibration
from firstspike.runtime.calibration.search import METRICS
from firstspike.runtime.calibration.serving import CalibratedDevice, calibration_from_info

N = 512


def _result(seed: int, serial: int = 2, model: str = "firstspike-sim", version: str = "1.1") -> CalibrationResult:
    rng = np.random.default_rng(seed)
    cal = NeuronCalibration(model, serial, version, **{f: rng.uniform(0.9, 1.1, N) for f in FACTOR_FIELDS},
                            **{f: rng.normal(0, 2, N) for f in OFFSET_FIELDS})
    before = {k: rng.normal(0, 1, N) for k in METRICS}
    before["leak_error"][:] = np.nan  # not measured
    after = {k: rng.normal(0, 0.1, N) for k in list(METRICS)[: rng.integers(0, len(METRICS) + 1)]}
    failed = rng.random(N) < 0.01
    return CalibrationResult(cal, before, after, failed, {"duration_s": 1.5, "rounds": 2, "note": "x"})


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_file_round_trips_exactly(seed):
    r = _result(seed)
    back = CalibrationResult.from_bytes(r.to_bytes())
    assert back.to_bytes() == r.to_bytes()
    assert back.calibration == r.calibration and np.array_equal(back.failed, r.failed)
    for part in ("before", "after"):
        a, b = getattr(r, part), getattr(back, part)
        assert set(a) == set(b)
        for k in a:
            assert np.array_equal(a[k], b[k], equal_nan=True)
    assert back.meta == r.meta


@settings(max_examples=60, deadline=None)
@given(pos=st.integers(0, 10**9), bit=st.integers(0, 7), cut=st.integers(0, 10**9))
def test_corrupted_or_truncated_files_are_refused(pos, bit, cut):
    data = bytearray(_result(1).to_bytes())
    flipped = bytearray(data)
    flipped[pos % len(data)] ^= 1 << bit
    with pytest.raises(CalibrationFileError):
        CalibrationResult.from_bytes(bytes(flipped))
    with pytest.raises(CalibrationFileError):
        CalibrationResult.from_bytes(bytes(data[: cut % len(data)]))


def test_files_are_refused_on_another_chip_and_when_missing(tmp_path):
    path = tmp_path / "c.fscal"
    _result(2, serial=2).save(path)
    info = DeviceInfo(model="firstspike-sim", serial=2, version="1.1")
    assert load_calibration(path, info).serial == 2
    for other in (DeviceInfo(model="firstspike-sim", serial=3, version="1.1"),
                  DeviceInfo(model="firstspike-sim", serial=2, version="1.0"),
                  DeviceInfo(model="bss2-like-serial", serial=2, version="1.1")):
        with pytest.raises(CalibrationFileError) as e:
            load_calibration(path, other)
        assert "\n" not in str(e.value) and str(path) in str(e.value)
    with pytest.raises(CalibrationFileError, match="no such calibration file"):
        load_calibration(tmp_path / "missing.fscal")
    (tmp_path / "junk.fscal").write_bytes(b"not a calibration")
    with pytest.raises(CalibrationFileError, match="not a firstspike calibration file"):
        load_calibration(tmp_path / "junk.fscal")


def test_a_calibrated_device_reports_its_calibration_and_refuses_another_chips():
    null = NullBackend()
    info = null.info()
    r = _result(3, serial=info.serial, model=info.model, version=info.version)
    dev = CalibratedDevice(null, r)
    got = dev.info()
    assert got.extra["calibration"]["sha256"] == r.calibration.sha256()
    assert calibration_from_info(got) == r.calibration
    assert calibration_from_info(info) is None
    with pytest.raises(CalibrationFileError, match="serial"):
        CalibratedDevice(NullBackend(), _result(3, serial=info.serial + 1, model=info.model, version=info.version))


@settings(max_examples=80, deadline=None)
@given(entry=st.one_of(
    st.none(), st.integers(), st.text(), st.dictionaries(st.sampled_from(["data", "sha256", "x"]),
                                                         st.one_of(st.text(), st.integers(), st.none()))))
def test_a_malformed_reported_calibration_is_refused(entry):
    info = DeviceInfo(model="m", serial=0, version="1", extra={"calibration": entry})
    if entry is None:
        assert calibration_from_info(info) is None
        return
    with pytest.raises(CalibrationFileError):
        calibration_from_info(info)


def test_reported_data_must_match_its_digest_and_its_device():
    r = _result(4, serial=0, model="m", version="1")
    data = r.calibration.to_bytes()
    good = {"data": base64.b64encode(data).decode(), "sha256": r.calibration.sha256()}
    assert calibration_from_info(DeviceInfo(model="m", serial=0, version="1", extra={"calibration": good})) \
        == r.calibration
    with pytest.raises(CalibrationFileError, match="another chip"):
        calibration_from_info(DeviceInfo(model="m", serial=1, version="1", extra={"calibration": good}))
    bad = dict(good, sha256="0" * 64)
    with pytest.raises(CalibrationFileError, match="SHA-256"):
        calibration_from_info(DeviceInfo(model="m", serial=0, version="1", extra={"calibration": bad}))


def test_calibration_for_prefers_the_file_then_the_device(tmp_path):
    from firstspike.runtime.calibration import calibration_for

    null = NullBackend()
    info = null.info()
    r = _result(5, serial=info.serial, model=info.model, version=info.version)
    path = tmp_path / "c.fscal"
    r.save(path)
    assert calibration_for(info) is None
    assert calibration_for(info, path) == r.calibration
    served = CalibratedDevice(NullBackend(), _result(6, serial=info.serial, model=info.model, version=info.version))
    assert calibration_for(served.info()) == served.result.calibration
    assert calibration_for(served.info(), path) == r.calibration
    other = DeviceInfo(model=info.model, serial=info.serial + 1, version=info.version)
    with pytest.raises(CalibrationFileError, match="serial"):
        calibration_for(other, path)


def test_a_device_pool_is_refused():
    from firstspike.runtime.calibration import calibrate
    from firstspike.runtime.devices import DevicePool

    with DevicePool([NullBackend(), NullBackend()]) as pool, pytest.raises(ValueError, match="each chip"):
        calibrate(pool)


def _with_synapses(r: CalibrationResult, seed: int, residual: float | None = 0.002) -> CalibrationResult:
    rng = np.random.default_rng(seed)
    cal = r.calibration.with_synapses(np.exp(0.05 * rng.standard_normal((2, 256, 256))))
    meta = dict(r.meta, synapses={"measured": True, "residual_rel": residual})
    return CalibrationResult(cal, r.before, r.after, r.failed, meta)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_file_with_synapse_factors_is_version_2_and_round_trips_exactly(seed):
    r = _with_synapses(_result(seed), seed)
    data = r.to_bytes()
    assert r.version == 2 and data[4:6] == (2).to_bytes(2, "little")
    back = CalibrationResult.from_bytes(data)
    assert back.to_bytes() == data and back.calibration == r.calibration
    assert np.array_equal(back.calibration.synapse, r.calibration.synapse)
    assert back.synapse_residual_rel == pytest.approx(0.002)


def test_a_version_1_file_loads_as_no_synapse_correction(tmp_path):
    r = _result(3)
    data = r.to_bytes()
    assert r.version == 1 and data[4:6] == (1).to_bytes(2, "little")  # the bytes files had before
    back = CalibrationResult.from_bytes(data)
    assert back.calibration.synapse is None and back.synapse_residual_rel is None
    # no measured residual in a version 2 file: nothing is claimed
    assert _with_synapses(r, 1, residual=None).synapse_residual_rel is None


def test_a_file_whose_version_contradicts_its_calibration_is_refused():
    from firstspike.hal.encoding import decode_arrays, encode_arrays

    r = _with_synapses(_result(4), 4)
    _version, header, arrays = decode_arrays(r.to_bytes(), b"FSCR", (2,))
    forged = encode_arrays(b"FSCR", 1, arrays, header=header.replace(b"calibration.v2", b"calibration.v1"))
    with pytest.raises(CalibrationFileError, match="version 1 file with a calibration of version 2"):
        CalibrationResult.from_bytes(forged)


@settings(max_examples=30, deadline=None)
@given(pos=st.integers(0, 10**9), bit=st.integers(0, 7), cut=st.integers(0, 10**9))
def test_corrupted_or_truncated_version_2_files_are_refused(pos, bit, cut):
    data = bytearray(_with_synapses(_result(1), 1).to_bytes())
    flipped = bytearray(data)
    flipped[pos % len(data)] ^= 1 << bit
    with pytest.raises(CalibrationFileError):
        CalibrationResult.from_bytes(bytes(flipped))
    with pytest.raises(CalibrationFileError):
        CalibrationResult.from_bytes(bytes(data[: cut % len(data)]))
