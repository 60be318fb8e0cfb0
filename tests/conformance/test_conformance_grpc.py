"""The suite against grpc://: a `firstspike serve` subprocess on a free loopback port, around the ideal
simulator (events must equal the in-process reference) and around the example backend (docs/new-backend.md)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("firstspike.runtime.remote") is None
    or importlib.util.find_spec("firstspike.runtime.server") is None,
    reason="firstspike.runtime.remote / firstspike.runtime.server (grpc://) are not written yet",
)


def _grpc_uri(line: str) -> str:
    return f"grpc://127.0.0.1:{json.loads(line)['port']}"


def test_suite_over_grpc_on_ideal_sim(serve, suite_in_process) -> None:
    server = serve(["--backend", "sim://?ideal=1", "--host", "127.0.0.1", "--port", "0"])
    run = suite_in_process(_grpc_uri(server.line), claims=("agreement=exact",))
    assert run.returncode == 0, run.explain()
    assert run.passed("test_agrees_with_reference") and run.passed("test_reset_between_entries"), run.explain()
    assert run.report["profile"]["model"] == "firstspike-sim"


def test_suite_over_grpc_on_example(serve, suite_in_process, example_site: Path) -> None:
    # The walk-through's last step: serve the example backend, check it through the network.
    server = serve(["--backend", "example://", "--port", "0"], paths=(example_site,))
    run = suite_in_process(_grpc_uri(server.line))
    assert run.returncode == 0, run.explain()
    assert run.report["profile"]["model"] == "example-float-lif"
    assert run.passed("test_routing_row_sign") and run.passed("test_invalid_config_is_rejected"), run.explain()
