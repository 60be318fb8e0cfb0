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


SIM_SCRIPT = """
import json, numpy as np, torch
import firstspike as fs
from numba.np.ufunc import parallel
torch.set_num_threads(1)
net = fs.TTFSNetwork(4, [20, 2], seed=0)
with fs.open_device("sim://") as chip:
    fs.Session(chip, fs.compile(net)).run(np.random.default_rng(0).uniform(0.1, 2.0, (100, 4)))  # several chunks
print(json.dumps({"torch": torch.get_num_threads(), "numba_layer_started": bool(parallel._is_initialized)}))
"""


def test_the_simulator_leaves_torchs_threads_alone():
    """A user's one torch thread stays one after the embedded simulator ran a batch on its threads (it reads numba's
    thread count without starting numba's threading layer)."""
    out = subprocess.run([sys.executable, "-c", SIM_SCRIPT], capture_output=True, text=True, check=True, timeout=300)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"torch": 1, "numba_layer_started": False}, got
