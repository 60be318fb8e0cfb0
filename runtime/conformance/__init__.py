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

import importlib.util
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

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


def suite_dir() -> Path:
    """The folder of the suite's test modules (``test_contract_*.py``) and its ``conftest.py``."""
    spec = importlib.util.find_spec(__name__)
    assert spec is not None and spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations)))


def pytest_args(
    uri: str,
    reference: str | None = None,
    claims: Sequence[str] = (),
    report: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The pytest command-line arguments that run the suite against ``uri``, isolated from the caller's pytest
    configuration: an empty configuration file (``-c`` the null device, so no ``pytest.ini``/``pyproject.toml``
    ``addopts`` apply), the suite's own folder as the root and the conftest cut-off (no ``conftest.py`` of the
    caller's project is loaded), and no cache folder."""
    here = str(suite_dir())
    args = ["-c", os.devnull, "--rootdir", here, "--confcutdir", here, "-p", "no:cacheprovider", here,
            "--device", uri]
    if reference:
        args += ["--reference", reference]
    for c in claims:
        args += ["--conformance-claim", c]
    if report:
        args += ["--conformance-report", os.path.abspath(report)]
    return args + list(extra)


def check_request(uri: str, reference: str | None = None, claims: Sequence[str] = (),
                  report: str | None = None) -> None:
    """Check what a suite run needs before pytest starts, so that a wrong request fails once, with one line.

    Opens (and closes) the device and the explicitly given reference device, parses the claims and checks that
    the report can be written. Raises the error that says what is wrong: :class:`~firstspike.hal.errors.HalError`
    (unknown or broken scheme, unreachable device), ``ValueError`` (bad URI or claim) or ``OSError`` (report).
    """
    from firstspike.hal.registry import open_backend
    from firstspike.runtime.conformance.tolerance import resolve_claims

    resolve_claims({}, list(claims))
    if report:
        folder = os.path.dirname(os.path.abspath(report))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise OSError(f"cannot write the report {report}: folder {folder} does not exist or is not writable")
    for which, u in (("device", uri), ("reference device", reference)):
        if u is None:
            continue
        try:
            open_backend(u).close()
        except Exception as e:
            raise DeviceUnavailableError(f"cannot open {which} {u!r}: {e}") from e


def run(
    uri: str,
    reference: str | None = None,
    claims: Sequence[str] = (),
    report: str | None = None,
    extra: Sequence[str] = (),
    *,
    check: bool = True,
) -> int:
    """Run the suite against the device ``uri`` in this process; returns pytest's exit code (0 = conformant).

    ``reference``: reference device URI (default ``sim://?ideal=1``); ``claims``: ``KEY=VALUE`` overrides of
    the device's tolerance claims; ``report``: path of a JSON report; ``extra``: more pytest arguments.
    The request is checked first (:func:`check_request`): a device that cannot be opened raises
    :class:`DeviceUnavailableError`, a bad claim ``ValueError``, an unwritable report ``OSError``; pytest never
    starts then (``check=False``: the caller did that already). The caller's pytest configuration (ini files,
    conftest.py, ``PYTEST_ADDOPTS``) does not apply.
    """
    import pytest

    from firstspike.runtime.conformance import plugin

    if check:
        check_request(uri, reference, claims, report)
    plugins = [] if _plugin_autoloads() else [plugin]
    saved = os.environ.pop("PYTEST_ADDOPTS", None)  # the caller's options are not the suite's
    try:
        return int(pytest.main(pytest_args(uri, reference, claims, report, extra), plugins=plugins))
    finally:
        if saved is not None:
            os.environ["PYTEST_ADDOPTS"] = saved


class DeviceUnavailableError(RuntimeError):
    """The device (or the reference device) named for a suite run cannot be opened; the message says why."""


__all__ = ["PLUGIN_ENTRY_POINT", "DeviceUnavailableError", "check_request", "pytest_args", "run", "suite_dir"]
