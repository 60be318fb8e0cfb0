"""A software-trained model on calibrated and uncalibrated chips: accuracy per serial, mean +- std.

    python scripts/calibration_results.py runs/yinyang-seed0/model.pt --serials 0-9 [--calibrations DIR]
    python scripts/calibration_results.py runs/mnist16-h246-e30/model.pt --serials 0 --dataset mnist16

For each serial: calibrate ``sim://?serial=S`` (or load ``DIR/serialS.fscal`` if present; new calibrations are saved
there), deploy the model (compiled once, then the chip's calibrated codes applied) on the test split with the
deployment noise seed, and deploy it uncalibrated; a calibration with per-synapse factors is also deployed without
them (``calibrated_neurons_only``: what the per-neuron calibration alone gives). Prints one JSON line per serial and
a summary line; with ``--ground-truth`` also the largest tau / span errors of the calibrated codes against the
simulator's mismatch tables (this script may read them; the calibration never does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def parse_serials(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part.strip():
            out.append(int(part))
    return out


def accuracy(device, compiled, data, seed: int) -> float:
    import torch

    from firstspike.runtime.session import Session
    from firstspike.runtime.ttfs.loss import predict

    session = Session(device, compiled)
    res = session.run(data.times.numpy(), seed=seed)
    pred = predict(torch.from_numpy(res.output_times))
    return float((pred == data.labels).float().mean())


def ground_truth(serial: int, compiled) -> dict[str, float]:
    """Largest errors of the calibrated stage codes of the network's neurons against the mismatch tables."""
    from firstspike.sim_device.analog import Mismatch
    from firstspike.sim_device.model import build_model

    mm = Mismatch.for_serial(serial)
    out: dict[str, float] = {}
    for stage in compiled.stages:
        m = build_model(stage.config, mm)
        n = m.active
        v = stage.config.neurons.values
        nominal = {L.index: L.codes for L in compiled.layers if L.stage == stage.index}
        errs = {"tau_mem_pct": [], "tau_syn_exc_pct": [], "span_lsb": []}
        for L in compiled.layers:
            if L.stage != stage.index:
                continue
            ids = L.neuron_ids
            c = nominal[L.index]
            errs["tau_mem_pct"].append(np.abs(m.tau_q[0, ids] / 256 / (4 * c.tau_mem) - 1) * 100)
            errs["tau_syn_exc_pct"].append(np.abs(m.tau_q[1, ids] / 256 / (4 * c.tau_syn) - 1) * 100)
            errs["span_lsb"].append(np.abs(m.theta[ids] / 4096 - (c.threshold - c.leak)))
        del n, v
        for k, lst in errs.items():
            out[k] = max(out.get(k, 0.0), float(np.concatenate(lst).max()))
    return out


def synapse_only_device(serial: int, noise: bool = True):
    """sim:// whose neurons are ideal but whose synapses carry chip ``serial``'s mismatch: what no per-neuron
    calibration can remove (reaches into the simulator's private state: a measurement aid, not an API)."""
    from dataclasses import replace

    from firstspike.sim_device.analog import Mismatch
    from firstspike.sim_device.backend import SimBackend

    dev = SimBackend(serial, mismatch=True, noise=noise)
    dev._mismatch = replace(Mismatch.ideal(), synapse=Mismatch.for_serial(serial).synapse)
    return dev


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--serials", default="0-9")
    p.add_argument("--dataset", default=None, choices=("yinyang", "mnist16"))
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=2, help="device noise seed of the deployment runs (deploy's default)")
    p.add_argument("--calibrations", default="runs/calibrations", help="directory of per-serial calibration files")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--ground-truth", action="store_true")
    p.add_argument("--references", action="store_true",
                   help="also: the ideal chip, noise only, and per serial a chip with only the synapses' mismatch")
    args = p.parse_args(argv)

    from firstspike.runtime import open as open_device
    from firstspike.runtime.calibration import DEFAULT_ROUNDS, calibrate, calibrated, load_calibration
    from firstspike.runtime.models import load_artifact
    from firstspike.runtime.training.datasets import load_dataset

    compiled, task = load_artifact(args.model)
    dataset = args.dataset or task
    data = load_dataset(dataset, args.split)
    caldir = Path(args.calibrations)
    caldir.mkdir(parents=True, exist_ok=True)
    rows = []
    for serial in parse_serials(args.serials):
        uri = f"sim://?serial={serial}"
        dev = open_device(uri)
        try:
            path = caldir / f"serial{serial}.fscal"
            t0 = time.perf_counter()
            if path.exists():
                result = load_calibration(path, dev.info())
                cal_s = None
            else:
                result = calibrate(dev, rounds=args.rounds or DEFAULT_ROUNDS)
                result.save(path)
                cal_s = time.perf_counter() - t0
            acc_raw = accuracy(dev, compiled, data, args.seed)
            chip_net = calibrated(compiled, result)
            acc_cal = accuracy(dev, chip_net, data, args.seed)
            acc_neurons = None
            if result.calibration.synapse is not None:
                acc_neurons = accuracy(dev, calibrated(compiled, result.calibration.without_synapses()), data,
                                       args.seed)
        finally:
            dev.close()
        row = {"serial": serial, "uncalibrated": acc_raw, "calibrated": acc_cal,
               "calibrated_neurons_only": acc_neurons, "calibration_s": cal_s,
               "calibration_sha256": result.calibration.sha256()[:16]}
        if args.ground_truth:
            row["ground_truth_max"] = ground_truth(serial, chip_net)
        if args.references:
            with synapse_only_device(serial) as dev:
                row["synapse_mismatch_only"] = accuracy(dev, compiled, data, args.seed)
        rows.append(row)
        print(json.dumps(row), flush=True)
    refs = {}
    if args.references:
        for name, uri in (("ideal", "sim://?ideal=1"), ("noise_only", "sim://?mismatch=0")):
            with open_device(uri) as dev:
                refs[name] = accuracy(dev, compiled, data, args.seed) * 100
        syn = np.array([r["synapse_mismatch_only"] for r in rows]) * 100
        refs["synapse_mismatch_only_mean"] = syn.mean()
        refs["synapse_mismatch_only_std"] = syn.std(ddof=1) if len(syn) > 1 else 0.0
    raw = np.array([r["uncalibrated"] for r in rows]) * 100
    cal = np.array([r["calibrated"] for r in rows]) * 100
    only = [r["calibrated_neurons_only"] for r in rows if r["calibrated_neurons_only"] is not None]
    if len(only) == len(rows):
        arr = np.array(only) * 100
        refs["calibrated_neurons_only_mean"] = arr.mean()
        refs["calibrated_neurons_only_std"] = arr.std(ddof=1) if len(arr) > 1 else 0.0
    print(json.dumps({"model": args.model, "dataset": dataset, "samples": len(data), "seed": args.seed,
                      "serials": [r["serial"] for r in rows],
                      "uncalibrated_mean": raw.mean(), "uncalibrated_std": raw.std(ddof=1) if len(raw) > 1 else 0.0,
                      "calibrated_mean": cal.mean(), "calibrated_std": cal.std(ddof=1) if len(cal) > 1 else 0.0,
                      **refs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
