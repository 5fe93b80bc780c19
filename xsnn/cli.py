"""The ``xsnn`` command line: info, predict, explain, export, train.

Results go to stdout (or a file); progress and errors to stderr. Every bad input
ends with ``xsnn: error: <what is wrong>`` and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

import numpy as np

from xsnn.model import DEFAULT_MODEL

log = logging.getLogger("xsnn")

DEFAULT_BACKEND = "portfolio"  # the same as xsnn.explain.DEFAULT_BACKEND (checked by the tests)

EXIT_USAGE = 2


class CLIError(ValueError):
    """A problem with the command line's inputs, reported without a traceback."""


def _add_instance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL,
                        help=f"shipped model name or path to a .npz model file (default: {DEFAULT_MODEL})")
    parser.add_argument("--index", "-i", type=int, default=0,
                        help="index of the image: in the shipped 200-image test sample, or in the "
                             "MNIST split when --data-dir is given (default: 0)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the MNIST IDX files (default: the shipped sample; env XSNN_DATA)")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="MNIST split with --data-dir")


def _load_instance(args: argparse.Namespace):
    """Return (model, image uint8 (28, 28), true label) for the command's --model/--index/--data-dir."""
    from xsnn import data
    from xsnn.model import load_model

    model = load_model(args.model)
    if args.data_dir is None:
        images, labels = data.load_sample()
        source = "the shipped sample"
    else:
        images, labels = data.load_mnist(args.split, args.data_dir)
        source = f"MNIST {args.split} in {args.data_dir}"
    if not 0 <= args.index < len(images):
        raise CLIError(f"--index {args.index} is out of range: {source} has {len(images)} images (0..{len(images) - 1})")
    return model, images[args.index], int(labels[args.index])


def _cmd_info(args: argparse.Namespace) -> int:
    from xsnn.model import load_model, model_card, shipped_model_names

    model = load_model(args.model)
    weights = [*model.weights, model.readout]
    info = {
        "model": args.model,
        "architecture": model.describe(),
        "content_hash": model.content_hash(),
        "layer_sizes": list(model.layer_sizes),
        "zero_weight_fraction": [round(float((w == 0).mean()), 4) for w in weights],
        "mean_fan_in": [round(float((w != 0).sum(axis=1).mean()), 2) for w in weights],
        "threshold_range": [[int(t.min()), int(t.max())] for t in model.thresholds],
    }
    if args.model in shipped_model_names():
        info["card"] = model_card(args.model)
    print(json.dumps(info, indent=2))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import xsnn
    from xsnn.model import forward

    model, image, label = _load_instance(args)
    predicted = int(xsnn.predict(model, image[None])[0])
    scores = forward(model, model.encode(image[None])).scores[0]
    print(json.dumps({"index": args.index, "true_label": label, "predicted": predicted,
                      "scores": {str(c): int(s) for c, s in zip(model.labels, scores)}}))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from xsnn.explain import explain

    model, image, label = _load_instance(args)
    explanation = explain(model, image, algorithm=args.algorithm, order=args.order, backend=args.backend,
                          fast_paths=not args.no_fast_paths, time_limit=args.time_limit,
                          max_distance=args.distance, verify=args.verify)
    if args.json:
        print(json.dumps({"index": args.index, "true_label": label, **explanation.to_dict()}))
    else:
        print(f"image {args.index} (true label {label}) -> predicted {explanation.prediction_label}")
        print(explanation.summary())
        print(explanation.render())
    return 0  # the status (complete / timeout / undecided) is part of the printed result


def _cmd_export(args: argparse.Namespace) -> int:
    from xsnn.encoders.export import export_instance

    model, image, _ = _load_instance(args)
    spikes = model.encode(image[None])[0]
    from xsnn.model import forward

    target = int(forward(model, spikes).prediction[0])
    path = export_instance(model, spikes, target, args.format, args.fix, args.output, encoding=args.encoding)
    print(json.dumps({"written": str(path), "format": args.format, "fix": args.fix,
                      "predicted_class_index": target}))
    return 0


def _cmd_train(rest: Sequence[str]) -> int:
    try:
        from xsnn import train
    except ImportError as exc:
        raise CLIError(f"training needs torch: pip install 'xsnn[train]' ({exc})") from None
    parser = argparse.ArgumentParser(prog="xsnn train", description="Train a BSNN with surrogate gradients.")
    train.add_train_arguments(parser)
    return int(train.run_train(parser.parse_args(list(rest))))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xsnn", description="Formal explanations of binary spiking neural networks.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-v, -vv)")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="describe a model (architecture, hash, card)")
    info.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="shipped model name or .npz path")
    info.set_defaults(func=_cmd_info)

    predict = sub.add_parser("predict", help="predict the class of one image")
    _add_instance_arguments(predict)
    predict.set_defaults(func=_cmd_predict)

    explain = sub.add_parser("explain", help="compute a formal abductive explanation (AXp) of one prediction")
    _add_instance_arguments(explain)
    explain.add_argument("--algorithm", choices=("deletion", "quickxplain", "progression"), default="deletion")
    explain.add_argument("--order", default="index",
                         help="feature order: index, bright-first, dark-first (default: index)")
    explain.add_argument("--backend", default=DEFAULT_BACKEND,
                         help="exact oracle: portfolio (default: incremental per-rival SAT, then CP-SAT), "
                              "cpsat, sat, sat:<pysat solver>, sat-rivals, smt, smt:pb, milp")
    explain.add_argument("--no-fast-paths", action="store_true", help="ask the exact oracle only (slow baseline)")
    explain.add_argument("--time-limit", type=float, default=120.0,
                         help="seconds (default 120); a timed-out AXp is still sufficient, status 'timeout'")
    explain.add_argument("--distance", type=int, default=None,
                         help="distance-restricted AXp: valid for inputs differing in at most this many features")
    explain.add_argument("--verify", action="store_true", help="re-check the certificate with a second backend")
    explain.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    explain.set_defaults(func=_cmd_explain)

    export = sub.add_parser("export", help="write the entailment question as DIMACS or SMT-LIB2")
    _add_instance_arguments(export)
    export.add_argument("--format", choices=("dimacs", "smt2"), required=True)
    export.add_argument("--fix", choices=("all", "none"), default="all", help="features fixed to the instance")
    export.add_argument("--encoding", default=None, help="cardinality encoding for DIMACS")
    export.add_argument("--output", "-o", required=True, help="file to write")
    export.set_defaults(func=_cmd_export)

    __import__("xsnn.compare", fromlist=["add_compare_command"]).add_compare_command(sub)  # xsnn compare
    sub.add_parser("train", help="train a BSNN (needs torch); see 'xsnn train --help'", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # 'train' has its own parser (it lives with torch in xsnn.train): hand it the rest.
    verbosity = 0
    while argv and argv[0] in ("-v", "-vv", "--verbose"):
        verbosity += 2 if argv.pop(0) == "-vv" else 1
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)],
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if argv and argv[0] == "train":
            return _cmd_train(argv[1:])
        args = parser.parse_args(argv)
        return int(args.func(args))
    except KeyboardInterrupt:
        print("xsnn: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:  # every xsnn error class derives from these
        if verbosity >= 2:
            raise
        print(f"xsnn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
