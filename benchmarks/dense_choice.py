"""Which exact stack the default pipeline should use, by the hidden layer's weight density.

For each model and each of the first ``--images`` shipped sample images of the model's digits,
one deletion AXp (index order, ``--time-limit`` seconds) with each stack, one after the other in
one process:

- ``rival-sat``: the incremental per-rival SAT oracle for 0.1 s per question, then CP-SAT on the
  rival split, behind the fast paths (the default pipeline for sparse one-layer networks);
- ``levels``: the level search (:class:`xsnn.solvers.levels.LevelOracle`) behind the fast paths.

Both are exact, so where both complete the AXps must be identical (checked). Prints one JSON
line per AXp and a summary per model (median seconds of each stack, their ratio).

    python benchmarks/dense_choice.py --models mnist10-sparse192 mnist10-sparse mnist10-ternary \\
        --images 5 --time-limit 120 --out benchmarks/results/dense-choice.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import xsnn
    from xsnn import data
    from xsnn.solvers.axp import DeletionAXp
    from xsnn.solvers.backends import rival_sat_stack, weight_density
    from xsnn.solvers.levels import level_portfolio

    stacks = {"rival-sat": rival_sat_stack, "levels": level_portfolio}
    images, labels = data.load_sample()
    command = "python benchmarks/dense_choice.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"started {datetime.now().isoformat(timespec='seconds')}: {command}", flush=True)
    results = []
    for name in args.models:
        model = xsnn.load_model(name)
        chosen = [i for i in range(len(images)) if int(labels[i]) in model.labels][: args.images]
        rows = []
        for index in chosen:
            spikes = model.encode(images[index][None])[0]
            row = {"image": index}
            for stack, build in stacks.items():
                start = time.perf_counter()
                with DeletionAXp(build(model, spikes), time_limit=args.time_limit) as alg:
                    found = alg.compute()
                row[stack] = {
                    "status": found.status.value,
                    "size": len(found.features),
                    "seconds": round(time.perf_counter() - start, 3),
                }
                row[stack + "_features"] = sorted(found.features)
            if all(row[s]["status"] == "complete" for s in stacks):
                row["identical"] = row["rival-sat_features"] == row["levels_features"]
            for stack in stacks:
                del row[stack + "_features"]
            rows.append(row)
            print(json.dumps({"model": name, **row}), flush=True)
        medians = {s: float(np.median([r[s]["seconds"] for r in rows])) for s in stacks}
        summary = {
            "model": name,
            "weight_density": round(weight_density(model), 4),
            "complete": {s: sum(r[s]["status"] == "complete" for r in rows) for s in stacks},
            "median_seconds": medians,
            "levels_over_rival_sat": round(medians["levels"] / medians["rival-sat"], 3),
            "identical": sum(r.get("identical", False) for r in rows),
            "both_complete": sum("identical" in r for r in rows),
        }
        print(json.dumps(summary), flush=True)
        results.append({**summary, "rows": rows})
        if args.out:
            Path(args.out).write_text(
                json.dumps(
                    {
                        "benchmark": "default stack by weight density: rival SAT + CP-SAT against the level search",
                        "command": command,
                        "time_limit": args.time_limit,
                        "python": platform.python_version(),
                        "results": results,
                    },
                    indent=1,
                )
                + "\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
