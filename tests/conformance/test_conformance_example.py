"""The example backend (examples/firstspike-example-backend): found through its entry point, usable through
firstspike.hal.registry and firstspike.runtime.open, conformant; and the suite catches deliberately broken variants
of it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from firstspike.hal import registry
from firstspike.hal.backend import Backend, RunOptions
from firstspike.hal.events import InputSpikes

HERE = Path(__file__).resolve().parent

#: scheme -> (class in conformance_mutants.py, the check that must fail for it)
MUTANTS: dict[str, tuple[str, str]] = {
    "mutant-carry": ("CarryStateBackend", "test_contract_run.py::test_reset_between_entries"),
    "mutant-sign": ("InhibitionExcitesBackend", "test_contract_routing.py::test_routing_row_sign_labels_and_halves"),
    "mutant-labels": ("IgnoresLabelsBackend", "test_contract_routing.py::test_routing_row_sign_labels_and_halves"),
    "mutant-novalidate": (
        "AppliesBeforeValidatingBackend",
        "test_contract_config.py::test_invalid_config_is_rejected_and_old_config_stays[weight_out_of_range]",
    ),
    "mutant-ns": ("NanosecondsBackend", "test_contract_run.py::test_spikes_follow_their_inputs_in_ticks"),
    "mutant-last": ("LastSpikeBackend", "test_contract_run.py::test_first_spike_is_earliest_of_all"),
    "mutant-info": ("WrongResourceModelBackend", "test_contract_info.py::test_resource_model_matches_hal"),
}


@pytest.fixture
def example_on_path(example_site: Path):
    """The pip-installed example on sys.path for this test only (the registry cache is restored after)."""
    sys.path[:0] = [str(example_site), str(HERE)]
    importlib.invalidate_caches()
    try:
        yield example_site
    finally:
        sys.path.remove(str(example_site))
        sys.path.remove(str(HERE))
        for scheme in ["example", *MUTANTS]:
            registry._registered.pop(scheme, None)
        for name in [m for m in sys.modules if m.split(".")[0] in ("example_backend", "conformance_mutants")]:
            del sys.modules[name]


def test_entry_point_makes_example_usable_everywhere(example_on_path: Path) -> None:
    assert "example" not in registry._registered
    assert "example" in registry.available_schemes()
    dev = registry.open_backend("example://?serial=5")
    assert isinstance(dev, Backend) and type(dev).__module__ == "example_backend.backend"
    assert dev.info().serial == 5 and dev.info().model == "example-float-lif"
    res = dev.run(InputSpikes.from_times(np.array([[10.0]])), RunOptions(duration_ticks=100))
    assert len(res.spikes) == 0  # default config: nothing enabled
    dev.close()
    with pytest.raises(ValueError, match="does not take parameter"):
        registry.open_backend("example://?serail=5")
    from firstspike import runtime

    dev2 = runtime.open("example://")
    assert type(dev2).__name__ == "ExampleBackend"
    dev2.close()


def test_example_is_not_installed_in_the_project_env() -> None:
    # The tests must not depend on (or leave behind) an installed example backend.
    assert importlib.util.find_spec("example_backend") is None or "example" not in registry.available_schemes()


def test_suite_passes_on_example(example_site: Path, run_suite) -> None:
    run = run_suite("example://", paths=(example_site,))
    assert run.returncode == 0 and not run.outcomes("failed"), run.explain()
    prof = run.report["profile"]
    assert prof["mock"] is False and prof["noise_free"] is True and prof["noise_source"] == "measured"
    for check in (
        "test_reset_between_entries",
        "test_routing_row_sign",
        "test_time_shift_moves_spikes",
        "test_first_spike_is_earliest_of_all",
        "test_invalid_config_is_rejected",
        "test_same_seed",
        "test_oversize_batch_is_rejected",
        "test_too_long_duration_is_rejected",
    ):
        assert run.passed(check), f"{check} did not pass:\n{run.explain()}"
    agreement = [k for k in run.report["tests"] if "test_agrees_with_reference" in k]
    assert len(agreement) == 2
    if importlib.util.find_spec("firstspike.sim_device.backend") is None:
        assert all(run.report["tests"][k]["outcome"] == "skipped" for k in agreement)
    else:
        assert all(run.report["tests"][k]["outcome"] == "passed" for k in agreement), run.explain()
        assert len(run.report["measurements"]) == 2


def test_suite_against_example_as_its_own_reference_is_exact(example_on_path: Path, suite_in_process) -> None:
    # Through the programmatic API (firstspike.runtime.conformance.run), in this process.
    run = suite_in_process("example://?serial=1", "-k", "agrees", reference="example://", claims=("agreement=exact",))
    assert run.returncode == 0, run.explain()
    assert len(run.outcomes("passed")) == 2, run.explain()
    assert all(m["exact"] for m in run.report["measurements"].values())


@pytest.mark.parametrize("scheme", sorted(MUTANTS))
def test_suite_catches_broken_backend(example_on_path: Path, suite_in_process, scheme: str) -> None:
    import conformance_mutants  # type: ignore[import-not-found]  # on sys.path through example_on_path

    cls, check = MUTANTS[scheme]
    registry.register(scheme, getattr(conformance_mutants, cls).from_uri)
    test_name = check.split("::")[1].split("[")[0]
    run = suite_in_process(f"{scheme}://", "-k", test_name)
    assert run.returncode == 1, run.explain()
    failed = run.outcomes("failed")
    assert check in failed, f"{check} should fail for {scheme}; failed: {failed}"


def test_cli_conformance_command(example_site: Path, tmp_path: Path, env_with) -> None:
    report = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "firstspike.runtime.cli", "conformance", "example://", "--report", str(report)]
    cmd += ["-k", "info or limits", "--pytest-args=-q"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env_with(example_site), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "firstspike conformance" in proc.stdout
    outcomes = json.loads(report.read_text())["tests"]
    assert len(outcomes) >= 8 and all(k.startswith(("test_contract_info", "test_contract_limits")) for k in outcomes)


def test_cli_conformance_unknown_scheme_fails_before_pytest_starts(tmp_path: Path, capsys) -> None:
    from firstspike.runtime.cli import main

    assert main(["conformance", "nope://", "-k", "identity", "--report", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == err.strip().splitlines()[0] and "no backend for scheme 'nope'" in err
    assert not (tmp_path / "r.json").exists()  # pytest never ran
