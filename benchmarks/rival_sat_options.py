"""What each option of the per-rival SAT oracle saves in a deletion AXp, and that none changes it.

For each of the first ``--images`` MNIST test images, one deletion AXp (index order) per
option set of :class:`~xsnn.solvers.rivalsat.RivalSATOracle`, alone (no fast paths, no
portfolio), one after the other in this process:

- ``none``: ``bound_pruning=False, core_cache=False, witness_repair=False`` (every question goes
  to the solvers, every rival's solver is asked);
- ``bounds``: interval bounds skip the rivals that cannot win;
- ``cores``: each rival's kept UNSAT cores skip it on supersets;
- ``repair``: repaired recent witnesses answer NOT_ENTAILED questions before the solvers;
- ``all``: the default.

Reported per option set: wall seconds per AXp (median, p95, total), SAT solver calls, rival
solves skipped by the bounds and by kept cores, questions answered by repair, and the ratio of
the total time to ``none`` on the same images. Every option set must give the same AXp as
``none`` (a mismatch is reported and makes the exit status 1). The order of option sets is
rotated from image to image so that drifts of the machine's speed do not favour one of them.

    python benchmarks/rival_sat_options.py --images 30
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
OPTIONS = {
    "none": dict(bound_pruning=False, core_cache=False, witness_repair=False),
    "bounds": dict(bound_pruning=True, core_cache=False, witness_repair=False),
    "cores": dict(bound_pruning=False, core_cache=True, witness_repair=False),
    "repair": dict(bound_pruning=False, core_cache=False, witness_repair=True),
    "all": dict(bound_pruning=True, core_cache=True, witness_repair=True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist10-sparse", help="shipped model name or .npz path")
    parser.add_argument("--images", type=int, default=50, help="first N MNIST test images")
    parser.add_argument("--data", default=None, help="MNIST folder (default: $XSNN_DATA)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rival-sat-options.json"))
    args = parser.parse_args(argv)

    import xsnn
    from xsnn.data import load_mnist
    from xsnn.solvers import rivalsat
    from xsnn.solvers.axp import DeletionAXp
    from xsnn.solvers.rivalsat import RivalSATOracle

    calls = {"n": 0}
    solve = rivalsat.solve_limited

    def counting_solve(*a, **k):
        calls["n"] += 1
        return solve(*a, **k)

    rivalsat.solve_limited = counting_solve  # counts the SAT calls of this process only

    model = xsnn.load_model(args.model)
    images, _ = load_mnist("test", args.data)
    names = list(OPTIONS)
    rows, mismatches = [], 0
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_start = os.getloadavg()
    for index in range(args.images):
        spikes = model.encode(images[index][None])[0]
        rotation = names[index % len(names) :] + names[: index % len(names)]
        row = {"index": index}
        for name in rotation:
            calls["n"] = 0
            t0 = time.perf_counter()
            # the options are class attributes of the oracle: set in a subclass for this run
            oracle = type(f"RivalSAT_{name}", (RivalSATOracle,), OPTIONS[name])(model, spikes)
            with DeletionAXp(oracle) as algorithm:
                result = algorithm.compute()
            row[name] = {
                "seconds": round(time.perf_counter() - t0, 4),
                "sat_calls": calls["n"],
                "pruned": oracle.pruned,
                "skipped_by_cores": oracle.skipped_by_cores,
                "repaired": result.stats["calls"].get("rival-repair", 0),
                "status": result.status.value,
                "size": len(result.features),
                "features": list(result.features),
            }
        for name in names:
            if row[name]["features"] != row["none"]["features"]:
                mismatches += 1
                print(f"MISMATCH image {index}: {name} differs from none", flush=True)
        print(json.dumps({"index": index, **{n: row[n]["seconds"] for n in names}}), flush=True)
        rows.append(row)

    summary = {}
    total_none = sum(r["none"]["seconds"] for r in rows)
    for name in names:
        seconds = [r[name]["seconds"] for r in rows]
        summary[name] = {
            "median_s": round(statistics.median(seconds), 4),
            "p95_s": round(sorted(seconds)[max(0, int(0.95 * len(seconds) + 0.5) - 1)], 4),
            "total_s": round(sum(seconds), 3),
            "sat_calls_per_axp": round(statistics.mean(r[name]["sat_calls"] for r in rows), 1),
            "pruned_per_axp": round(statistics.mean(r[name]["pruned"] for r in rows), 1),
            "skipped_by_cores_per_axp": round(statistics.mean(r[name]["skipped_by_cores"] for r in rows), 1),
            "repaired_per_axp": round(statistics.mean(r[name]["repaired"] for r in rows), 1),
            "speedup_total_vs_none": round(total_none / sum(seconds), 3),
            "speedup_median_vs_none": round(
                statistics.median(r["none"]["seconds"] / r[name]["seconds"] for r in rows), 3
            ),
        }
    report = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_start": load_start,
            "load_end": os.getloadavg(),
        },
        "model": args.model,
        "images": args.images,
        "mismatches": mismatches,
        "summary": summary,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        f"{'options':8} {'median s':>9} {'p95 s':>7} {'total s':>8} {'x none':>7} {'SAT calls':>10} "
        f"{'pruned':>7} {'by cores':>9} {'repaired':>9}"
    ]
    for name in names:
        s = summary[name]
        lines.append(
            f"{name:8} {s['median_s']:9.3f} {s['p95_s']:7.3f} {s['total_s']:8.2f} "
            f"{s['speedup_total_vs_none']:7.2f} {s['sat_calls_per_axp']:10.1f} {s['pruned_per_axp']:7.1f} "
            f"{s['skipped_by_cores_per_axp']:9.1f} {s['repaired_per_axp']:9.1f}"
        )
    lines.append(f"identity: {mismatches} mismatches over {len(rows)} images x {len(names) - 1} option sets")
    text = "\n".join([report["command"], f"started {started}, load at start {load_start}", *lines])
    Path(args.out).with_suffix(".txt").write_text(text + "\n")
    print(text)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
