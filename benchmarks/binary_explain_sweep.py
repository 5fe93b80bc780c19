"""Explanation time of the binary 1/5/9 candidates: the explanation half of the binary-model sweep.

For every candidate model (``runs/binary-candidates/*.npz``, from ``benchmarks/binary_sweep.py``,
or the files given with ``--models``), one deletion AXp per image on the first ``--images``
sample images of digits 1, 5 and 9, with the level-search stack
(:func:`xsnn.solvers.levels.level_portfolio`) and the influence order, under ``--time-limit``
seconds each; one process, one image after the other. Records per model: accuracy (from the
card), AXps completed, median / max seconds, median size.

    python benchmarks/binary_explain_sweep.py --images 10 --time-limit 60 \\
        --out benchmarks/results/binary-explain-sweep.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ROOT / "runs" / "binary-candidates"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="model files or names (default: the candidates)")
    parser.add_argument("--images", type=int, default=10, help="first N sample images of the model's digits")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per AXp")
    parser.add_argument("--order", choices=("index", "influence"), default="influence")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import numpy as np

    import xsnn
    from xsnn import data
    from xsnn.solvers.axp import DeletionAXp
    from xsnn.solvers.influence import influence_order
    from xsnn.solvers.levels import level_portfolio

    paths = args.models if args.models else sorted(str(p) for p in CANDIDATES.glob("*.npz"))
    images, labels = data.load_sample()
    records = []
    print(
        f"started {datetime.now().isoformat(timespec='seconds')}; {args.images} images, "
        f"{args.time_limit:g} s per AXp, order {args.order}",
        flush=True,
    )
    for path in paths:
        model = xsnn.load_model(path)
        chosen = [i for i in range(len(images)) if int(labels[i]) in model.labels][: args.images]
        runs = []
        for index in chosen:
            spikes = model.encode(images[index][None])[0]
            start = time.perf_counter()
            order = influence_order(model, spikes) if args.order == "influence" else "index"
            with DeletionAXp(level_portfolio(model, spikes), order=order, time_limit=args.time_limit) as algorithm:
                result = algorithm.compute()
            runs.append(
                {
                    "image": index,
                    "status": result.status.value,
                    "size": len(result.features),
                    "seconds": round(time.perf_counter() - start, 3),
                }
            )
        done = [r for r in runs if r["status"] == "complete"]
        card = (
            json.loads(Path(path).with_suffix(".json").read_text())
            if Path(path).with_suffix(".json").is_file()
            else {"test_accuracy": float(model.info.get("test_accuracy", "nan"))}
        )
        record = {
            "model": Path(path).stem,
            "architecture": f"{model.n_inputs}-{model.layer_sizes[0]}-{model.n_classes}",
            "n_steps": model.n_steps,
            "test_accuracy": card.get("test_accuracy"),
            "thresholds_median": float(np.median(model.thresholds[0])),
            "complete": len(done),
            "axps": len(runs),
            "median_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
            "max_seconds": round(max(r["seconds"] for r in runs), 3),
            "median_size": statistics.median(r["size"] for r in done) if done else None,
            "runs": runs,
        }
        records.append(record)
        print(
            f"{record['model']:24s} acc {record['test_accuracy']:.4f}  {record['complete']}/{record['axps']} complete"
            f"  median {record['median_seconds']:8.2f} s  max {record['max_seconds']:8.2f} s"
            f"  median size {record['median_size']}",
            flush=True,
        )
        if args.out:
            Path(args.out).write_text(
                json.dumps(
                    {
                        "benchmark": "binary 1/5/9 sweep (explanation half)",
                        "command": "python benchmarks/binary_explain_sweep.py "
                        + " ".join(sys.argv[1:] if argv is None else argv),
                        "time_limit": args.time_limit,
                        "order": args.order,
                        "python": platform.python_version(),
                        "records": records,
                    },
                    indent=1,
                )
                + "\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
