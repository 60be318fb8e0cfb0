"""Fixtures of the conformance suite: the device under test, what it claims, and the reference device."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from firstspike.hal.backend import Backend
from firstspike.hal.errors import HalError, UnknownBackendError
from firstspike.hal.registry import open_backend
from firstspike.runtime.conformance import plugin
from firstspike.runtime.conformance.harness import Profile, measure_noise_free
from firstspike.runtime.conformance.tolerance import resolve_claims


@pytest.fixture(scope="session")
def device_uri(pytestconfig: pytest.Config) -> str:
    """The URI under test (``--device`` or ``$FIRSTSPIKE_DEVICE``); skips the suite when neither is given."""
    uri = plugin.device_uri(pytestconfig)
    if not uri:
        pytest.skip(f"no device to check: pass --device URI (e.g. --device example://) or set ${plugin.DEVICE_ENV}")
    return uri


@pytest.fixture(scope="session")
def device(device_uri: str) -> Iterator[Backend]:
    """The device under test, opened once for the whole suite; closed (twice: must be harmless) at the end.

    A device that cannot be opened ends the run once, with one line, instead of failing every check."""
    try:
        dev = open_backend(device_uri)
    except Exception as e:
        pytest.exit(f"cannot open device {device_uri!r}: {e}", returncode=pytest.ExitCode.USAGE_ERROR)
    yield dev
    dev.close()
    dev.close()


@pytest.fixture(scope="session")
def profile(device: Backend, device_uri: str, pytestconfig: pytest.Config) -> Profile:
    """Device info, resolved claims, mock flag and whether the device is noise-free."""
    info = device.info()
    claims = resolve_claims(info.extra, pytestconfig.getoption("--conformance-claim", default=[]))
    mock = bool(info.extra.get("mock", False))
    if mock:
        noise_free, source = True, "mock"
    elif claims["noise_free"] is not None:
        noise_free, source = bool(claims["noise_free"]), "claimed"
    else:
        noise_free, source = measure_noise_free(device), "measured"
    prof = Profile(device_uri, info, claims, mock, noise_free, source)
    pytestconfig.stash[plugin.PROFILE].update(
        {
            "uri": device_uri,
            "model": info.model,
            "version": info.version,
            "deterministic": info.deterministic,
            "mock": mock,
            "noise_free": noise_free,
            "noise_source": source,
            "claims": claims,
            "info": dataclasses.asdict(info),
        }
    )
    return prof


@pytest.fixture
def semantic(profile: Profile) -> Profile:
    """The profile, for checks of neuron behaviour: skipped on mock backends."""
    if profile.mock:
        pytest.skip("mock backend: it models no neurons, only the plumbing checks apply")
    return profile


@pytest.fixture(scope="session")
def reference(pytestconfig: pytest.Config) -> Iterator[Backend]:
    """The reference device (default the ideal simulator); skips the agreement checks if it cannot open."""
    uri = plugin.reference_uri(pytestconfig)
    try:
        ref = open_backend(uri)
    except (ImportError, UnknownBackendError, HalError, ValueError) as e:
        pytest.skip(f"reference device {uri} is not available ({type(e).__name__}: {e}); agreement not checked")
    yield ref
    ref.close()


@pytest.fixture
def measure(pytestconfig: pytest.Config) -> Callable[[str, Any], None]:
    """Record a measurement (shown in the terminal summary and the JSON report)."""

    def put(name: str, value: Any) -> None:
        pytestconfig.stash[plugin.MEASUREMENTS][name] = value

    return put
