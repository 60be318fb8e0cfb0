"""How close calibrated neurons come to their targets, on the simulator's ground truth (its mismatch tables).

    python scripts/calibration_ground_truth.py runs/calibrations/serial{0..9}.fscal [--codes leak,threshold,...]

For each calibration file: all 512 neurons configured with the nominal target codes (default: leak 300,
threshold 600, reset 300, every tau code 188, gains 64), the file's calibration applied, and the effective
parameters computed by the simulator's own model for that chip (``sim_device.model.build_model`` with the chip's
``Mismatch``): tau errors (%), threshold - leak, reset - leak and leak errors (LSB), and the model weight of one
step (gain x factor x the synapses' mean factor over all 256 rows / 64 / span) against the nominal one (%), and per
synapse (131 072 per chip) the excitatory weight per step through that synapse divided by the synapse factor the
calibration measured (1 without factors: what the compiler divides out) against the nominal one (%).
Prints one JSON line per file (largest |error| and std, calibrated and uncalibrated) and one over all files.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

PARAMS = ("tau_mem_pct", "tau_syn_exc_pct", "tau_syn_inh_pct", "span_lsb", "reset_lsb", "leak_lsb", "gain_exc_pct",
          "gain_inh_pct", "synapse_exc_pct")


def effective_errors(cal, serial: int, codes: dict[str, int]) -> dict[str, np.ndarray]:
    from firstspike.hal.config import ChipConfig
    from firstspike.sim_device.analog import Mismatch
    from firstspike.sim_device.model import build_model

    c = codes
    cfg = ChipConfig()
    cfg.neurons.set(slice(None), leak=c["leak"], threshold=c["threshold"], reset=c["reset"], tau_mem=c["tau"],
                    tau_syn_exc=c["tau"], tau_syn_inh=c["tau"], gain_exc=c["gain"], gain_inh=c["gain"], enabled=1)
    cfg = cal.apply_to_config(cfg)
    mm = Mismatch.for_serial(serial)
    m = build_model(cfg, mm)
    v = cfg.neurons.values
    n = np.arange(512)
    span = m.theta / 4096
    f_syn = (mm.synapse[n // 256, :, n % 256] / 65536).mean(axis=1)
    q_nominal = c["gain"] / 64 / (c["threshold"] - c["leak"])
    per_step = (v["gain_exc"] * mm.gain_e / 65536 / 64 / span / q_nominal).reshape(2, 1, 256)  # (half, 1, column)
    measured = 1.0 if cal.synapse is None else cal.synapse
    return {
        "tau_mem_pct": (m.tau_q[0] / 256 / (4 * c["tau"]) - 1) * 100,
        "tau_syn_exc_pct": (m.tau_q[1] / 256 / (4 * c["tau"]) - 1) * 100,
        "tau_syn_inh_pct": (m.tau_q[2] / 256 / (4 * c["tau"]) - 1) * 100,
        "span_lsb": span - (c["threshold"] - c["leak"]),
        "reset_lsb": m.reset / 4096 - (c["reset"] - c["leak"]),
        "leak_lsb": m.leak / 4096 - c["leak"],
        "gain_exc_pct": (v["gain_exc"] * mm.gain_e / 65536 * f_syn / 64 / span / q_nominal - 1) * 100,
        "gain_inh_pct": (v["gain_inh"] * mm.gain_i / 65536 * f_syn / 64 / span / q_nominal - 1) * 100,
        "synapse_exc_pct": ((per_step * (mm.synapse / 65536) / measured).ravel() - 1) * 100,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--codes", default="leak=300,threshold=600,reset=300,tau=188,gain=64",
                   help="nominal target codes (comma-separated name=value)")
    args = p.parse_args(argv)
    from firstspike.hal.neuron_calibration import NeuronCalibration
    from firstspike.runtime.calibration import CalibrationResult

    codes = {k: int(v) for k, v in (kv.split("=") for kv in args.codes.split(","))}
    every: dict[str, dict[str, list[np.ndarray]]] = {"calibrated": {k: [] for k in PARAMS},
                                                     "uncalibrated": {k: [] for k in PARAMS}}
    for f in args.files:
        r = CalibrationResult.load(f)
        row: dict[str, object] = {"file": f, "serial": r.serial}
        for label, cal in (("calibrated", r.calibration),
                           ("uncalibrated", NeuronCalibration.nominal(r.device_model, r.serial, r.spec_version))):
            e = effective_errors(cal, r.serial, codes)
            row[label] = {k: {"max_abs": round(float(np.abs(e[k]).max()), 4), "std": round(float(e[k].std()), 4)}
                          for k in PARAMS}
            for k in PARAMS:
                every[label][k].append(e[k])
        print(json.dumps(row), flush=True)
    total = {label: {k: {"max_abs": round(float(np.abs(np.concatenate(v)).max()), 4),
                         "std": round(float(np.concatenate(v).std()), 4)} for k, v in d.items()}
             for label, d in every.items()}
    print(json.dumps({"files": len(args.files), "neurons": 512 * len(args.files), "codes": codes, **total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
