"""The firstspike backend conformance suite.

Any backend author checks a device against the hal contract with::

    pytest --pyargs firstspike.runtime.conformance --device URI      # or: firstspike conformance URI

The checks (test modules ``test_contract_*.py`` in this package) cover the device info and resource model,
full and diff configuration uploads, rejection of invalid configurations and oversize requests (the
device stays usable), result ordering and time-stamp units, the reset between batch entries, first-spike
semantics, routing and row signs, determinism where claimed, and agreement with the reference device
(the ideal simulator, ``sim://?ideal=1``) on reference networks within the tolerances the device claims
(:mod:`firstspike.runtime.conformance.tolerance`). Mock backends (``DeviceInfo.extra["mock"]``) get only the
plumbing checks. Configurations are built by hand with ``hal`` (:mod:`firstspike.runtime.conformance.networks`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import metadata

PLUGIN_ENTRY_POINT = "firstspike_conformance"


def _plugin_autoloads() -> bool:
    """Whether pytest will load the plugin by itself (through the ``pytest11`` entry point)."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    # Like pluggy, look at every distribution: metadata.entry_points() keeps one distribution per name, and
    # a stale ``*.egg-info`` in the working directory could hide the installed one's entry points.
    return any(
        ep.group == "pytest11" and ep.name == PLUGIN_ENTRY_POINT
        for dist in metadata.distributions()
        for ep in dist.entry_points
    )


def pytest_args(
    uri: str,
    reference: str | None = None,
    claims: Sequence[str] = (),
    report: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The pytest command-line arguments that run the suite against ``uri``."""
    args = ["--pyargs", "firstspike.runtime.conformance", "--device", uri, "-p", "no:cacheprovider"]
    if reference:
        args += ["--reference", reference]
    for c in claims:
        args += ["--conformance-claim", c]
    if report:
        args += ["--conformance-report", report]
    return args + list(extra)


def run(
    uri: str,
    reference: str | None = None,
    claims: Sequence[str] = (),
    report: str | None = None,
    extra: Sequence[str] = (),
) -> int:
    """Run the suite against the device ``uri`` in this process; returns pytest's exit code (0 = conformant).

    ``reference``: reference device URI (default ``sim://?ideal=1``); ``claims``: ``KEY=VALUE`` overrides of
    the device's tolerance claims; ``report``: path of a JSON report; ``extra``: more pytest arguments.
    """
    import pytest

    from firstspike.runtime.conformance import plugin

    plugins = [] if _plugin_autoloads() else [plugin]
    return int(pytest.main(pytest_args(uri, reference, claims, report, extra), plugins=plugins))


__all__ = ["PLUGIN_ENTRY_POINT", "pytest_args", "run"]
