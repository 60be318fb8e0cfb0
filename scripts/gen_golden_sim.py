"""Regenerate the simulator's golden vectors in tests/golden/ (run after a deliberate change of the spec).

Each case is a small configuration, inputs, run options and device flags, plus the events, stats and membrane
samples the *reference* implementation (the executable spec) produces; the script checks that the fast engine
agrees before writing. ``tests/sim_device/test_sim_golden.py`` fails when the engine's output changes.

A file whose content is unchanged but for the spec version, written under a version whose bits this spec keeps
(``spec.SAME_BITS_AS``), is left as it is: spec 1.2 added the delay lines, and the 1.1 files (no delays) pass as
they are.

    python scripts/gen_golden_sim.py [--check]     # --check: compare with the committed files, write nothing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from firstspike.hal.backend import RunOptions
from firstspike.hal.config import ChipConfig
from firstspike.hal.events import InputSpikes
from firstspike.sim_device.backend import SimBackend
from firstspike.sim_device.examples import Scale, map_layered, random_config, random_inputs, yinyang_inputs
from firstspike.sim_device.spec import SAME_BITS_AS, SPEC_VERSION

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "golden"


def _cases() -> list[dict]:
    out = []
    # 1. a small yin-yang-like network on the ideal chip, first spikes
    rng = np.random.default_rng(11)
    ws = [rng.normal(1.5, 0.8, (5, 16)), rng.normal(0.5, 0.8, (17, 3))]
    net = map_layered(ws, Scale(), bias_per_layer=[1, 1])
    t = yinyang_inputs(rng, 6)
    times = np.concatenate([t, t[:, 4:5]], axis=1) * 752
    ch = np.r_[net.input_channels, net.bias_channels[0], net.bias_channels[1]]
    out.append(dict(name="yinyang_ideal", config=net.config, inputs=InputSpikes.from_times(times, ch),
                    options=RunOptions(duration_ticks=4500, record="first", seed=0), serial=0, mismatch=False,
                    noise=False))
    # 2. the same network on a realistic chip (mismatch + noise), all spikes, readout of two neurons
    out.append(dict(name="yinyang_realistic", config=net.config, inputs=InputSpikes.from_times(times, ch),
                    options=RunOptions(duration_ticks=4500, record="all", seed=5, readout=(0, 256),
                                       readout_period=50, entry_offset=3),
                    serial=7, mismatch=True, noise=True))
    # 3. a random recurrent configuration with merged columns and refractory periods
    rng = np.random.default_rng(49)
    cfg = random_config(rng, n_neurons=10, recurrent=True)
    out.append(dict(name="random_recurrent", config=cfg, inputs=random_inputs(rng, 4, 4, 2000, per_entry=8),
                    options=RunOptions(duration_ticks=2000, record="all", seed=9), serial=3, mismatch=True,
                    noise=False))
    # 4. merged columns with tau_m = 2 tau_s (256 -> 4 with 20 active inputs)
    rng = np.random.default_rng(31)
    net = map_layered([rng.normal(0.15, 0.4, (200, 4))], Scale())
    for c in net.neurons[0]:
        net.config.neurons.values["tau_mem"][[c, c + 256]] = 2 * 188
    tt = np.where(rng.random((3, 200)) < 0.3, (0.1 + rng.random((3, 200)) * 2) * 752, np.nan)
    out.append(dict(name="merged_taum2", config=net.config, inputs=InputSpikes.from_times(tt, net.input_channels),
                    options=RunOptions(duration_ticks=5000, record="first", seed=2), serial=1, mismatch=True,
                    noise=True))
    # 5. a layered network with many zero weights, some of them unwired (label mismatch), realistic chip: the
    #    lockstep levels, and spec 1.1's rule that a wired zero-weight synapse still anchors its neuron
    rng = np.random.default_rng(23)
    ws = [rng.normal(0.25, 0.5, (60, 24)), rng.normal(0.4, 0.8, (24, 8))]
    for w in ws:
        w[rng.random(w.shape) < 0.4] = 0.0
    net = map_layered(ws, Scale())
    labels = net.config.synapses.labels
    labels[rng.random(labels.shape) < 0.15] = 0  # the layers use addresses 1 and 2: unwired
    tt = np.where(rng.random((4, 60)) < 0.8, (0.15 + rng.random((4, 60)) * 1.85) * 752, np.nan)
    out.append(dict(name="sparse_layered", config=net.config, inputs=InputSpikes.from_times(tt, net.input_channels),
                    options=RunOptions(duration_ticks=4000, record="all", seed=4), serial=2, mismatch=True,
                    noise=True))
    # 6. spec 1.2's delay lines, axonal (one code per source on both of its routes): inputs and hidden spikes
    #    delayed by codes on and off the update grid, some arrivals past the end of the run, a bias per layer;
    #    ideal chip, first spikes
    rng = np.random.default_rng(61)
    ws = [rng.normal(0.4, 0.6, (13, 16)), rng.normal(0.5, 0.8, (17, 4))]
    codes = [rng.choice([0, 1, 5, 8, 16, 40, 120, 511], size=13), rng.choice([0, 3, 8, 30, 64, 200], size=17)]
    net = map_layered(ws, Scale(), bias_per_layer=[1, 1], delays=codes)
    tt = np.where(rng.random((5, 12)) < 0.8, (0.15 + rng.random((5, 12)) * 1.85) * 752, np.nan)
    times = np.concatenate([tt, np.full((5, 2), 0.9 * 752)], axis=1)
    ch = np.r_[net.input_channels, net.bias_channels[0], net.bias_channels[1]]
    out.append(dict(name="delays_layered_ideal", config=net.config, inputs=InputSpikes.from_times(times, ch),
                    options=RunOptions(duration_ticks=5000, record="first", seed=0), serial=0, mismatch=False,
                    noise=False))
    # 7. delay lines on a random recurrent configuration (a source's routes with different delays), realistic chip
    #    with input noise, all spikes, readout (seed 81: recurrent activity through delayed neuron routes)
    rng = np.random.default_rng(81)
    cfg = random_config(rng, n_neurons=10, recurrent=True, delays=True)
    out.append(dict(name="delays_recurrent_realistic", config=cfg,
                    inputs=random_inputs(rng, 4, 4, 2000, per_entry=8),
                    options=RunOptions(duration_ticks=2000, record="all", seed=7, readout=(int(np.flatnonzero(
                        cfg.neurons.values["enabled"])[0]),), readout_period=25), serial=5, mismatch=True,
                    noise=True))
    return out


def _run(case: dict, engine: str):
    dev = SimBackend(case["serial"], mismatch=case["mismatch"], noise=case["noise"], engine=engine)
    dev.configure(case["config"])
    return dev.run(case["inputs"], case["options"])


def _arrays(case: dict) -> dict[str, np.ndarray]:
    ref = _run(case, "reference")
    fast = _run(case, "fast")
    if not (ref.spikes == fast.spikes and ref.stats == fast.stats and ref.dropped == fast.dropped):
        raise SystemExit(f"{case['name']}: fast engine disagrees with the reference; not writing golden vectors")
    o = case["options"]
    stats = sorted(ref.stats.items())
    return {
        "spec_version": np.array(SPEC_VERSION),
        "config": np.frombuffer(case["config"].to_bytes(), dtype=np.uint8),
        "inputs": case["inputs"].events,
        "batch_size": np.array(case["inputs"].batch_size),
        "device": np.array([case["serial"], case["mismatch"], case["noise"]], dtype=np.int64),
        "options": np.array([o.duration_ticks, o.record == "all", o.seed, o.readout_period, o.entry_offset],
                            dtype=np.int64),
        "readout": np.array(o.readout, dtype=np.int64),
        "expected_events": ref.spikes.events,
        "expected_stats_keys": np.array([k for k, _ in stats]),
        "expected_stats": np.array([v for _, v in stats], dtype=np.int64),
        "expected_membrane": ref.membrane if ref.membrane is not None else np.zeros((0, 0, 0), dtype=np.int32),
    }


def load_case(path: Path) -> tuple[SimBackend, InputSpikes, RunOptions, dict]:
    """Device, inputs, options and expectations of one golden file (used by the test)."""
    z = np.load(path, allow_pickle=False)
    serial, mismatch, noise = (int(x) for x in z["device"])
    dev = SimBackend(serial, mismatch=bool(mismatch), noise=bool(noise))
    dev.configure(ChipConfig.from_bytes(z["config"].tobytes()))
    dur, rec_all, seed, period, offset = (int(x) for x in z["options"])
    opts = RunOptions(duration_ticks=dur, record="all" if rec_all else "first", seed=seed,
                      readout=tuple(int(x) for x in z["readout"]), readout_period=period, entry_offset=offset)
    exp = {k: z[k] for k in z.files if k.startswith("expected") or k == "spec_version"}
    return dev, InputSpikes(z["inputs"], int(z["batch_size"])), opts, exp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args(argv)
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    status = 0
    for case in _cases():
        path = GOLDEN_DIR / f"sim_{case['name']}.npz"
        arrays = _arrays(case)
        same = False
        if path.exists():
            old = np.load(path, allow_pickle=False)
            kept = str(old["spec_version"]) in (SPEC_VERSION, *SAME_BITS_AS)
            same = kept and set(old.files) == set(arrays) and all(
                np.array_equal(old[k], v) for k, v in arrays.items() if k != "spec_version")
        if args.check:
            print(f"{path.name}: {'unchanged' if same else 'CHANGED'}")
            status |= 0 if same else 1
        elif same:
            print(f"{path.name}: unchanged (spec {old['spec_version']!s}), left as it is")
        else:
            np.savez_compressed(path, **arrays)
            print(f"wrote {path} ({path.stat().st_size} bytes, {len(arrays['expected_events'])} events)")
    return status


if __name__ == "__main__":
    sys.exit(main())
