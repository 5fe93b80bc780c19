"""Global AXps of dense binary models: the level-search stack against plain SAT deletion, same run.

For each model and each of the first ``--images`` shipped sample images of the model's digits,
one image after the other in one process:

1. **ours**: deletion with :func:`xsnn.solvers.levels.level_portfolio` (the level search behind
   the fast paths),
   in ``--order`` (``index``, the default of ``explain``, or ``influence``:
   :func:`xsnn.solvers.influence.influence_order`), under ``--time-limit`` seconds;
2. **plain**: plain SAT deletion, the reference paper's method (the causal model's CNF in one
   incremental SAT solver, :class:`xsnn.solvers.sat.SATOracle`, no fast paths), in the *same*
   order, under ``--plain-time-limit`` seconds. Where both complete, the AXps must be identical
   (deletion with exact verdicts returns one AXp per order); a plain run that times out is a
   lower bound (its questions decided are reported).

Each of our certificates is written (JSON, one line per AXp) to ``--certificates`` for
``benchmarks/binary_verify.py``. Reports per model: AXps completed (ours, plain), median and p95
seconds (a timeout counts as its limit, so a median or p95 that falls on a timeout is a lower
bound, printed with ``>=``), and the speed-up where it is measured.

    python benchmarks/binary_bench.py --models mnist159-binary --images 20 --time-limit 600 \\
        --plain-time-limit 600 --out benchmarks/results/binary-bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation, as numpy's default)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarise(rows: list[dict], key: str, limit: float) -> dict:
    """Completed count, median and p95 seconds of ``rows[*][key]`` (timeouts counted at ``limit``;
    ``*_is_bound`` says whether the statistic falls on a timed-out run, i.e. is a lower bound)."""
    runs = [r[key] for r in rows if r.get(key)]
    seconds = sorted(min(r["seconds"], limit) if r["status"] != "complete" else r["seconds"] for r in runs)
    complete = sorted(r["seconds"] for r in runs if r["status"] == "complete")
    out = {"axps": len(runs), "complete": len(complete)}
    if seconds:
        median, p95 = percentile(seconds, 50), percentile(seconds, 95)
        slowest_complete = complete[-1] if complete else -1.0
        out.update(
            median_seconds=round(median, 3),
            p95_seconds=round(p95, 3),
            max_seconds=round(seconds[-1], 3),
            median_is_bound=median > slowest_complete,
            p95_is_bound=p95 > slowest_complete,
        )
    cpu = [r["cpu_seconds"] for r in runs if "cpu_seconds" in r]
    if cpu:
        out.update(
            median_cpu_seconds=round(percentile(cpu, 50), 3),
            p95_cpu_seconds=round(percentile(cpu, 95), 3),
            max_cpu_seconds=round(max(cpu), 3),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mnist159-binary"], help="model names or .npz paths")
    parser.add_argument("--images", type=int, default=20, help="first N sample images of each model's digits")
    parser.add_argument("--skip", type=int, default=0, help="skip the first K of those images")
    parser.add_argument("--order", choices=("index", "influence"), default="index")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per AXp, ours (0: do not run it)")
    parser.add_argument(
        "--plain-time-limit", type=float, default=600.0, help="seconds per AXp, plain SAT deletion (0: do not run it)"
    )
    parser.add_argument("--certificates", default=None, help="JSON-lines file for our AXps' certificates")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import xsnn
    from xsnn import data
    from xsnn.solvers.axp import DeletionAXp
    from xsnn.solvers.influence import influence_order
    from xsnn.solvers.levels import level_portfolio
    from xsnn.solvers.sat import SATOracle

    images, labels = data.load_sample()
    command = "python benchmarks/binary_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"started {datetime.now().isoformat(timespec='seconds')}: {command}", flush=True)
    certificates = open(args.certificates, "a") if args.certificates else None
    results = []
    try:
        for name in args.models:
            model = xsnn.load_model(name)
            eligible = [i for i in range(len(images)) if int(labels[i]) in model.labels]
            chosen = eligible[args.skip : args.skip + args.images]
            rows = []
            for index in chosen:
                spikes = model.encode(images[index][None])[0]
                row = {"image": index, "label": int(labels[index])}
                order = influence_order(model, spikes) if args.order == "influence" else "index"
                if args.time_limit > 0:
                    start, cpu = time.perf_counter(), time.process_time()
                    with DeletionAXp(level_portfolio(model, spikes), order=order, time_limit=args.time_limit) as alg:
                        ours = alg.compute()
                    row["ours"] = {
                        "status": ours.status.value,
                        "size": len(ours.features),
                        "seconds": round(time.perf_counter() - start, 3),
                        "cpu_seconds": round(time.process_time() - cpu, 3),
                        "questions": ours.stats["oracle_calls"],
                    }
                    if certificates is not None:
                        certificates.write(
                            json.dumps(
                                {
                                    "model": name,
                                    "image": index,
                                    "status": ours.status.value,
                                    "certificate": ours.certificate.as_dict(),
                                }
                            )
                            + "\n"
                        )
                        certificates.flush()
                if args.plain_time_limit > 0:
                    start, cpu = time.perf_counter(), time.process_time()
                    with DeletionAXp(SATOracle(model, spikes), order=order, time_limit=args.plain_time_limit) as alg:
                        plain = alg.compute()
                    row["plain"] = {
                        "status": plain.status.value,
                        "size": len(plain.features),
                        "seconds": round(time.perf_counter() - start, 3),
                        "cpu_seconds": round(time.process_time() - cpu, 3),
                        "questions": plain.stats["oracle_calls"],
                    }
                    if args.time_limit > 0 and ours.status.value == "complete" and plain.status.value == "complete":
                        row["identical"] = ours.features == plain.features
                row["load_average"] = round(os.getloadavg()[0], 2)
                rows.append(row)
                print(json.dumps({"model": name, **row}), flush=True)
            result = {
                "model": name,
                "ours": summarise(rows, "ours", args.time_limit) if args.time_limit > 0 else None,
                "plain": summarise(rows, "plain", args.plain_time_limit) if args.plain_time_limit > 0 else None,
                "identical": sum(r.get("identical", False) for r in rows),
                "both_complete": sum("identical" in r for r in rows),
                "rows": rows,
            }
            results.append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "rows"}), flush=True)
            if args.out:
                Path(args.out).write_text(
                    json.dumps(
                        {
                            "benchmark": "binary AXps: level search against plain SAT deletion",
                            "command": command,
                            "order": args.order,
                            "time_limit": args.time_limit,
                            "plain_time_limit": args.plain_time_limit,
                            "python": platform.python_version(),
                            "results": results,
                        },
                        indent=1,
                    )
                    + "\n"
                )
    finally:
        if certificates is not None:
            certificates.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
