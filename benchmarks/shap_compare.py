"""Formal explanations versus SHAP on MNIST test images: the figures of docs/compare.md.

Usage::

    python benchmarks/shap_compare.py [--configs default binary159 blank] [--images N] [--jobs 2]
                                      [--data-dir DIR]

Each configuration runs ``xsnn compare`` (one row per image, resumable: rerunning the same
command continues an interrupted run) and writes, under ``benchmarks/results/``:

- ``shap-compare-<config>.csv``: one row per image, the columns of ``xsnn.compare.METRICS``;
- ``shap-compare-<config>.json``: the settings and the summary (means with 95% intervals).

Configurations:

- ``default``: the default model ``mnist10-sparse192`` on the first ``--images`` (default
  1,000) MNIST test images, one feature per pixel, shap's permutation explainer with 10
  antithetic permutations (15,690 coalitions), background: 10 k-means centres of the 60,000
  training images, formal budget 12 s per image (``xsnn.compare.Budgets``);
- ``blank``: the same on the first 200 images with a blank (all-zero) background;
- ``binary159``: the reference paper's 1/5/9 binary model ``mnist159-binary`` on the test
  images of digits 1, 5 and 9 among the first ``--images`` (default 300), with 16 features
  (7x7 patches: global AXps over single pixels do not finish on this dense model, and
  distance-restricted ones are empty up to 7 changed pixels), exact SHAP (all 2^16
  coalitions), 5 k-means centres, formal budget 24 s per image.

The MNIST folder is ``--data-dir`` or ``$XSNN_DATA``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("benchmarks") / "results"  # relative to the repository root (the script runs there)

CONFIGS = {
    "default": dict(images=1000, args=["--model", "mnist10-sparse192", "--explainer", "permutation",
                                       "--background", "kmeans", "--background-size", "10", "--time-limit", "12"]),
    "blank": dict(images=200, args=["--model", "mnist10-sparse192", "--explainer", "permutation",
                                    "--background", "blank", "--time-limit", "12"]),
    "binary159": dict(images=300, args=["--model", "mnist159-binary", "--model-labels-only", "--features",
                                        "patches:7", "--explainer", "exact", "--background", "kmeans",
                                        "--background-size", "5", "--time-limit", "24"]),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["default", "binary159"])
    parser.add_argument("--images", type=int, default=None, help="first N test images (default: per config)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    import os

    from xsnn.cli import main as xsnn_main

    os.chdir(ROOT)

    for name in args.configs:
        config = CONFIGS[name]
        images = args.images or config["images"]
        command = ["compare", "--data", "mnist", "--indices", f"0:{images}", "--jobs", str(args.jobs),
                   *config["args"], "--out", str(RESULTS / f"shap-compare-{name}.csv"),
                   "--summary", str(RESULTS / f"shap-compare-{name}.json")]
        if args.data_dir:
            command += ["--data-dir", args.data_dir]
        if args.no_progress:
            command.append("--no-progress")
        print(f"== {name}: xsnn {' '.join(command)}", file=sys.stderr)
        start = time.perf_counter()
        code = xsnn_main(command)
        print(f"== {name}: exit {code}, {time.perf_counter() - start:.0f} s", file=sys.stderr)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
