"""The ``xsnn`` command line.

Results go to stdout (text, or ``--json``: one JSON object per result in the schema of
:meth:`xsnn.explanation.Explanation.to_dict`); progress (when stderr is a terminal) and errors
go to stderr. A bad input ends with one line ``xsnn: error: <what was typed and what was
expected>`` and exit status 2, never a traceback. Ctrl-C stops a run within about a second,
prints what it found (status ``interrupted``) and exits with status 130.

Environment: ``XSNN_DATA`` is the folder of the full MNIST IDX files, read by every command that
takes ``--index`` (unless ``--data-dir`` is given); without either, images come from the
200-image test sample shipped with xsnn.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xsnn.api import ORDERS
from xsnn.batch import add_batch_commands
from xsnn.compare import add_compare_command
from xsnn.model import DEFAULT_MODEL
from xsnn.solvers.backends import DEFAULT_BACKEND

log = logging.getLogger("xsnn")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(ValueError):
    """A problem with the command line's inputs, reported without a traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``xsnn: error: ...``, exit 2) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"xsnn: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


# ---------------------------------------------------------------------------- argument types


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _whole(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


non_negative = _whole(0, "a whole number >= 0")
positive = _whole(1, "a whole number >= 1")


def backend_name(text: str) -> str:
    from xsnn.solvers.backends import exact_oracle_factory

    try:
        exact_oracle_factory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def feature_spec(text: str) -> str:
    if text == "pixels" or (
        text.startswith("patches:") and text.partition(":")[2].isdigit() and int(text.partition(":")[2]) >= 1
    ):
        return text
    raise argparse.ArgumentTypeError(f"expected 'pixels' or 'patches:K' (K x K patches, e.g. patches:2), got {text!r}")


# ---------------------------------------------------------------------------- instances


def _add_instance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        help=f"shipped model name or path to a .npz model file (default: {DEFAULT_MODEL})",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--index",
        "-i",
        type=non_negative,
        default=None,
        help="index of an MNIST image (default 0): in the split of --data-dir / $XSNN_DATA if set, "
        "else in the 200-image test sample shipped with xsnn",
    )
    which.add_argument(
        "--image",
        default=None,
        metavar="FILE",
        help="explain this image instead: a PNG (or other picture) or .npy file of one "
        "28x28 digit, white on black, intensities 0..255",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the full MNIST IDX files (default: $XSNN_DATA, else the shipped sample)",
    )
    parser.add_argument(
        "--split",
        choices=("test", "train"),
        default="test",
        help="MNIST split for --index (train needs --data-dir or $XSNN_DATA)",
    )
    parser.add_argument("--binarized", action="store_true", help="the image holds 0/1 values: read 1 as intensity 255")


def _load_instance(args: argparse.Namespace) -> tuple[Any, np.ndarray, dict]:
    """(model, image, source dict) for the command's --model / --index / --image / --data-dir."""
    from xsnn import data
    from xsnn.model import load_model

    model = load_model(args.model)
    if args.image is not None:
        if args.split != "test" or args.data_dir is not None:
            raise CLIError("--image FILE takes its image from the file: leave out --split and --data-dir")
        image = data.load_image_file(args.image)
        return model, image, {"data": "file", "file": os.path.basename(args.image)}
    index = 0 if args.index is None else args.index
    folder = args.data_dir or os.environ.get(data.DATA_ENV) or None
    if folder is None:
        if args.split != "test":
            raise CLIError(
                f"--split {args.split}: the shipped sample holds test images only; give --data-dir "
                f"or set {data.DATA_ENV} to a folder with the full MNIST"
            )
        images, labels = data.load_sample()
        source, name = "sample", "the shipped sample"
    else:
        images, labels = data.load_mnist(args.split, folder)
        source, name = f"mnist-{args.split}", f"MNIST {args.split} ({folder})"
    if index >= len(images):
        raise CLIError(f"--index {index} is out of range: {name} has {len(images)} images (0..{len(images) - 1})")
    return model, images[index], {"data": source, "index": index, "label": int(labels[index])}


def _check_image_for(model, image: np.ndarray, args: argparse.Namespace) -> None:
    """The API's image checks, with the message naming the flag the image came from."""
    from xsnn.api import check_image

    what = f"--image {args.image}" if args.image is not None else "the image"
    check_image(model, image, binarized=args.binarized, name=what)


def _source_words(source: dict) -> str:
    if source["data"] == "file":
        return f"image {source['file']}"
    where = "the shipped sample" if source["data"] == "sample" else source["data"].replace("-", " ")
    return f"image {source['index']} of {where} (label {source['label']})"


def _progress_printer() -> Callable[[dict], None] | None:
    """Progress on stderr when it is a terminal (one line rewritten in place), else nothing."""
    if not sys.stderr.isatty():
        return None

    def show(p: dict) -> None:
        parts = [f"{p.get('questions', 0)} questions"]
        if "in_set" in p:
            parts.append(f"{p['in_set']} of {p['features']} features left, {p['necessary']} proven necessary")
        parts.append(f"{p.get('seconds', 0.0):.1f} s")
        print("\r  " + ", ".join(parts) + " " * 8, end="", file=sys.stderr, flush=True)

    return show


def _end_progress(printer) -> None:
    if printer is not None:
        print("\r" + " " * 100 + "\r", end="", file=sys.stderr, flush=True)


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def _print_result(e, source: dict, args: argparse.Namespace) -> bool:
    """Save (``--save``) and print an explanation: JSON (``--json``), or the source and summary in
    words; True when the text form was printed (the caller adds its picture)."""
    if args.save:
        e.save(args.save)
    if args.json:
        _emit(e.to_dict(proof=False))
        return False
    print(_source_words(source))
    print(e.summary(verbose=args.verbose > 0))
    return True


def _exit_status(status: str) -> int:
    return EXIT_INTERRUPTED if status == "interrupted" else 0


# ---------------------------------------------------------------------------- commands


def _cmd_info(args: argparse.Namespace) -> int:
    from xsnn.model import load_model, model_card, shipped_model_names

    model = load_model(args.model)
    weights = [*model.weights, model.readout]
    info = {
        "schema": "xsnn.model/1",
        "model": args.model,
        "architecture": model.describe(),
        "model_hash": model.content_hash(),
        "layer_sizes": list(model.layer_sizes),
        "labels": list(model.labels),
        "zero_weight_fraction": [round(float((w == 0).mean()), 4) for w in weights],
        "mean_fan_in": [round(float((w != 0).sum(axis=1).mean()), 2) for w in weights],
        "threshold_range": [[int(t.min()), int(t.max())] for t in model.thresholds],
    }
    if args.model in shipped_model_names():
        info["card"] = model_card(args.model)
    print(json.dumps(info, indent=2))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from xsnn.api import check_image
    from xsnn.model import forward

    model, image, source = _load_instance(args)
    _, spikes = check_image(
        model, image, binarized=args.binarized, name=f"--image {args.image}" if args.image is not None else "the image"
    )
    result = forward(model, spikes[None])
    prediction = model.labels[int(result.prediction[0])]
    scores = {str(c): int(s) for c, s in zip(model.labels, result.scores[0])}
    if args.json:
        _emit(
            {
                "schema": "xsnn.prediction/1",
                "prediction": prediction,
                "scores": scores,
                "settings": {
                    "model": model.info.get("name", args.model),
                    "model_hash": model.content_hash(),
                    "data": source,
                },
            }
        )
    else:
        print(f"{_source_words(source)} -> prediction {prediction}")
        print("scores: " + ", ".join(f"{c}: {s}" for c, s in scores.items()))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from xsnn.api import explain

    model, image, source = _load_instance(args)
    _check_image_for(model, image, args)
    printer = _progress_printer()
    try:
        e = explain(
            model,
            image,
            args.kind,
            max_distance=args.distance,
            target=args.target,
            order=args.order,
            algorithm=args.algorithm,
            backend=args.backend,
            features=args.features,
            time_limit=args.time_limit,
            verify=args.verify,
            verify_time_limit=args.verify_time_limit,
            binarized=args.binarized,
            fast_paths=not args.no_fast_paths,
            source=source,
            progress=printer,
        )
    finally:
        _end_progress(printer)
    if _print_result(e, source, args):
        if e.status != "error":
            print(e.render())
        if e.status in ("timeout", "interrupted") and e.kind == "axp" and args.distance is None:
            print(
                "Hint: a global explanation of this network may take long; --distance 2 (valid for every image "
                "within 2 changed pixels) or --features patches:4 often finish fast."
            )
    return _exit_status(e.status)


def _cmd_enumerate(args: argparse.Namespace) -> int:
    from xsnn.api import enumerate as enumerate_explanations

    model, image, source = _load_instance(args)
    _check_image_for(model, image, args)
    run = enumerate_explanations(
        model,
        image,
        args.kind,
        limit=args.limit,
        time_limit=args.time_limit,
        max_distance=args.distance,
        target=args.target,
        backend=args.backend,
        features=args.features,
        binarized=args.binarized,
        source=source,
    )
    if not args.json:
        print(_source_words(source))
    for number, e in enumerate(run, start=1):
        if args.json:
            _emit(e.to_dict(proof=False))
        else:
            state = "proven minimal" if e.minimal else f"not proven minimal ({e.status})"
            print(f"{e.kind.upper()} {number}: {e.size} features, {state}: {_feature_list(e)}")
    if args.json:
        _emit({"schema": "xsnn.enumeration/1", "kind": args.kind, "found": run.found, "status": run.status})
    else:
        ending = {
            "complete": "all found",
            "limit": f"stopped at --limit {args.limit}",
            "timeout": "time limit reached",
            "interrupted": "interrupted",
            "undecided": "some questions undecided",
            "error": "none exists",
        }.get(run.status, run.status)
        print(f"{run.found} {args.kind.upper()}(s); {ending}")
    return _exit_status(run.status)


def _feature_list(e, limit: int = 12) -> str:
    names = [e.feature_names[k] for k in e.features]
    return " ".join(names[:limit]) + (f" ... (+{len(names) - limit})" if len(names) > limit else "")


def _cmd_attribution(args: argparse.Namespace) -> int:
    from xsnn.api import attribution

    model, image, source = _load_instance(args)
    _check_image_for(model, image, args)
    printer = _progress_printer()
    try:
        e = attribution(
            model,
            image,
            time_limit=args.time_limit,
            limit=args.limit,
            max_distance=args.distance,
            target=args.target,
            backend=args.backend,
            features=args.features,
            binarized=args.binarized,
            source=source,
            progress=printer,
        )
    finally:
        _end_progress(printer)
    if _print_result(e, source, args):
        if e.values is not None and e.size:
            top = np.argsort(-e.values, kind="stable")[: min(10, e.size)]
            print("Highest shares: " + ", ".join(f"{e.feature_names[k]} {e.values[k]:.2f}" for k in top))
            print(e.render())
    return _exit_status(e.status)


def _cmd_export(args: argparse.Namespace) -> int:
    from xsnn.api import check_image
    from xsnn.encoders.export import export_instance
    from xsnn.model import forward

    model, image, source = _load_instance(args)
    _, spikes = check_image(
        model, image, binarized=args.binarized, name=f"--image {args.image}" if args.image is not None else "the image"
    )
    target = int(forward(model, spikes).prediction[0])
    path = export_instance(model, spikes, target, args.format, args.fix, args.output, encoding=args.encoding)
    _emit(
        {
            "schema": "xsnn.export/1",
            "written": str(path),
            "format": args.format,
            "fix": args.fix,
            "prediction": model.labels[target],
            "settings": {
                "model": model.info.get("name", args.model),
                "model_hash": model.content_hash(),
                "data": source,
            },
        }
    )
    return 0


def _cmd_train(rest: Sequence[str]) -> int:
    try:
        from xsnn import train
    except ImportError as exc:
        raise CLIError(f"training needs torch: pip install 'xsnn[train]' ({exc})") from None
    parser = _Parser(prog="xsnn train", description="Train a BSNN with surrogate gradients.")
    train.add_train_arguments(parser)
    return int(train.run_train(parser.parse_args(list(rest))))


# ---------------------------------------------------------------------------- parser


def _add_question_arguments(parser: argparse.ArgumentParser, *, default_time: float) -> None:
    parser.add_argument(
        "--distance",
        type=non_negative,
        default=None,
        metavar="K",
        help="distance-restricted: consider only inputs that differ from the image in at most K features (pixels)",
    )
    parser.add_argument(
        "--target",
        type=int,
        default=None,
        metavar="C",
        help="contrastive question: why the prediction and not class C?",
    )
    parser.add_argument(
        "--features",
        type=feature_spec,
        default="pixels",
        help="the features: pixels (default) or patches:K (K x K patches: coarser, faster)",
    )
    parser.add_argument(
        "--backend",
        type=backend_name,
        default=DEFAULT_BACKEND,
        help=f"exact solver (default {DEFAULT_BACKEND}: incremental per-rival SAT, then CP-SAT); "
        "also sat-rivals, cpsat, sat, sat:<python-sat solver>, smt, smt:pb, milp",
    )
    parser.add_argument(
        "--time-limit",
        type=positive_seconds,
        default=default_time,
        metavar="SECONDS",
        help=f"stop after this many seconds and print what was found (default {default_time:g})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def build_parser() -> argparse.ArgumentParser:
    from xsnn import __version__

    parser = _Parser(
        prog="xsnn",
        description="Formal explanations of binary spiking neural networks.",
        epilog="Environment: XSNN_DATA = folder of the full MNIST IDX files (read by every command "
        "that takes --index).",
    )
    parser.add_argument("--version", action="version", version=f"xsnn {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more detail (solver paths) and logging on stderr (-v, -vv)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest="sub_verbose",
        help="more detail (solver paths) and logging on stderr",
    )

    info = sub.add_parser("info", parents=[common], help="describe a model (architecture, hash, card)")
    info.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="shipped model name or .npz path")
    info.set_defaults(func=_cmd_info)

    predict = sub.add_parser("predict", parents=[common], help="predict the class of one image")
    _add_instance_arguments(predict)
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    predict.set_defaults(func=_cmd_predict)

    explain = sub.add_parser(
        "explain", parents=[common], help="explain one prediction: AXp (default), CXp or minimum AXp"
    )
    _add_instance_arguments(explain)
    explain.add_argument(
        "--kind",
        choices=("axp", "cxp", "min-axp"),
        default="axp",
        help="axp: pixels whose values guarantee the prediction (subset-minimal); cxp: pixels "
        "whose change can change it; min-axp: an AXp of minimum size",
    )
    explain.add_argument(
        "--algorithm",
        choices=("deletion", "quickxplain", "progression"),
        default="deletion",
        help="AXp algorithm (the same AXp for the same order; default deletion)",
    )
    explain.add_argument(
        "--order",
        choices=ORDERS,
        default="index",
        help="order in which pixels are tried for removal: index (default), reverse, brightest "
        "(bright pixels first, so dark ones tend to stay), darkest, influence (the least "
        "influential first: faster on dense one-layer networks)",
    )
    _add_question_arguments(explain, default_time=120.0)
    explain.add_argument(
        "--verify", action="store_true", help="re-check the certificate with a second solver and the reference forward"
    )
    explain.add_argument(
        "--verify-time-limit",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="seconds for --verify (default: --time-limit)",
    )
    explain.add_argument(
        "--no-fast-paths",
        action="store_true",
        help="exact solver only (the same answer, slower: for baseline measurements)",
    )
    explain.add_argument(
        "--save",
        metavar="FILE",
        default=None,
        help="also write the explanation with its proof as JSON (xsnn.Explanation.load reads it)",
    )
    explain.set_defaults(func=_cmd_explain)

    enumerate_ = sub.add_parser(
        "enumerate", parents=[common], help="enumerate the AXps or CXps of one prediction, as they are found"
    )
    _add_instance_arguments(enumerate_)
    enumerate_.add_argument("--kind", choices=("axp", "cxp"), default="axp")
    enumerate_.add_argument("--limit", type=positive, default=None, help="stop after this many")
    _add_question_arguments(enumerate_, default_time=120.0)
    enumerate_.set_defaults(func=_cmd_enumerate)

    attribution = sub.add_parser(
        "attribution", parents=[common], help="formal feature attribution: the share of AXps that contain each pixel"
    )
    _add_instance_arguments(attribution)
    attribution.add_argument("--limit", type=positive, default=None, help="stop after this many AXps")
    _add_question_arguments(attribution, default_time=120.0)
    attribution.add_argument("--save", metavar="FILE", default=None, help="also write the result as JSON")
    attribution.set_defaults(func=_cmd_attribution)

    export = sub.add_parser("export", parents=[common], help="write the entailment question as DIMACS or SMT-LIB2")
    _add_instance_arguments(export)
    export.add_argument("--format", choices=("dimacs", "smt2"), required=True)
    export.add_argument("--fix", choices=("all", "none"), default="all", help="features fixed to the instance")
    export.add_argument("--encoding", default=None, help="cardinality encoding for DIMACS")
    export.add_argument("--output", "-o", required=True, help="file to write")
    export.set_defaults(func=_cmd_export)

    add_batch_commands(sub)  # explain-batch, summarize (xsnn.batch)
    add_compare_command(sub)  # compare (xsnn.compare; shap is imported only when it runs)
    sub.add_parser("train", help="train a BSNN (needs torch); see 'xsnn train --help'", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbosity = 0
    while argv and argv[0] in ("-v", "-vv", "--verbose"):
        verbosity += 2 if argv.pop(0) == "-vv" else 1
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)],
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if argv and argv[0] == "train":  # 'train' has its own parser (it lives with torch in xsnn.train)
            return _cmd_train(argv[1:])
        args = build_parser().parse_args(argv)
        args.verbose = verbosity + args.verbose + getattr(args, "sub_verbose", 0)
        if args.verbose > verbosity:
            logging.getLogger().setLevel([logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)])
        return int(args.func(args))
    except KeyboardInterrupt:
        print("xsnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, RuntimeError, TypeError) as exc:  # every xsnn error class derives from these
        if verbosity >= 2:
            raise
        print(f"xsnn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
