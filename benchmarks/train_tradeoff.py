"""Accuracy against size, weight kind, sparsity and time steps for BSNNs trained on full MNIST.

Run by hand (not a test); it takes tens of minutes on 2 CPU cores::

    python benchmarks/train_tradeoff.py --data-dir $XSNN_DATA --threads 1

Each run trains a 784-H-10 network on the 60,000 training images and measures
it on the 10,000 test images. One record per run goes into
``benchmarks/results/train_tradeoff.json`` (rewritten after every run, so an
interrupted sweep keeps what it finished; ``--resume`` skips runs already
there). Ternary 10-class models reaching ``--keep-accuracy`` are kept, with
their cards, under ``runs/candidates/`` (git-ignored) for explanation-speed
benchmarks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from xsnn.data import load_mnist
from xsnn.train import TrainConfig, save_trained, train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train_tradeoff.json"
CANDIDATES = ROOT / "runs" / "candidates"

# Training settings shared by every run of the grid (the shipped models use the same recipe).
COMMON = dict(epochs=15, batch_size=128, lr=0.005, init_scale=0.1, tau=128, coding="static", reset="zero", seed=0)
TERNARY = dict(weight_kind="ternary", init_scale=0.01, weight_decay=0.3, readout_sparsity=0.5, sparsity_scope="neuron")


def grid(kind: str) -> list[TrainConfig]:
    """The configurations of a sweep: ``"full"`` (the documented table) or ``"smoke"`` (seconds)."""
    if kind == "smoke":
        return [
            TrainConfig(hidden=(16,), n_steps=2, train_limit=2000, **{**COMMON, "epochs": 1}),
            TrainConfig(hidden=(16,), n_steps=2, sparsity=0.9, train_limit=2000, **{**COMMON, **TERNARY, "epochs": 1}),
        ]
    configs = []
    binary = dict(weight_kind="binary")

    def ternary(s: float) -> dict:
        return dict(sparsity=s, **TERNARY)

    for hidden in (32, 64, 128, 256):
        for weights in (binary, ternary(0.8), ternary(0.9), ternary(0.95)):
            configs.append(TrainConfig(hidden=(hidden,), n_steps=2, **{**COMMON, **weights}))
    configs.append(TrainConfig(hidden=(256,), n_steps=2, **{**COMMON, **ternary(0.97)}))
    for n_steps in (1, 4):
        for weights in (binary, ternary(0.9)):
            configs.append(TrainConfig(hidden=(128,), n_steps=n_steps, **{**COMMON, **weights}))
    return configs


def run_name(config: TrainConfig) -> str:
    weights = "binary" if config.weight_kind == "binary" else f"ternary{round(config.sparsity * 100)}"
    return f"h{config.hidden[0]}-{weights}-T{config.n_steps}"


def record(name: str, config: TrainConfig, result, file_bytes: int) -> dict:
    layer = result.stats["layers"][0]
    return {
        "name": name,
        "hidden": list(config.hidden),
        "weight_kind": config.weight_kind,
        "sparsity_target": config.sparsity,
        "zero_fraction": layer["zero_fraction"],
        "fan_in_mean": layer["fan_in_mean"],
        "fan_in_max": layer["fan_in_max"],
        "inputs_connected": layer["inputs_connected"],
        "dead_inputs_connected": result.stats.get("dead_inputs_connected"),
        "readout_zero_fraction": result.stats["readout_zero_fraction"],
        "threshold_median": layer["threshold_median"],
        "n_steps": config.n_steps,
        "test_accuracy": round(result.test_accuracy, 4),
        "agreement_exact": result.agreement.exact,
        "train_seconds": round(result.train_seconds, 1),
        "epochs": config.epochs,
        "file_bytes": file_bytes,
        "content_hash": result.model.content_hash(),
        "config": config.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $XSNN_DATA)")
    parser.add_argument("--grid", choices=("full", "smoke"), default="full")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--candidates", type=Path, default=CANDIDATES)
    parser.add_argument(
        "--keep-accuracy",
        type=float,
        default=0.97,
        help="keep ternary 10-class models at least this accurate as candidates",
    )
    parser.add_argument("--resume", action="store_true", help="skip runs already in --out")
    parser.add_argument("--only", default=None, help="run only names containing this text")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    train_data, test_data = load_mnist("train", args.data_dir), load_mnist("test", args.data_dir)
    previous = json.loads(args.out.read_text()) if args.resume and args.out.is_file() else {"runs": []}
    runs = [r for r in previous["runs"]]
    done = {r["name"] for r in runs}
    started = time.perf_counter()
    for config in grid(args.grid):
        name = run_name(config)
        if name in done or (args.only and args.only not in name):
            continue
        print(f"{name}: training ...", file=sys.stderr, flush=True)
        result = train(config, train_data=train_data, test_data=test_data)
        with tempfile.TemporaryDirectory() as tmp:
            model_path, _ = save_trained(result, Path(tmp) / f"{name}.npz", name)
            file_bytes = model_path.stat().st_size
        entry = record(name, config, result, file_bytes)
        if config.weight_kind == "ternary" and config.classes is None and result.test_accuracy >= args.keep_accuracy:
            kept, _ = save_trained(result, args.candidates / f"{name}.npz", name)
            entry["candidate"] = str(kept.relative_to(ROOT)) if kept.is_relative_to(ROOT) else str(kept)
        runs = [r for r in runs if r["name"] != name] + [entry]
        payload = {
            "benchmark": "train_tradeoff",
            "command": "python benchmarks/train_tradeoff.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {
                "cpu_count": os.cpu_count(),
                "torch_threads": args.threads,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "note": "2 CPU cores shared with other jobs: times are indicative",
            },
            "common": COMMON,
            "ternary": TERNARY,
            "runs": runs,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=1) + "\n")
        print(
            f"{name}: accuracy {entry['test_accuracy']:.4f}, fan-in {entry['fan_in_mean']}, "
            f"{entry['train_seconds']} s, agreement exact {entry['agreement_exact']}",
            file=sys.stderr,
            flush=True,
        )
    print(f"done in {time.perf_counter() - started:.0f} s; results in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
