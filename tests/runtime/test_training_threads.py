"""The trainers' torch thread count holds after numba starts its threading layer (the embedded simulator starts
it on its first run; with numba's OpenMP layer that start used to reset torch's intra-op count to all cores)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, numba, torch
from firstspike.runtime.training.perf import configure_threads
n = configure_threads(2)  # two kernel threads, torch kept at one
w = torch.randn(121, 120, dtype=torch.float64)
(torch.randn(150, 121, dtype=torch.float64) @ w).exp().sum()  # torch's OpenMP pool is running now
numba.get_num_threads()  # what the simulator does on its first run
print(json.dumps({"configured": n, "torch": torch.get_num_threads(), "layer": numba.threading_layer()}))
"""


def test_one_torch_thread_stays_one_after_numba_starts_its_threads():
    # a fresh process: numba's threading layer starts once per process
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=300)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["configured"] == 2 and got["torch"] == 1, got
