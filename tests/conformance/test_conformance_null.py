"""The suite against null:// (the mock): plumbing checks pass, semantic ones skip as "mock backend"."""

from __future__ import annotations


def test_suite_on_null_mock(suite_in_process) -> None:
    run = suite_in_process("null://")
    assert run.returncode == 0, run.explain()
    assert run.report["profile"]["mock"] is True
    skipped = {k: v["reason"] for k, v in run.report["tests"].items() if v["outcome"] == "skipped"}
    for check in ("test_routing_row_sign", "test_reset_between_entries", "test_agrees_with_reference"):
        reasons = [r for k, r in skipped.items() if check in k]
        assert reasons and all("mock backend" in r for r in reasons), (check, skipped)
    for check in (
        "test_resource_model_matches_hal",
        "test_invalid_config_is_rejected",
        "test_oversize_batch",
        "test_diff_for_another_base_is_rejected",
        "test_result_shape_and_ordering",
    ):
        assert run.passed(check), (check, run.explain())


def test_suite_without_device_skips_with_a_message(tmp_path, monkeypatch) -> None:
    import json

    import pytest

    monkeypatch.delenv("FIRSTSPIKE_DEVICE", raising=False)
    report = tmp_path / "r.json"
    code = pytest.main(
        ["--pyargs", "firstspike.runtime.conformance", "-q", "-p", "no:cacheprovider",
         "--conformance-report", str(report)]
    )
    assert code == 0
    tests = json.loads(report.read_text())["tests"]
    assert tests and all(v["outcome"] == "skipped" and "pass --device URI" in v["reason"] for v in tests.values())
