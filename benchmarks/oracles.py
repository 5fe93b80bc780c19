"""Exact entailment backends on the same queries: MILP (HiGHS), CP-SAT, SAT (python-sat), SMT (z3).

Usage::

    python benchmarks/oracles.py [--models NAME_OR_PATH ...] [--images 2] [--free 10,30,60,120]
                                 [--queries 2] [--time-limit 30] [--backends milp,cpsat,...]
                                 [--data-dir DIR] [--seed 0] [--out benchmarks/results/oracles.json]

Queries are drawn like the steps of a deletion AXp: for each model, each of the first
``--images`` MNIST test images and each free-set size ``k`` in ``--free``, ``--queries``
random sets of ``k`` free pixels (all other pixels fixed to the image); the target is the
model's prediction. Every backend answers exactly the same queries, one after the other,
each in its own process (``highspy`` and OR-Tools each ship a ``libhighs.so.1``, and the two
cannot be loaded in one process), with the per-call limit ``--time-limit``; an answer past
the limit is UNKNOWN. Per backend and (model, k) the script reports the median and maximum
time per call, the number of UNKNOWN answers, and whether the definite answers agree
across backends. Oracle construction (encoding, model build) is timed separately: it is
paid once per instance, while a deletion AXp asks ~784 questions.

Models: the shipped models (``xsnn/models/*.npz``) unless ``--models`` names models or files.
Backends (``--backends``, default: all available): ``milp`` (HiGHS through scipy, model
rebuilt per query), ``milp-incremental`` (highspy, built once, bounds changed per query),
``cpsat`` (assumptions, cores), ``cpsat-rebuild``, ``sat:<solver>`` (e.g. ``sat:cadical195``,
``sat:glucose4``), ``smt`` (z3, integer potentials).

Results: ``--out`` (JSON) and the same path with ``.txt`` (the table).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "oracles.json"
DEFAULT_BACKENDS = ("milp", "milp-incremental", "cpsat", "cpsat-rebuild", "sat:cadical195", "sat:glucose4", "smt")


# --------------------------------------------------------------------------- backends (worker side)


def make_oracle(backend: str, model, instance):
    """The oracle named ``backend`` for one instance (imports happen here, in the worker process)."""
    if backend == "milp":
        from xsnn.solvers.milp import MILPOracle
        return MILPOracle(model, instance)
    if backend == "milp-incremental":
        from xsnn.solvers.milp import MILPOracle
        return MILPOracle(model, instance, incremental=True, engine="highspy")
    if backend == "cpsat":
        from xsnn.solvers.cpsat import CPSATOracle
        return CPSATOracle(model, instance)
    if backend == "cpsat-rebuild":
        from xsnn.solvers.cpsat import CPSATOracle
        return CPSATOracle(model, instance, cores=False)
    if backend.startswith("sat:"):
        from xsnn.solvers.sat import SATOracle
        return SATOracle(model, instance, solver=backend.split(":", 1)[1])
    if backend == "smt":
        from xsnn.solvers.smt import SMTOracle
        return SMTOracle(model, instance)
    raise ValueError(f"unknown backend {backend!r}; known: {', '.join(DEFAULT_BACKENDS)} (any sat:<solver>)")


def run_worker(backend: str, plan_path: Path, result_path: Path) -> None:
    """Answer every query of the plan with one backend; write one record per query."""
    from xsnn.model import load_model

    plan = json.loads(plan_path.read_text())
    records = []
    for case in plan["cases"]:
        model = load_model(case["model_path"])
        instance = model.encode(np.array(case["image"], dtype=np.uint8)[None])[0]
        start = time.perf_counter()
        try:
            oracle = make_oracle(backend, model, instance)
        except Exception as exc:  # a backend that cannot even be built is reported, not fatal
            build_error = f"{type(exc).__name__}: {exc}"
            oracle = None
        build = time.perf_counter() - start
        for q in case["queries"]:
            rec = {"case": case["id"], "query": q["id"], "build_seconds": build}
            if oracle is None:
                rec.update(verdict="error", seconds=None, error=build_error)
            else:
                fixed = sorted(set(range(model.n_inputs)) - set(q["free"]))
                try:
                    check = oracle.check(fixed, time_limit=plan["time_limit"])
                    rec.update(verdict=check.verdict.value, seconds=check.seconds,
                               core_size=None if check.core is None else len(check.core))
                except Exception as exc:
                    rec.update(verdict="error", seconds=None, error=f"{type(exc).__name__}: {exc}")
            records.append(rec)
            print(f"{backend} case {case['id']} k={q['k']} {rec['verdict']} "
                  f"{rec['seconds'] if rec['seconds'] is not None else '-'}", file=sys.stderr, flush=True)
        if oracle is not None:
            oracle.close()
    result_path.write_text(json.dumps(records))


# --------------------------------------------------------------------------- plan and report (parent side)


def model_paths(names: list[str] | None) -> list[Path]:
    from xsnn.model import shipped_model_dir, shipped_model_names

    if names:
        out = []
        for name in names:
            p = Path(name)
            out.append(p if p.suffix == ".npz" or p.exists() else shipped_model_dir() / f"{name}.npz")
        return out
    shipped = shipped_model_names()
    if not shipped:
        raise SystemExit("no shipped models in xsnn/models; name model files with --models "
                         "(e.g. trained with `xsnn train --out m.npz --hidden 16`)")
    return [shipped_model_dir() / f"{n}.npz" for n in shipped]


def make_plan(args) -> dict:
    from xsnn.data import load_mnist
    from xsnn.model import forward, load_model

    images, labels = load_mnist("test", args.data_dir)
    rng = np.random.default_rng(args.seed)
    cases, models = [], []
    for path in model_paths(args.models):
        model = load_model(path)
        info = {"path": str(path), "name": path.stem, "describe": model.describe(),
                "hash": model.content_hash()[:16]}
        models.append(info)
        if args.classes_of_model:
            keep = np.flatnonzero(np.isin(labels, np.array(model.labels)))
        else:
            keep = np.arange(len(images))
        for idx in keep[:args.images].tolist():
            x = model.encode(images[idx:idx + 1])
            pred = int(forward(model, x).prediction[0])
            queries = []
            for k in args.free:
                for r in range(args.queries):
                    free = sorted(rng.choice(model.n_inputs, size=k, replace=False).tolist())
                    queries.append({"id": f"k{k}-{r}", "k": k, "free": free})
            cases.append({"id": f"{path.stem}/img{idx}", "model": path.stem, "model_path": str(path),
                          "image_index": idx, "label": int(labels[idx]), "prediction": int(model.labels[pred]),
                          "image": images[idx].reshape(-1).tolist(), "queries": queries})
    return {"time_limit": args.time_limit, "cases": cases, "models": models}


def summarize(plan: dict, results: dict[str, list[dict]], time_limit: float) -> dict:
    """Per (model, k, backend): time statistics, UNKNOWNs, errors; agreement across backends."""
    k_of = {(c["id"], q["id"]): (c["model"], q["k"]) for c in plan["cases"] for q in c["queries"]}
    by_query: dict[tuple, dict[str, str]] = {}
    for backend, recs in results.items():
        for r in recs:
            by_query.setdefault((r["case"], r["query"]), {})[backend] = r["verdict"]
    conflicts = []
    majority: dict[tuple, str | None] = {}
    for key, verdicts in by_query.items():
        definite = Counter(v for v in verdicts.values() if v in ("entailed", "not_entailed"))
        majority[key] = definite.most_common(1)[0][0] if definite else None
        if len(definite) > 1:
            conflicts.append({"case": key[0], "query": key[1], "verdicts": verdicts})
    groups = []
    for (model, k) in sorted({v for v in k_of.values()}, key=lambda mk: (mk[0], mk[1])):
        keys = [key for key, mk in k_of.items() if mk == (model, k)]
        row = {"model": model, "free": k, "queries": len(keys),
               "verdicts": dict(Counter(majority[key] or "undecided" for key in keys)), "backends": {}}
        for backend, recs in results.items():
            mine = [r for r in recs if (r["case"], r["query"]) in set(keys)]
            times = [r["seconds"] for r in mine if r["seconds"] is not None]
            decided = [r for r in mine if r["verdict"] in ("entailed", "not_entailed")]
            row["backends"][backend] = {
                "median_s": statistics.median(times) if times else None,
                "max_s": max(times) if times else None,
                "total_s": sum(times) if times else None,
                "unknown": sum(r["verdict"] == "unknown" for r in mine),
                "errors": sum(r["verdict"] == "error" for r in mine),
                "disagree": sum(majority[(r["case"], r["query"])] not in (None, r["verdict"]) for r in decided),
                "build_s_median": statistics.median(sorted({r["case"]: r["build_seconds"] for r in mine}.values()))
                if mine else None,
            }
        groups.append(row)
    totals = {}
    for backend, recs in results.items():
        times = [r["seconds"] for r in recs if r["seconds"] is not None]
        totals[backend] = {"calls": len(recs), "total_s": sum(times), "median_s": statistics.median(times) if times else None,
                           "max_s": max(times) if times else None,
                           "unknown": sum(r["verdict"] == "unknown" for r in recs),
                           "errors": sorted({r.get("error", "") for r in recs if r["verdict"] == "error"})[:3],
                           "build_s_total": sum({r["case"]: r["build_seconds"] for r in recs}.values())}
    return {"groups": groups, "totals": totals, "conflicts": conflicts, "time_limit": time_limit}


def table(summary: dict, backends: list[str]) -> str:
    def fmt(x):
        return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")

    lines = [f"per-call time limit {summary['time_limit']} s; cells: median / max seconds per call "
             f"[UNKNOWN count] (disagreements marked !)", ""]
    header = f"{'model':<18} {'k':>4} {'E/N':>7} " + " ".join(f"{b:>22}" for b in backends)
    lines += [header, "-" * len(header)]
    for g in summary["groups"]:
        v = g["verdicts"]
        cells = []
        for b in backends:
            s = g["backends"].get(b)
            if s is None:
                cells.append(f"{'n/a':>22}")
                continue
            cell = f"{fmt(s['median_s'])}/{fmt(s['max_s'])}"
            if s["unknown"]:
                cell += f" [{s['unknown']}]"
            if s["errors"]:
                cell += f" err{s['errors']}"
            if s["disagree"]:
                cell += f" !{s['disagree']}"
            cells.append(f"{cell:>22}")
        ratio = f"{v.get('entailed', 0)}/{v.get('not_entailed', 0)}"
        lines.append(f"{g['model']:<18} {g['free']:>4} {ratio:>7} " + " ".join(cells))
    lines += ["", "totals (all calls): total seconds, median, max, UNKNOWN, oracle construction seconds (all instances)"]
    for b in backends:
        t = summary["totals"][b]
        lines.append(f"  {b:<20} total {fmt(t['total_s'])}  median {fmt(t['median_s'])}  max {fmt(t['max_s'])}  "
                     f"unknown {t['unknown']}/{t['calls']}  build {fmt(t['build_s_total'])}"
                     + (f"  errors {t['errors']}" if t["errors"] else ""))
    lines.append(f"verdict conflicts (ENTAILED vs NOT_ENTAILED on one query): {len(summary['conflicts'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--free", type=lambda s: [int(v) for v in s.split(",")], default=[10, 30, 60, 120])
    p.add_argument("--queries", type=int, default=2, help="random free sets per (image, k)")
    p.add_argument("--time-limit", type=float, default=30.0)
    p.add_argument("--backends", type=lambda s: s.split(","), default=list(DEFAULT_BACKENDS))
    p.add_argument("--data-dir", default=os.environ.get("XSNN_DATA"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes-of-model", action=argparse.BooleanOptionalAction, default=True,
                   help="use only test images whose label is one of the model's labels")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.plan, args.result)
        return 0

    plan = make_plan(args)
    n_queries = sum(len(c["queries"]) for c in plan["cases"])
    results: dict[str, list[dict]] = {}
    wall: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan))
        for backend in args.backends:
            result_path = Path(tmp) / f"{backend.replace(':', '_')}.json"
            start = time.perf_counter()
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", backend, "--plan", str(plan_path),
                   "--result", str(result_path)]
            hard_limit = n_queries * (2 * args.time_limit + 10) + 600
            try:
                proc = subprocess.run(cmd, timeout=hard_limit)
                ok = proc.returncode == 0 and result_path.exists()
            except subprocess.TimeoutExpired:
                ok = False
            wall[backend] = time.perf_counter() - start
            if not ok:
                print(f"backend {backend} failed; skipped", file=sys.stderr)
                continue
            results[backend] = json.loads(result_path.read_text())
            print(f"backend {backend}: {wall[backend]:.1f} s", file=sys.stderr)
    backends = [b for b in args.backends if b in results]
    summary = summarize(plan, results, args.time_limit)
    text = table(summary, backends)
    print(text)
    out = {
        "command": "python benchmarks/oracles.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "models": plan["models"],
        "cases": [{k: v for k, v in c.items() if k not in ("image", "queries")} |
                  {"queries": [{"id": q["id"], "k": q["k"], "free": q["free"]} for q in c["queries"]]}
                  for c in plan["cases"]],
        "backend_wall_s": wall,
        "summary": summary,
        "records": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    args.out.with_suffix(".txt").write_text(out["command"] + "\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
