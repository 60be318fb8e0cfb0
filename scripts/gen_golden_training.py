"""Small training runs whose every number (but wall times) is a golden record: tests/golden/training_runs.json.

    python scripts/gen_golden_training.py tests/golden/training_runs.json

The committed file was recorded with the two training loops that existed before the one loop
(``train_software`` and ``train_in_the_loop``, commit 51d912e); tests/runtime/test_training_golden.py checks
that ``train_task`` (and so ``fit``) reproduces it bit for bit. Regenerate only when a change of results is
intended, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

#: name -> train_task arguments (small sizes: the test replays all of them in a few seconds)
CASES: dict[str, dict[str, Any]] = {
    "yinyang_software": dict(task="yinyang", epochs=3, seed=0, train_size=600, eval_size=200),
    "yinyang_software_final": dict(task="yinyang", epochs=2, seed=5, train_size=300, eval_size=150, select="final"),
    "mnist16_software": dict(task="mnist16", epochs=2, seed=1, train_size=300, eval_size=100),
    "yinyang_sim": dict(task="yinyang", epochs=2, seed=1, train_size=450, eval_size=200, device="sim://"),
    "yinyang_sim_ema": dict(task="yinyang", epochs=2, seed=2, train_size=300, eval_size=150, device="sim://?serial=3",
                            ema=0.9),
    "mnist16_sim": dict(task="mnist16", epochs=1, seed=0, train_size=150, eval_size=100, device="sim://"),
}

#: history series the old loops recorded (the one loop adds silent_hidden_fraction in software)
SOFTWARE_SERIES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")


def record(metrics: dict[str, Any]) -> dict[str, Any]:
    """Everything of a run's metrics but wall times and versions."""
    out = {k: v for k, v in metrics.items() if not (k.endswith("_seconds") or k.endswith("_per_s")
                                                     or k in ("torch", "python", "device"))}
    out["history"] = {k: v for k, v in metrics["history"].items() if k != "epoch_seconds"}
    if "device" in metrics:
        dev = metrics["device"]
        out["device"] = {
            part: {k: dev[part][k] for k in ("runs", "samples", "spikes", "synaptic_events", "input_events",
                                             "lost_input_events", "dropped", "config_diffs",
                                             "changed_synapse_entries")}
            for part in ("training", "evaluation", "total")
        }
        out["device"]["test_run"] = dict(dev["test_run"])
        out["device"]["weight_steps"] = dev["weight_steps"]
    return out


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Train one case (one torch thread, no progress output) and return its metrics."""
    from firstspike.runtime.devices import open as open_device
    from firstspike.runtime.training.tasks import train_task

    case = dict(case)
    task = case.pop("task")
    uri = case.pop("device", None)
    device = open_device(uri) if uri is not None else None
    try:
        return train_task(task, device=device, device_uri=uri, progress=False, log=lambda _: None, threads=1, **case)
    finally:
        if device is not None:
            device.close()


def main() -> int:
    torch.set_num_threads(1)
    results = {name: {"case": {"device": None, **case}, "result": record(run_case(case))}
               for name, case in CASES.items()}
    Path(sys.argv[1]).write_text(json.dumps(results, indent=1, allow_nan=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
