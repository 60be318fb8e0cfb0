"""A timing task on raw spike times: which of two input spikes comes first, and by how much?

    python examples/spike_timing.py              # ~1 minute on 2 cores
    python examples/spike_timing.py --quick      # a smoke run (the test suite runs this)

No encoder: the data ARE spike times. Each sample is two input spikes, A and B, at random times in [0.15, 2] tau_s;
the class says whether A leads B by more than 0.25 tau_s (0), the two arrive within 0.25 tau_s of each other (1),
or B leads A by more than that (2). A TTFS network must answer with its first output spike, from the relative
timing alone. Trained in software, then with the simulated chip in the loop; the data are saved so that
``firstspike deploy MODEL --data FILE.npz`` can run them too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import firstspike as fs

WINDOW = 0.25  # tau_s: "at the same time"


def timing_data(n: int, seed: int) -> fs.SpikeDataset:
    """``n`` samples of two spike times (tau_s) and their class (0: A first, 1: together, 2: B first)."""
    rng = np.random.default_rng(seed)
    times = rng.uniform(0.15, 2.0, size=(n, 2))
    lead = times[:, 1] - times[:, 0]  # > 0: A first
    labels = np.where(lead > WINDOW, 0, np.where(lead < -WINDOW, 2, 1))
    return fs.SpikeDataset(torch.from_numpy(times), torch.from_numpy(labels), "timing")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60, help="software epochs (default 60)")
    p.add_argument("--device-epochs", type=int, default=10, help="epochs with the chip in the loop (default 10)")
    p.add_argument("--device", default="sim://", help="device URI (default sim://)")
    p.add_argument("--out", default="runs/timing", help="where the model and the test data go")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = p.parse_args()
    n_train = 300 if args.quick else 3000
    if args.quick:
        args.epochs, args.device_epochs = 3, 1
    train, val, test = timing_data(n_train, 0), timing_data(500, 1), timing_data(1000, 2)

    # 2 inputs -> 40 hidden -> 3 outputs; a bias spike at 0.5 tau_s gives every neuron a reference time
    model = fs.TTFSNetwork(2, [40, 3], bias_times=[0.5, 0.5], weight_means=[1.0, 0.5], weight_stds=[1.0, 1.0],
                           generator=torch.Generator().manual_seed(1))
    history = fs.fit(model, train, val, epochs=args.epochs, batch_size=100, lr=0.005, progress=False,
                     log=lambda _: None)
    print(f"software: test accuracy {100 * fs.evaluate(model, test).accuracy:.1f}% "
          f"(chance 33%; epoch {history.selected_epoch})")

    with fs.open_device(args.device) as device:
        print(f"deployed to {args.device}: {100 * fs.evaluate(model, test, device=device).accuracy:.1f}%")
        fs.fit(model, train, val, epochs=args.device_epochs, device=device, batch_size=100, progress=False,
               log=lambda _: None)
        print(f"after {args.device_epochs} epochs in the loop: "
              f"{100 * fs.evaluate(model, test, device=device).accuracy:.1f}% on {args.device}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.pt")
    test.save(out / "test.npz")
    print(f"wrote {out / 'model.pt'} and {out / 'test.npz'}: "
          f"firstspike deploy {out / 'model.pt'} --data {out / 'test.npz'} --device {args.device}")


if __name__ == "__main__":
    main()
