"""``firstspike eval``: accuracy of a saved TTFS model on a dataset split."""

from __future__ import annotations

import argparse
import json
import pickle
import sys


def run(args: argparse.Namespace) -> int:
    import torch

    from firstspike.runtime.training.datasets import MNISTFormatError, load_dataset
    from firstspike.runtime.training.perf import configure_threads, tune_malloc
    from firstspike.runtime.training.trainer import evaluate, get_task
    from firstspike.runtime.ttfs.layers import TTFSNetwork

    tune_malloc()
    configure_threads(args.threads)
    try:
        net = TTFSNetwork.load(args.model)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        print(f"firstspike eval: cannot load model {args.model}: {exc}", file=sys.stderr)
        return 2
    task_name = args.dataset
    trained_on = net.metadata.get("task")
    if trained_on is not None and trained_on != task_name:
        print(f"firstspike eval: warning: model was trained on {trained_on!r}, evaluating on {task_name!r}",
              file=sys.stderr)
    try:
        data = load_dataset(
            task_name, args.split, size=args.size, seed=args.dataset_seed, mnist_dir=args.mnist_dir
        )
    except (ValueError, OSError, MNISTFormatError) as exc:
        print(f"firstspike eval: {exc}", file=sys.stderr)
        return 2
    if data.times.shape[1] != net.n_inputs:
        print(f"firstspike eval: model expects {net.n_inputs} inputs, dataset {task_name} has "
              f"{data.times.shape[1]}", file=sys.stderr)
        return 2
    with torch.no_grad():
        ev = evaluate(net, data, get_task(task_name))
    result = {"model": str(args.model), "dataset": task_name, "split": args.split, "size": ev["n"],
              "dataset_seed": args.dataset_seed, "accuracy": ev["accuracy"], "loss": ev["loss"],
              "silent_winner_fraction": ev["silent_winner_fraction"]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{task_name} {args.split} ({ev['n']} samples): accuracy {100 * ev['accuracy']:.2f}%")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="accuracy of a saved TTFS model",
        description="Evaluate a model saved by 'firstspike train' on a dataset split.",
    )
    parser.add_argument("model", help="path of model.pt")
    parser.add_argument("--dataset", required=True, choices=("yinyang", "mnist16"))
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--dataset-seed", type=int, default=None,
                        help="yin-yang generator seed (default: the published seed of the split)")
    parser.add_argument("--size", type=int, default=None,
                        help="number of samples (yin-yang: generated; mnist16: the first N)")
    parser.add_argument("--mnist-dir", default=None, help="directory with MNIST IDX files")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: up to 2)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)
