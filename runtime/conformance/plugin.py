"""pytest plugin of the firstspike backend conformance suite (registered through the ``pytest11`` entry point).

Adds the options the suite reads; everything else (fixtures, checks) lives in the ``firstspike.runtime.conformance``
package, so the plugin costs nothing in other test runs (it imports only the standard library and pytest)::

    pytest --pyargs firstspike.runtime.conformance --device URI [--reference URI]
           [--conformance-claim KEY=VALUE ...] [--conformance-report FILE]
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

DEVICE_ENV = "FIRSTSPIKE_DEVICE"
DEFAULT_REFERENCE = "sim://?ideal=1"

#: measurements recorded by the checks (name -> JSON-able value), reported at the end of the run
MEASUREMENTS = pytest.StashKey[dict[str, Any]]()
#: what the suite found out about the device (info, claims, noise), reported at the end of the run
PROFILE = pytest.StashKey[dict[str, Any]]()
_OUTCOMES = pytest.StashKey[dict[str, dict[str, str | float]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("firstspike-conformance",
                            "firstspike backend conformance suite (firstspike.runtime.conformance)")
    group.addoption(
        "--device",
        default=None,
        metavar="URI",
        help=f"device URI the conformance suite checks (default: ${DEVICE_ENV}; without either the suite skips)",
    )
    group.addoption(
        "--reference",
        default=None,
        metavar="URI",
        help=f"reference device for the agreement checks (default: {DEFAULT_REFERENCE}, the ideal simulator)",
    )
    group.addoption(
        "--conformance-claim",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a tolerance claim of the device, e.g. agreement=exact (see docs/new-backend.md)",
    )
    group.addoption(
        "--conformance-report",
        default=None,
        metavar="FILE",
        help="write a JSON report (device info, claims, per-check outcome, measurements) to FILE",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[MEASUREMENTS] = {}
    config.stash[PROFILE] = {}
    config.stash[_OUTCOMES] = {}
    if config.getoption("--conformance-report", default=None):
        config.pluginmanager.register(_OutcomeRecorder(config), "firstspike-conformance-outcomes")


def device_uri(config: pytest.Config) -> str | None:
    """The device under test: ``--device`` or ``$FIRSTSPIKE_DEVICE`` (None if neither is set)."""
    return config.getoption("--device", default=None) or os.environ.get(DEVICE_ENV) or None


def reference_uri(config: pytest.Config) -> str:
    """The reference device: ``--reference`` or the ideal simulator."""
    return config.getoption("--reference", default=None) or DEFAULT_REFERENCE


class _OutcomeRecorder:
    """Collects the outcome of every conformance check for the JSON report."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Keyed "module.py::test[param]": node ids depend on the rootdir and the way the suite was named.
        module = os.path.basename(report.location[0])
        if not module.startswith("test_contract_"):
            return
        key = f"{module}::{report.location[2]}"
        if report.when != "call" and report.outcome == "passed":
            return
        reason = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2])
        elif report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            text = getattr(crash, "message", "") or report.longreprtext.strip()
            reason = text.strip().splitlines()[0][:500] if text.strip() else "failed"
        self.config.stash[_OUTCOMES][key] = {
            "outcome": report.outcome,
            "when": report.when,
            "reason": reason,
            "duration_s": round(float(report.duration), 4),
        }


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    profile = config.stash.get(PROFILE, {})
    if not profile:
        return
    tr = terminalreporter
    tr.section("firstspike conformance")
    tr.write_line(f"device     {profile.get('uri')}  ({profile.get('model')} {profile.get('version')})")
    tr.write_line(
        f"mock       {profile.get('mock')}    noise-free {profile.get('noise_free')} ({profile.get('noise_source')})"
        f"    deterministic {profile.get('deterministic')}"
    )
    tr.write_line(f"claims     {json.dumps(profile.get('claims'))}")
    for name, value in sorted(config.stash.get(MEASUREMENTS, {}).items()):
        tr.write_line(f"measured   {name}: {json.dumps(value)}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    path = config.getoption("--conformance-report", default=None)
    if not path:
        return
    outcomes = config.stash.get(_OUTCOMES, {})
    report = {
        "device": device_uri(config),
        "reference": reference_uri(config),
        "exit_status": int(exitstatus),
        "profile": config.stash.get(PROFILE, {}),
        "tests": outcomes,
        "summary": {k: sum(1 for v in outcomes.values() if v["outcome"] == k) for k in ("passed", "failed", "skipped")},
        "measurements": config.stash.get(MEASUREMENTS, {}),
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, default=str)
