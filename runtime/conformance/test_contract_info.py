"""Info and resource model: identity, versions, limits, claims; the scheme is registered."""

from __future__ import annotations

import json

from firstspike.hal import chip
from firstspike.hal.backend import Backend
from firstspike.hal.registry import DeviceURI, available_schemes
from firstspike.runtime.conformance.harness import Profile
from firstspike.runtime.conformance.tolerance import resolve_claims


def test_info_identity_and_version(device: Backend) -> None:
    info = device.info()
    assert isinstance(info.model, str) and info.model.strip(), "DeviceInfo.model must name the device"
    assert isinstance(info.version, str) and info.version.strip(), "DeviceInfo.version must be a non-empty string"
    assert isinstance(info.serial, int) and info.serial >= 0, f"DeviceInfo.serial {info.serial!r} must be an int >= 0"
    assert isinstance(info.deterministic, bool)
    assert isinstance(info.extra, dict)
    json.dumps(info.extra)  # must survive the wire (gRPC, serial): plain JSON values only
    assert device.info() == info, "info() must be stable between calls"


def test_resource_model_matches_hal(device: Backend) -> None:
    model = device.info().resource_model
    expected = chip.resource_model()
    missing = sorted(set(expected) - set(model))
    wrong = {k: (model[k], v) for k, v in expected.items() if k in model and model[k] != v}
    assert not missing and not wrong, (
        f"resource model differs from firstspike.hal.chip: missing {missing}, (got, hal) {wrong}")


def test_limits_are_sane(device: Backend) -> None:
    info = device.info()
    assert 1 <= info.max_batch <= chip.MAX_BATCH, f"max_batch {info.max_batch} not in [1, {chip.MAX_BATCH}]"
    assert 1 <= info.max_duration_ticks <= chip.MAX_DURATION_TICKS, f"max_duration_ticks {info.max_duration_ticks}"
    assert info.max_events >= 1, f"max_events {info.max_events} must be >= 1"
    assert 0 <= info.membrane_readout <= chip.N_NEURONS, f"membrane_readout {info.membrane_readout}"


def test_backend_type_and_scheme(device: Backend, device_uri: str) -> None:
    assert isinstance(device, Backend), f"{type(device).__name__} is not a firstspike.hal.backend.Backend"
    assert isinstance(type(device).scheme, str) and type(device).scheme, "Backend.scheme must name the URI scheme"
    scheme = DeviceURI.parse(device_uri).scheme
    assert scheme in available_schemes(), f"scheme {scheme!r} is not registered (entry point missing?)"


def test_conformance_claims_are_well_formed(device: Backend, profile: Profile) -> None:
    # resolve_claims raises ClaimError on unknown keys or malformed values; the profile already resolved them
    resolve_claims(device.info().extra)
    assert set(profile.claims) >= {"agreement", "mean_abs_dt_ticks", "jitter_agreement", "jitter_ticks"}
