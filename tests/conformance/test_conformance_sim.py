"""The suite against the in-process simulator: ideal (exact agreement with itself as reference) and the
default analog-like chip (mismatch + noise; deterministic per seed, agreement within the default tolerance)."""

from __future__ import annotations

SEMANTIC = (
    "test_reset_between_entries",
    "test_routing_row_sign",
    "test_time_shift_moves_spikes",
    "test_first_spike_is_earliest_of_all",
    "test_same_seed_same_events",
    "test_merged_column",
)


def test_suite_on_ideal_sim(suite_in_process) -> None:
    run = suite_in_process("sim://?ideal=1", claims=("agreement=exact",))
    assert run.returncode == 0, run.explain()
    assert run.report["profile"]["noise_free"] is True
    for check in (*SEMANTIC, "test_agrees_with_reference"):
        assert run.passed(check), (check, run.explain())
    assert all(m["exact"] for m in run.report["measurements"].values())


def test_suite_on_noisy_sim(suite_in_process) -> None:
    run = suite_in_process("sim://")
    assert run.returncode == 0, run.explain()
    prof = run.report["profile"]
    assert prof["noise_free"] is False and prof["deterministic"] is True
    for check in (*SEMANTIC, "test_split_batch_reproduces_whole_batch", "test_agrees_with_reference"):
        assert run.passed(check), (check, run.explain())
    agreement = run.report["measurements"]
    assert len(agreement) == 2 and not any(m["exact"] for m in agreement.values())  # the tolerance path ran
