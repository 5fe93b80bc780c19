"""Formal explanations versus SHAP on MNIST test images: the figures of docs/compare.md.

Usage::

    python benchmarks/shap_compare.py [--configs default binary159 blank] [--images N] [--jobs 2]
                                      [--data-dir DIR]

Each configuration runs ``xsnn compare`` (one row per image, resumable: rerunning the same
command continues an interrupted run) and writes, under ``benchmarks/results/``:

- ``shap-compare-<config>.csv``: one row per image, the columns of ``xsnn.compare.METRICS``;
- ``shap-compare-<config>.json``: the settings and the summary (means with 95% intervals);
- ``shap-compare-<config>.txt``: the summary as a table, with derived per-image comparisons
  (smallest sufficient top-k against |AXp|, ...), recomputed from the CSV by ``--report-only``;
- ``shap-compare-<config>-distributions.png|svg``: one histogram per metric;
- ``shap-compare-<config>-example.png|svg``: image | AXp | CXp | SHAP for the first image.

Configurations:

- ``default``: the default model ``mnist10-sparse192`` on the first ``--images`` (default
  1,000) MNIST test images, one feature per pixel, shap's permutation explainer with 10
  antithetic permutations (15,690 coalitions), background: 10 k-means centres of the 60,000
  training images, formal budget 11 s per image (``xsnn.compare.Budgets``);
- ``blank``: the same on the first 200 images with a blank (all-zero) background;
- ``binary159``: the reference paper's 1/5/9 binary model ``mnist159-binary`` on the test
  images of digits 1, 5 and 9 among the first ``--images`` (default 300), with 16 features
  (7x7 patches: global AXps over single pixels do not finish on this dense model, and
  distance-restricted ones are empty up to 7 changed pixels), exact SHAP (all 2^16
  coalitions), 5 k-means centres, formal budget 22 s per image.

The MNIST folder is ``--data-dir`` or ``$XSNN_DATA``.

``--speed`` instead measures what a SHAP run costs: the same permutation SHAP values (10
permutations, 784 pixels, 10 k-means centres) with the margin evaluated by the packed kernel and
by the reference forward, on the first ``--images`` (default 5) test images, in one run, and
writes ``shap-compare-speed.json`` (the values must be identical, or the script fails).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("benchmarks") / "results"  # relative to the repository root (the script runs there)

CONFIGS = {
    "default": dict(
        images=1000,
        args=[
            "--model",
            "mnist10-sparse192",
            "--explainer",
            "permutation",
            "--background",
            "kmeans",
            "--background-size",
            "10",
            "--time-limit",
            "11",
        ],
    ),
    "blank": dict(
        images=200,
        args=[
            "--model",
            "mnist10-sparse192",
            "--explainer",
            "permutation",
            "--background",
            "blank",
            "--time-limit",
            "11",
        ],
    ),
    "binary159": dict(
        images=300,
        args=[
            "--model",
            "mnist159-binary",
            "--model-labels-only",
            "--features",
            "patches:7",
            "--explainer",
            "exact",
            "--background",
            "kmeans",
            "--background-size",
            "5",
            "--time-limit",
            "22",
        ],
    ),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["default", "binary159"])
    parser.add_argument("--images", type=int, default=None, help="first N test images (default: per config)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the .txt and figures from the CSV")
    parser.add_argument("--speed", action="store_true", help="time SHAP through the kernel against the reference")
    args = parser.parse_args(argv)
    if args.speed:
        return speed(args.images or 5, args.data_dir)
    import os

    from xsnn.cli import main as xsnn_main

    os.chdir(ROOT)

    for name in args.configs:
        if args.report_only:
            report(name, args.data_dir)
            continue
        config = CONFIGS[name]
        images = args.images or config["images"]
        command = [
            "compare",
            "--data",
            "mnist",
            "--indices",
            f"0:{images}",
            "--jobs",
            str(args.jobs),
            *config["args"],
            "--out",
            str(RESULTS / f"shap-compare-{name}.csv"),
            "--summary",
            str(RESULTS / f"shap-compare-{name}.json"),
        ]
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
        report(name, args.data_dir)
    return 0


def speed(n_images: int, data_dir: str | None) -> int:
    """Permutation SHAP through the packed kernel and through the reference forward: same values, times."""
    import json
    import os
    import platform

    import numpy as np

    from xsnn import data
    from xsnn.compare import make_background, shap_values
    from xsnn.model import load_model

    os.chdir(ROOT)
    model = load_model("mnist10-sparse192")
    images = data.load_mnist("test", data_dir)[0][:n_images]
    background = make_background("kmeans", data.load_mnist("train", data_dir)[0], size=10, seed=0)
    shap_values(model, images[0], background=background, max_evals=2 * 784 + 1)  # compile shap's numba code once
    rows = []
    for i, image in enumerate(images):
        kernel = shap_values(model, image, background=background, backend="kernel")
        reference = shap_values(model, image, background=background, backend="reference")
        if not np.array_equal(kernel.values, reference.values):
            print(f"image {i}: the kernel and the reference give different SHAP values", file=sys.stderr)
            return 1
        rows.append(
            {
                "image": i,
                "evaluations": kernel.evaluations,
                "kernel_seconds": round(kernel.seconds, 4),
                "reference_seconds": round(reference.seconds, 4),
                "ratio": round(reference.seconds / kernel.seconds, 2),
            }
        )
        print(rows[-1], file=sys.stderr)
    out = {
        "command": f"python benchmarks/shap_compare.py --speed --images {n_images}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "model": "mnist10-sparse192",
        "explainer": "permutation",
        "max_evals": 15690,
        "background": "kmeans:10@train",
        "images": rows,
        "median_ratio": float(np.median([r["ratio"] for r in rows])),
    }
    (RESULTS / "shap-compare-speed.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


def _decided(rows, *names):
    return [r for r in rows if all(r.get(n) not in (None, "") for n in names)]


def derived(rows) -> list[str]:
    """Per-image comparisons that the summary's per-metric means do not show."""
    import numpy as np

    lines = []
    both = _decided(rows, "smallest_sufficient_k", "axp_size")
    complete = [r for r in both if r["axp_status"] == "complete"]
    if complete:
        k = np.array([r["smallest_sufficient_k"] for r in complete], float)
        a = np.array([r["axp_size"] for r in complete], float)
        lines += [
            f"images with a complete AXp and a decided smallest sufficient top-k: {len(complete)}",
            f"  smallest sufficient top-k SHAP set / |AXp|: median {np.median(k / a):.3f}, "
            f"mean {np.mean(k / a):.3f}, min {np.min(k / a):.3f}, max {np.max(k / a):.3f}",
            f"  top-k SHAP set sufficient at some k <= |AXp|: {int((k <= a).sum())} of {len(k)}",
        ]
    pairs = [
        r
        for r in _decided(rows, "shap_order_axp_size", "axp_size")
        if r["axp_status"] == "complete" and r["shap_order_axp_status"] == "complete"
    ]
    if pairs:
        d = np.array([r["shap_order_axp_size"] - r["axp_size"] for r in pairs], float)
        lines.append(
            f"AXp in SHAP order minus AXp in index order (both complete, {len(pairs)} images): "
            f"median {np.median(d):+.0f}, mean {np.mean(d):+.1f}; smaller in {int((d < 0).sum())}, "
            f"equal in {int((d == 0).sum())}, larger in {int((d > 0).sum())}"
        )
    minimum = _decided(rows, "min_axp_size")
    lines.append(f"minimum AXp found within its budget: {len(minimum)} of {len(rows)} images")
    status = {}
    for r in rows:
        status[r.get("axp_status")] = status.get(r.get("axp_status"), 0) + 1
    lines.append("AXp status: " + ", ".join(f"{k} {v}" for k, v in sorted(status.items(), key=str)))
    ffa = {}
    for r in rows:
        ffa[r.get("ffa_status")] = ffa.get(r.get("ffa_status"), 0) + 1
    lines.append("FFA enumeration status: " + ", ".join(f"{k} {v}" for k, v in sorted(ffa.items(), key=str)))
    above = _decided(rows, "irrelevant_above_relevant")
    if above:
        share = np.array([r["irrelevant_above_relevant"] for r in above], float)
        lines.append(
            f"images where SHAP ranks some proven-irrelevant feature above some relevant one: "
            f"{int((share > 0).sum())} of {len(share)}"
        )
    nonzero = _decided(rows, "irrelevant_nonzero")
    if nonzero:
        lines.append(
            f"images where a proven-irrelevant feature gets a non-zero SHAP value: "
            f"{sum(r['irrelevant_nonzero'] > 0 for r in nonzero)} of {len(nonzero)}"
        )
    changes = _decided(rows, "topk_cxp_changes", "smallest_changing_k", "cxp_size")
    if changes:
        k = np.array([r["smallest_changing_k"] for r in changes], float)
        c = np.array([r["cxp_size"] for r in changes], float)
        lines.append(f"smallest changing top-k SHAP set / |CXp| ({len(changes)} images): median {np.median(k / c):.3f}")
    return lines


def report(name: str, data_dir: str | None) -> None:
    """Rewrite the summary table and the figures of one configuration from its CSV."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    from xsnn import data, plots
    from xsnn.compare import Budgets, compare, format_summary, make_background, read_rows, summarise
    from xsnn.model import load_model

    table = RESULTS / f"shap-compare-{name}.csv"
    rows = read_rows(table)
    settings = json.loads((RESULTS / f"shap-compare-{name}.json").read_text())["settings"]
    text = [
        f"{name}: {len(rows)} images; settings: {json.dumps(settings)}",
        "",
        format_summary(summarise(rows)),
        "",
        *derived(rows),
    ]
    (RESULTS / f"shap-compare-{name}.txt").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    plots.save(
        plots.distributions_figure(rows, title=f"{settings['model']}: {len(rows)} MNIST test images"),
        RESULTS / f"shap-compare-{name}-distributions",
    )
    model = load_model(settings["model"])
    images, labels = data.load_mnist("test", data_dir)
    first = int(rows[0]["index"])
    pool = data.load_mnist("train", data_dir)[0]
    background = make_background(
        settings["background"],
        pool if settings["background"] != "blank" else None,
        size=settings["background_size"],
        seed=settings["seed"],
        n_inputs=model.n_inputs,
    )
    example = compare(
        model,
        images[first],
        features=settings["features"],
        explainer=settings["explainer"],
        max_evals=settings["max_evals"],
        background=background,
        seed=settings["seed"],
        budgets=Budgets.scaled(settings["time_limit"]),
        index=first,
        label=int(labels[first]),
    )
    plots.save(
        plots.comparison_figure(example, title=f"{settings['model']}, MNIST test image {first}"),
        RESULTS / f"shap-compare-{name}-example",
    )


if __name__ == "__main__":
    sys.exit(main())
