"""Two moons with a two-hidden-layer TTFS network: your own data, trained in software, deployed to the simulated
chip, then trained with the chip in the loop.

    python examples/two_moons.py                 # ~1-2 minutes on 2 cores
    python examples/two_moons.py --quick         # a smoke run (the test suite runs this)

The data is generated here (two interleaved half circles with Gaussian noise), scaled to [0, 1] and encoded with
the reference's latency code, mirrored: each feature v becomes two input spikes, at early + v (late - early) and at
early + (1 - v)(late - early), as yin-yang's (x, y, 1-x, 1-y).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

import firstspike as fs


def two_moons(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points (features scaled to [0, 1]) and their labels (0 = upper moon, 1 = lower moon)."""
    rng = np.random.default_rng(seed)
    n0 = n // 2
    a = rng.uniform(0, math.pi, n0)
    b = rng.uniform(0, math.pi, n - n0)
    x = np.concatenate([np.stack([np.cos(a), np.sin(a)], 1), np.stack([1 - np.cos(b), 0.5 - np.sin(b)], 1)])
    x += rng.normal(0, noise, x.shape)
    y = np.concatenate([np.zeros(n0, dtype=np.int64), np.ones(n - n0, dtype=np.int64)])
    order = rng.permutation(n)
    low, high = np.array([-1.5, -1.0]), np.array([2.5, 1.5])
    return np.clip((x[order] - low) / (high - low), 0.0, 1.0), y[order]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40, help="software epochs (default 40)")
    p.add_argument("--device-epochs", type=int, default=10, help="epochs with the chip in the loop (default 10)")
    p.add_argument("--samples", type=int, default=1000, help="training samples (default 1000)")
    p.add_argument("--device", default="sim://", help="device URI (default sim://, the simulated chip)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = p.parse_args()
    if args.quick:
        args.epochs, args.device_epochs, args.samples = 3, 1, 300

    encode = fs.LatencyEncoder(mirror=True)  # 2 features -> 4 input spikes
    x_train, y_train = two_moons(args.samples, 0.1, seed=0)
    x_val, y_val = two_moons(300, 0.1, seed=1)
    x_test, y_test = two_moons(500, 0.1, seed=2)
    train, val, test = (encode(x_train), y_train), (encode(x_val), y_val), (encode(x_test), y_test)

    # 4 inputs -> 30 -> 20 -> 2, a bias spike at 0.9 tau_s into every layer
    model = fs.TTFSNetwork(4, [30, 20, 2], bias_times=[0.9, 0.9, 0.9], weight_means=[1.0, 0.5, 0.5],
                           weight_stds=[0.8, 0.8, 0.8], generator=torch.Generator().manual_seed(0))

    history = fs.fit(model, train, val, epochs=args.epochs, progress=False, log=lambda _: None)
    software = fs.evaluate(model, test)
    print(f"software: test accuracy {100 * software.accuracy:.1f}% (epoch {history.selected_epoch} of "
          f"{history.epochs_run}, {history.train_samples_per_s:.0f} training samples/s)")

    # the same network on the simulated chip (fixed-pattern mismatch and noise on)
    compiled = fs.compile(model)
    with fs.open_device(args.device) as device:
        deployed = fs.evaluate(compiled, test, device=device)
        result = fs.Session(device, compiled).run(test[0][:3])
        print(f"on {args.device}: test accuracy {100 * deployed.accuracy:.1f}%")
        print(f"  first spikes of sample 0 (tau_s): hidden-1 {np.isfinite(result.layer_times[0][0]).sum()} of 30 "
              f"fired, outputs {np.round(result.output_times[0], 3)}")

        # train on, with the chip in the loop: forward pass measured on the device, exact gradients at those times
        fs.fit(model, train, val, epochs=args.device_epochs, device=device, progress=False, log=lambda _: None)
        in_the_loop = fs.evaluate(model, test, device=device)
        print(f"after {args.device_epochs} epochs in the loop: test accuracy {100 * in_the_loop.accuracy:.1f}% "
              f"on {args.device}")


if __name__ == "__main__":
    main()
