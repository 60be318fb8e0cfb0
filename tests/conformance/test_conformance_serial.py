"""The suite against serial:// over a pseudo-terminal: `firstspike serve --serial-pty` runs the device side of
the link around the ideal simulator; the driver opens the announced pty like a USB-UART."""

from __future__ import annotations

import sys

import pytest

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminals as used here need Linux"),
]


def test_suite_over_serial_pty_on_ideal_sim(serve, suite_in_process) -> None:
    server = serve(["--serial-pty", "--backend", "sim://?ideal=1"])
    uri = server.line
    assert uri.startswith("serial:///dev/"), uri
    run = suite_in_process(uri, claims=("agreement=exact",))
    assert run.returncode == 0, run.explain()
    for check in (
        "test_agrees_with_reference",
        "test_reset_between_entries",
        "test_invalid_config_is_rejected",
        "test_oversize_batch_is_rejected",
    ):
        assert run.passed(check), (check, run.explain())
