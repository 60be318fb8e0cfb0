"""The same in-the-loop run in-process and through a gRPC device server gives bit-identical results."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from itl_server import serve
from itl_support import compiled_small, yinyang_like_inputs

from firstspike import runtime
from firstspike.runtime.session import Session
from firstspike.runtime.training.tasks import train_task
from firstspike.runtime.ttfs.layers import TTFSNetwork

URI = "sim://?serial=5"


def _train(device, out: Path) -> dict:
    return train_task("yinyang", device=device, epochs=2, seed=4, out_dir=out, train_size=150, eval_size=60,
                      progress=False)


def test_grpc_run_and_training_are_bit_identical_to_in_process(tmp_path):
    compiled = compiled_small(seed=7)
    x = yinyang_like_inputs(40, seed=2)
    local = runtime.open(URI)
    ref = Session(local, compiled).run(x, seed=9, entry_offset=3)
    ref_metrics = _train(local, tmp_path / "local")
    local.close()
    with serve(URI) as uri:
        remote = runtime.open(uri)
        try:
            got = Session(remote, compiled).run(x, seed=9, entry_offset=3)
            assert got.events == ref.events
            assert got.stats == ref.stats
            for a, b in zip(got.layer_times, ref.layer_times, strict=True):
                np.testing.assert_array_equal(a, b)
            metrics = _train(remote, tmp_path / "remote")
        finally:
            remote.close()
    for key in ("test_accuracy", "val_accuracy", "test_loss", "weight_bumps"):
        assert metrics[key] == ref_metrics[key], key
    assert metrics["history"]["train_loss"] == ref_metrics["history"]["train_loss"]
    for k in ("spikes", "synaptic_events", "input_events", "lost_input_events", "dropped"):
        assert metrics["device"]["total"][k] == ref_metrics["device"]["total"][k], k
    a = TTFSNetwork.load(tmp_path / "local" / "model.pt")
    b = TTFSNetwork.load(tmp_path / "remote" / "model.pt")
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert torch.equal(la.weight, lb.weight)
