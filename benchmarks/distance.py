"""Distance-restricted AXps by ball enumeration and by the solvers, in the same run.

A distance-restricted AXp (dAXp) with bound ``k`` is valid for every input that differs from
the image in at most ``k`` features. For each model, each ``k`` and each of the first N sample
images of the model's classes, this computes the deletion dAXp (features in index order) twice:

* ``ball``: over :class:`~xsnn.solvers.ball.BallOracle` (exhaustive enumeration of the ball);
* ``solvers``: over the default solver oracle (``xsnn.solvers.backends.make_oracle``: the
  portfolio of the rival SAT oracle and CP-SAT behind the sound fast paths), same deletion.

and reports per (model, features, k, method): dAXps completed, the median and 95th-percentile
time over all runs (a run that did not complete counts with the time it took, i.e. its time
limit), the median size of the completed ones, and for the two methods together how many
images both completed and whether their sets are identical. Every completed solver dAXp is
also re-checked by :func:`~xsnn.solvers.ball.verify_by_enumeration` (sufficiency by
enumeration, minimality witnesses by the reference forward), and the row records
:func:`~xsnn.solvers.ball.ball_choice` for the image.

    python benchmarks/distance.py --models mnist10-binary mnist159-binary mnist10-ternary mnist10-sparse \\
        mnist10-sparse192 --distances 1 2 3 --images 20 --time-limit 20 --ball-time-limit 120 \\
        --out benchmarks/results/distance.json

``--features patches:2`` uses 2x2 patches instead of pixels; ``--methods ball`` runs one method;
``--ball-engine kernel`` makes the ball oracle evaluate whole inputs with the packed kernel.
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
METHODS = ("ball", "solvers")


def _percentile(values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _features(spec: str, model):
    from xsnn.features import FeatureSet

    if spec == "pixels":
        return FeatureSet.pixels(model.n_inputs, model.input_shape)
    kind, _, size = spec.partition(":")
    if kind == "patches" and size.isdigit() and int(size) >= 1:
        return FeatureSet.patches(model.input_shape, int(size))
    raise ValueError(f"--features must be 'pixels' or 'patches:<size>', got {spec!r}")


def run_one(method: str, model, spikes, features, k: int, time_limit: float, engine: str | None = None) -> dict:
    """One deletion dAXp; the row's fields (``engine``: the ball oracle's engine, None for its default)."""
    from xsnn.solvers.axp import DeletionAXp
    from xsnn.solvers.backends import make_oracle
    from xsnn.solvers.ball import BallOracle, verify_by_enumeration

    start = time.perf_counter()
    if method == "ball":
        oracle = BallOracle(model, spikes, features, max_distance=k, engine=engine)
    else:
        oracle = make_oracle(model, spikes, features=features, max_distance=k)
    with DeletionAXp(oracle, time_limit=time_limit) as algorithm:
        result = algorithm.compute()
    seconds = time.perf_counter() - start  # oracle set-up included
    row = {
        "status": result.status.value,
        "size": len(result.features),
        "seconds": round(seconds, 4),
        "features": list(result.features),
        "calls": result.stats.get("calls", {}),
    }
    if method == "ball":
        row["ball"] = {
            **oracle.ball_stats.as_dict(),
            "effective_size": oracle.effective_size(),
            "engine": oracle.engine.name,
        }
    elif result.status.value == "complete":
        t = time.perf_counter()
        try:
            report = verify_by_enumeration(result, time_limit=time_limit)
            row["verified_by_enumeration"] = {
                "ok": report.ok,
                "problems": list(report.problems),
                "seconds": round(time.perf_counter() - t, 4),
            }
        except ValueError as exc:  # the ball is too large to enumerate
            row["verified_by_enumeration"] = {"ok": None, "problems": [str(exc)], "seconds": 0.0}
    return row


def summarise(rows: list[dict], methods: list[str]) -> list[dict]:
    out = []
    keys = sorted({(r["model"], r["features_spec"], r["k"]) for r in rows}, key=lambda t: (t[0], t[1], t[2]))
    for model, spec, k in keys:
        mine = [r for r in rows if (r["model"], r["features_spec"], r["k"]) == (model, spec, k)]
        entry = {"model": model, "features": spec, "k": k, "images": len({r["image"] for r in mine})}
        for method in methods:
            runs = [r for r in mine if r["method"] == method]
            done = [r for r in runs if r["status"] == "complete"]
            times = [r["seconds"] for r in runs]
            entry[method] = {
                "runs": len(runs),
                "complete": len(done),
                "empty": sum(r["size"] == 0 for r in done),
                "median_s": round(statistics.median(times), 4) if times else None,
                "p95_s": round(_percentile(times, 0.95), 4) if times else None,
                "max_s": round(max(times), 4) if times else None,
                "median_size": statistics.median(r["size"] for r in done) if done else None,
            }
        if len(methods) == 2:
            by_image = {}
            for r in mine:
                by_image.setdefault(r["image"], {})[r["method"]] = r
            both = [d for d in by_image.values() if all(d.get(m, {}).get("status") == "complete" for m in methods)]
            entry["both_complete"] = len(both)
            entry["identical"] = sum(d["ball"]["features"] == d["solvers"]["features"] for d in both)
            checked = [r["verified_by_enumeration"] for r in mine if "verified_by_enumeration" in r]
            entry["solver_verified_ok"] = sum(c["ok"] is True for c in checked)
            entry["solver_verified"] = len(checked)
        entry["median_ball"] = statistics.median(r["choice"]["size"] for r in mine if r["method"] == methods[0])
        effective = [r["ball"]["effective_size"] for r in mine if r["method"] == "ball"]
        entry["median_effective_ball"] = statistics.median(effective) if effective else None
        entry["ball_chosen"] = sum(r["choice"]["use"] for r in mine if r["method"] == methods[0])
        out.append(entry)
    return out


def table(summary: list[dict], methods: list[str]) -> list[str]:
    def cell(v, fmt="9.3f"):
        return "-" if v is None else format(v, fmt)

    head = f"{'model':<18}{'features':<11}{'k':>2}{'imgs':>5}"
    for m in methods:
        head += f" | {m:<7}{'done':>5}{'med s':>9}{'p95 s':>9}{'size':>6}"
    if len(methods) == 2:
        head += f" | {'both':>4}{'same':>5}{'verif':>6}"
    head += f" | {'ball':>9}{'effective':>10}{'chosen':>7}"
    lines = [head]
    for s in summary:
        line = f"{s['model']:<18}{s['features']:<11}{s['k']:>2}{s['images']:>5}"
        for m in methods:
            e = s[m]
            line += (
                f" | {'':<7}{e['complete']:>5}{cell(e['median_s']):>9}{cell(e['p95_s']):>9}"
                f"{cell(e['median_size'], '6g'):>6}"
            )
        if len(methods) == 2:
            line += (
                f" | {s['both_complete']:>4}{s['identical']:>5}{s['solver_verified_ok']:>3}/{s['solver_verified']:<2}"
            )
        line += (
            f" | {cell(s['median_ball'], '9.3g'):>9}{cell(s['median_effective_ball'], '10.3g'):>10}"
            f"{s['ball_chosen']:>7}"
        )
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="shipped model names")
    parser.add_argument("--distances", nargs="+", type=int, required=True, help="values of k")
    parser.add_argument("--images", type=int, default=20, help="first N sample images of each model's classes")
    parser.add_argument("--first-image", type=int, default=0, help="skip this many of those images")
    parser.add_argument("--features", default="pixels", help="'pixels' (default) or 'patches:<size>'")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--ball-engine",
        choices=("currents", "kernel"),
        default=None,
        help="the ball oracle's engine (default: currents where it applies)",
    )
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds per solver dAXp")
    parser.add_argument("--ball-time-limit", type=float, default=120.0, help="seconds per ball dAXp")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distance.json"))
    args = parser.parse_args(argv)
    if args.images < 1 or args.time_limit <= 0 or args.ball_time_limit <= 0 or min(args.distances) < 0:
        parser.error("need --images >= 1, time limits > 0 and distances >= 0")
    methods = [m for m in METHODS if m in args.methods]

    import numpy as np

    import xsnn
    from xsnn import data
    from xsnn.kernel import c_isa
    from xsnn.solvers.ball import BALL_INPUT_LIMIT, ball_choice

    images, labels = data.load_sample()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    rows = []
    for name in args.models:
        model = xsnn.load_model(name)
        features = _features(args.features, model)
        chosen = np.flatnonzero(np.isin(labels, np.asarray(model.labels)))
        chosen = chosen[args.first_image : args.first_image + args.images].tolist()
        warm = model.encode(images[chosen[0] : chosen[0] + 1])[0]
        for method in methods:  # warm-up (imports, solver start-up), not timed
            run_one(method, model, warm, features, 0, args.time_limit, args.ball_engine)
        for k in args.distances:
            for index in chosen:
                spikes = model.encode(images[index : index + 1])[0]
                choice = ball_choice(model, spikes, features, k).as_dict()
                for method in methods:
                    limit = args.ball_time_limit if method == "ball" else args.time_limit
                    row = {
                        "model": name,
                        "features_spec": args.features,
                        "k": k,
                        "image": index,
                        "method": method,
                        **run_one(method, model, spikes, features, k, limit, args.ball_engine),
                        "choice": choice,
                    }
                    rows.append(row)
                    print(
                        json.dumps({key: v for key, v in row.items() if key not in ("features", "choice")}),
                        file=sys.stderr,
                        flush=True,
                    )
    summary = summarise(rows, methods)
    command = (
        "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
        if argv is None
        else "python benchmarks/distance.py " + " ".join(argv)
    )
    report = {
        "command": command,
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_end": os.getloadavg(),
            "c_kernel": c_isa(),
        },
        "time_limit_s": args.time_limit,
        "ball_time_limit_s": args.ball_time_limit,
        "ball_engine": args.ball_engine,
        "ball_input_limit": BALL_INPUT_LIMIT,
        "summary": summary,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    when = (
        f"started {started}, finished {report['finished']}; solver limit {args.time_limit:g} s, "
        f"ball limit {args.ball_time_limit:g} s per dAXp; load at the end {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} cores"
    )
    legend = (
        "done: complete dAXps; med/p95 s over all runs (incomplete ones at their time limit); size: median "
        "of the complete; both/same: images both methods completed / with identical sets; verif: solver "
        "dAXps confirmed by enumeration; ball, effective: median inputs of the ball and of the part the ball "
        "oracle may evaluate (features that can move the prediction); chosen: images for which "
        f"ball_choice picks enumeration (limit {BALL_INPUT_LIMIT:,})"
    )
    lines = [command, when, legend, *table(summary, methods)]
    text = "\n".join(lines)
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
