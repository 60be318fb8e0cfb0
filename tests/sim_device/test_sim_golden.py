"""Golden vectors: the engine must keep producing the committed events (regenerate with scripts/gen_golden_sim.py
after a deliberate, versioned change of the device spec)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from firstspike.sim_device.spec import SAME_BITS_AS, SPEC_VERSION

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = sorted((ROOT / "tests" / "golden").glob("sim_*.npz"))


def _gen_module():
    spec = importlib.util.spec_from_file_location("gen_golden_sim", ROOT / "scripts" / "gen_golden_sim.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_golden_files_exist_and_are_small() -> None:
    assert len(GOLDEN) >= 4
    assert sum(p.stat().st_size for p in GOLDEN) < 200_000


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_engine_reproduces_golden_vectors(path: Path) -> None:
    dev, inputs, opts, exp = _gen_module().load_case(path)
    # a file of an earlier version whose bits this spec keeps (SAME_BITS_AS) must still be reproduced as it is
    assert str(exp["spec_version"]) in (SPEC_VERSION, *SAME_BITS_AS), "spec changed: regenerate the golden vectors"
    res = dev.run(inputs, opts)
    assert np.array_equal(res.spikes.events, exp["expected_events"]), f"{path.name}: events changed"
    stats = dict(zip(exp["expected_stats_keys"].tolist(), exp["expected_stats"].tolist(), strict=True))
    assert res.stats == stats
    if opts.readout:
        assert np.array_equal(res.membrane, exp["expected_membrane"])
