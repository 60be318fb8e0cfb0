"""The gRPC measuring scripts run and print what their docstrings promise (tiny sizes; no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _json_lines(*cmd: str) -> list[dict]:
    res = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def test_wire_codec_compares_both_layouts():
    rows = _json_lines("benchmarks/wire_codec.py", "--batch", "50", "--repeats", "3")
    assert [r["case"] for r in rows] == ["records", "columns"]
    records, columns = rows
    assert records["events"] == columns["events"] > 0
    # records: 10 bytes per spike; columns: 4 per entry plus 4 per spike (u16 times)
    assert records["message_bytes"] >= 10 * records["events"]
    assert columns["message_bytes"] < 0.5 * records["message_bytes"]
    assert columns["ratio_bytes_vs_records"] == round(columns["message_bytes"] / records["message_bytes"], 3)
    assert all(r["encode_p50_ms"] > 0 and r["decode_p50_ms"] > 0 for r in rows)


def test_grpc_call_order_runs_against_its_own_server():
    (row,) = _json_lines("scripts/grpc_call_order.py", "--pairs", "2")
    assert row["benchmark"] == "grpc_call_order" and row["pairs"] == 2
    assert row["server_device_p50_ms"] > 0 and row["stub_p50_ms"] > row["server_device_p50_ms"]


def test_itl_throughput_trains_both_ways_and_checks_they_agree():
    rows = _json_lines(
        "benchmarks/itl_throughput.py", "--epochs", "2", "--train-size", "300", "--eval-size", "100", "--rounds", "1"
    )
    assert [r["case"] for r in rows] == ["yinyang_inprocess", "yinyang_grpc"]
    assert all(r["warm_train_samples_per_s"] > 0 for r in rows)  # the second epoch's rate
    local, remote = rows
    assert local["train_samples_per_s"] > 0 and remote["train_samples_per_s"] > 0
    # the ratio comes from the unrounded medians; the printed rates are rounded to 0.1
    ratio = remote["train_samples_per_s"] / local["train_samples_per_s"]
    assert abs(remote["ratio_vs_inprocess"] - ratio) < 0.002
    assert remote["identical"] is True  # the same history and device spike counts through gRPC
    # one round: its pair is the ratio of the medians
    assert local["rounds_train_samples_per_s"] == [local["train_samples_per_s"]]
    assert remote["rounds_ratio_vs_inprocess"] == [remote["ratio_vs_inprocess"]]


def test_itl_throughput_measures_mnist16_in_the_loop():
    rows = _json_lines("benchmarks/itl_throughput.py", "--task", "mnist16", "--epochs", "1", "--train-size", "100",
                       "--eval-size", "50", "--rounds", "1")
    assert [r["case"] for r in rows] == ["mnist16_inprocess", "mnist16_grpc"]
    assert rows[1]["identical"] is True and all(r["train_samples_per_s"] > 0 for r in rows)
    assert all(r["warm_train_samples_per_s"] != r["warm_train_samples_per_s"] for r in rows)  # NaN: one epoch
