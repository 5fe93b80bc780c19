"""Distance-restricted AXps on the shipped models: how many complete, how fast, how large.

A distance-restricted AXp (``explain(..., max_distance=k)``, ``xsnn explain --distance k``) is
valid for every input that differs from the image in at most ``k`` features. When the
prediction is *robust* at radius ``k`` (no ``k`` changes can move it) the AXp is empty, and
proving that is one ENTAILED question with every feature free. This runs the default
``explain`` (portfolio backend, deletion in index order) for each model and each ``k`` on the
first N sample images of the model's classes, with a time limit per AXp, and reports per
(model, k): AXps completed, how many of those are empty (robust prediction), the median and
maximum time of the completed ones, and the median size of the completed non-empty ones.

    python benchmarks/distance.py --models mnist10-binary mnist10-sparse192 --distances 1 2 3 4 \\
        --images 20 --time-limit 20 --out benchmarks/results/distance.json

Timed-out AXps are still sufficient (status ``timeout``); they count as not completed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="shipped model names")
    parser.add_argument("--distances", nargs="+", type=int, required=True, help="values of k")
    parser.add_argument("--images", type=int, default=20, help="first N sample images of each model's classes")
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds per AXp")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distance.json"))
    args = parser.parse_args(argv)
    if args.images < 1 or args.time_limit <= 0 or min(args.distances) < 0:
        parser.error("need --images >= 1, --time-limit > 0 and distances >= 0")

    import numpy as np

    import xsnn
    from xsnn import data
    from xsnn.api import explain

    images, labels = data.load_sample()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    rows, summary = [], []
    for name in args.models:
        model = xsnn.load_model(name)
        chosen = np.flatnonzero(np.isin(labels, np.asarray(model.labels)))[: args.images].tolist()
        explain(model, images[chosen[0]], max_distance=0, time_limit=args.time_limit)  # warm-up, not timed
        for k in args.distances:
            mine = []
            for index in chosen:
                e = explain(model, images[index], max_distance=k, time_limit=args.time_limit)
                row = {"model": name, "k": k, "image": index, "status": e.status, "size": e.size,
                       "seconds": round(e.seconds, 4)}
                rows.append(row)
                mine.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            done = [r for r in mine if r["status"] == "complete"]
            sizes = [r["size"] for r in done if r["size"]]
            summary.append({"model": name, "k": k, "axps": len(mine), "complete": len(done),
                            "empty": sum(r["size"] == 0 for r in done),
                            "median_s": round(statistics.median(r["seconds"] for r in done), 3) if done else None,
                            "max_s": round(max(r["seconds"] for r in done), 3) if done else None,
                            "median_size": statistics.median(sizes) if sizes else None})
    report = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "load_end": os.getloadavg()},
              "time_limit_s": args.time_limit, "summary": summary, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    lines = [report["command"], f"started {started}; time limit {args.time_limit:g} s per AXp",
             f"{'model':<20}{'k':>4}{'AXps':>6}{'compl':>7}{'empty':>7}{'med s':>9}{'max s':>9}{'med size':>10}"]
    for s in summary:
        def cell(v, fmt):
            return format(v, fmt) if v is not None else "-"
        lines.append(f"{s['model']:<20}{s['k']:>4}{s['axps']:>6}{s['complete']:>7}{s['empty']:>7}"
                     f"{cell(s['median_s'], '9.3f'):>9}{cell(s['max_s'], '9.3f'):>9}{cell(s['median_size'], '10g'):>10}")
    text = "\n".join(lines)
    Path(args.out).with_suffix(".txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
