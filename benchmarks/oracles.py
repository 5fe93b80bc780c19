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
``cpsat`` (model rebuilt per query, the default), ``cpsat-cores`` (built once, assumptions, cores),
``sat`` (the SAT oracle's defaults), ``sat:<solver>`` (e.g. ``sat:cadical195``, ``sat:glucose4``, with
that solver's default encoding), ``smt`` (z3, integer potentials).

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
# "milp-incremental" and "cpsat-cores" (measured in docs/oracles.md) left the library after these runs
DEFAULT_BACKENDS = ("milp", "cpsat", "sat", "sat:cadical195", "sat:glucose4", "smt")


# --------------------------------------------------------------------------- backends (worker side)


def make_oracle(backend: str, model, instance):
    """The oracle named ``backend`` for one instance (imports happen here, in the worker process)."""
    if backend == "milp":
        from xsnn.solvers.milp import MILPOracle

        return MILPOracle(model, instance)
    if backend == "cpsat":
        from xsnn.solvers.cpsat import CPSATOracle

        return CPSATOracle(model, instance)
    if backend == "sat":  # the SAT oracle's defaults
        from xsnn.solvers.sat import SATOracle

        return SATOracle(model, instance)
    if backend.startswith("sat:"):
        from xsnn.solvers.sat import SATOracle

        return SATOracle(model, instance, solver=backend.split(":", 1)[1])
    if backend == "smt":
        from xsnn.solvers.smt import SMTOracle

        return SMTOracle(model, instance)
    raise ValueError(f"unknown backend {backend!r}; known: {', '.join(DEFAULT_BACKENDS)} (any sat:<solver>)")


def run_worker(backend: str, plan_path: Path, result_path: Path, first_case: int, first_query: int) -> None:
    """Answer the plan's queries from (``first_case``, ``first_query``) on with one backend.

    One JSON line per query is appended to ``result_path`` as soon as it is answered, and
    ``<result_path>.progress`` says what is running since when (``build`` or a query), so
    that the parent can kill a call that overshoots (in-process timers cannot interrupt a
    solver that holds the GIL). Once a backend has spent ``budget`` seconds (construction and
    calls) on a model, its remaining queries on that model are recorded as skipped.
    """
    from xsnn.model import load_model

    plan = json.loads(plan_path.read_text())
    progress = Path(str(result_path) + ".progress")
    model_of = {c["id"]: c["model"] for c in plan["cases"]}
    spent: dict[str, float] = {}  # seconds already spent per model (earlier runs of this worker included)
    if result_path.exists():
        earlier = [json.loads(line) for line in result_path.read_text().splitlines()]
        for r in earlier:
            spent[model_of[r["case"]]] = spent.get(model_of[r["case"]], 0.0) + (r["seconds"] or 0.0)
        for case_id, build in {(r["case"], r["build_seconds"]) for r in earlier if r.get("build_seconds")}:
            spent[model_of[case_id]] += build

    def mark(case_i: int, query_i: int, phase: str) -> None:
        progress.write_text(json.dumps({"case": case_i, "query": query_i, "phase": phase, "since": time.time()}))

    with open(result_path, "a") as out:

        def emit(rec: dict) -> None:
            out.write(json.dumps(rec) + "\n")
            out.flush()

        for case_i in range(first_case, len(plan["cases"])):
            case = plan["cases"][case_i]
            queries = case["queries"][first_query if case_i == first_case else 0 :]
            model_name = case["model"]
            if spent.get(model_name, 0.0) >= plan["budget"]:
                for q in queries:
                    emit({"case": case["id"], "query": q["id"], "verdict": "skipped", "seconds": None})
                continue
            model = load_model(case["model_path"])
            instance = model.encode(np.array(case["image"], dtype=np.uint8)[None])[0]
            mark(case_i, -1, "build")
            start = time.perf_counter()
            build_error = None
            try:
                oracle = make_oracle(backend, model, instance)
            except Exception as exc:  # a backend that cannot be built is reported, not fatal
                build_error, oracle = f"{type(exc).__name__}: {exc}", None
            build = time.perf_counter() - start
            spent[model_name] = spent.get(model_name, 0.0) + build
            for q in queries:
                rec = {"case": case["id"], "query": q["id"], "build_seconds": build}
                if oracle is None:
                    rec.update(verdict="error", seconds=None, error=build_error)
                elif spent[model_name] >= plan["budget"]:
                    rec.update(verdict="skipped", seconds=None)
                else:
                    fixed = sorted(set(range(model.n_inputs)) - set(q["free"]))
                    mark(case_i, case["queries"].index(q), "query")
                    t0 = time.perf_counter()
                    try:
                        check = oracle.check(fixed, time_limit=plan["time_limit"])
                        rec.update(
                            verdict=check.verdict.value,
                            seconds=check.seconds,
                            core_size=None if check.core is None else len(check.core),
                        )
                    except Exception as exc:
                        rec.update(verdict="error", seconds=None, error=f"{type(exc).__name__}: {exc}")
                    spent[model_name] += time.perf_counter() - t0
                emit(rec)
                print(
                    f"{backend} {case['id']} k={q['k']} {rec['verdict']} "
                    f"{rec['seconds'] if rec['seconds'] is not None else '-'}",
                    file=sys.stderr,
                    flush=True,
                )
            if oracle is not None:
                oracle.close()
    progress.unlink(missing_ok=True)


def run_backend(backend: str, plan: dict, plan_path: Path, result_path: Path) -> list[dict]:
    """Run the worker for ``backend`` over the whole plan, killing and resuming it past an overshoot.

    A call running longer than ``kill_after`` is recorded as ``killed`` (seconds = the kill
    time) and the worker restarts at the next query (rebuilding the oracle); a construction
    running longer than ``build_limit`` marks the case's remaining queries as ``error``.
    """
    progress = Path(str(result_path) + ".progress")
    position = (0, 0)
    while True:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            backend,
            "--plan",
            str(plan_path),
            "--result",
            str(result_path),
            "--first-case",
            str(position[0]),
            "--first-query",
            str(position[1]),
        ]
        proc = subprocess.Popen(cmd)
        killed = None
        while proc.poll() is None:
            time.sleep(0.2)
            try:
                state = json.loads(progress.read_text())
            except (OSError, ValueError):
                continue
            limit = plan["kill_after"] if state["phase"] == "query" else plan["build_limit"]
            if time.time() - state["since"] > limit:
                proc.kill()
                proc.wait()
                killed = state
        if killed is None:
            if proc.returncode != 0:
                raise RuntimeError(f"worker for {backend} failed with exit code {proc.returncode}")
            break
        case = plan["cases"][killed["case"]]
        with open(result_path, "a") as out:
            if killed["phase"] == "query":
                q = case["queries"][killed["query"]]
                out.write(
                    json.dumps(
                        {
                            "case": case["id"],
                            "query": q["id"],
                            "verdict": "killed",
                            "seconds": plan["kill_after"],
                            "build_seconds": None,
                        }
                    )
                    + "\n"
                )
                print(f"{backend} {case['id']} k={q['k']} killed after {plan['kill_after']} s", file=sys.stderr)
                position = (killed["case"], killed["query"] + 1)
            else:
                for q in case["queries"]:
                    out.write(
                        json.dumps(
                            {
                                "case": case["id"],
                                "query": q["id"],
                                "verdict": "error",
                                "seconds": None,
                                "error": f"construction over {plan['build_limit']} s",
                            }
                        )
                        + "\n"
                    )
                print(f"{backend} {case['id']} construction killed after {plan['build_limit']} s", file=sys.stderr)
                position = (killed["case"] + 1, 0)
        if position[1] >= len(case["queries"]):
            position = (position[0] + 1, 0)
        progress.unlink(missing_ok=True)
        if position[0] >= len(plan["cases"]):
            break
    return [json.loads(line) for line in result_path.read_text().splitlines()]


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
        raise SystemExit(
            "no shipped models in xsnn/models; name model files with --models "
            "(e.g. trained with `xsnn train --out m.npz --hidden 16`)"
        )
    return [shipped_model_dir() / f"{n}.npz" for n in shipped]


def make_plan(args) -> dict:
    from xsnn.data import load_mnist
    from xsnn.model import forward, load_model

    images, labels = load_mnist("test", args.data_dir)
    rng = np.random.default_rng(args.seed)
    cases, models = [], []
    for path in model_paths(args.models):
        model = load_model(path)
        info = {"path": str(path), "name": path.stem, "describe": model.describe(), "hash": model.content_hash()[:16]}
        card = path.with_suffix(".json")
        if card.is_file():  # the model card written by `xsnn train`
            meta = json.loads(card.read_text())
            info.update({k: meta[k] for k in ("training_command", "test_accuracy") if k in meta})
        models.append(info)
        if args.classes_of_model:
            keep = np.flatnonzero(np.isin(labels, np.array(model.labels)))
        else:
            keep = np.arange(len(images))
        for idx in keep[: args.images].tolist():
            x = model.encode(images[idx : idx + 1])
            pred = int(forward(model, x).prediction[0])
            queries = []
            for k in args.free:
                for r in range(args.queries):
                    free = sorted(rng.choice(model.n_inputs, size=k, replace=False).tolist())
                    queries.append({"id": f"k{k}-{r}", "k": k, "free": free})
            cases.append(
                {
                    "id": f"{path.stem}/img{idx}",
                    "model": path.stem,
                    "model_path": str(path),
                    "image_index": idx,
                    "label": int(labels[idx]),
                    "prediction": int(model.labels[pred]),
                    "image": images[idx].reshape(-1).tolist(),
                    "queries": queries,
                }
            )
    return {"time_limit": args.time_limit, "cases": cases, "models": models}


DEFINITE = ("entailed", "not_entailed")


def summarize(plan: dict, results: dict[str, list[dict]], time_limit: float) -> dict:
    """Per (model, k, backend): time statistics, UNKNOWNs, skips, wins; agreement across backends.

    ``killed`` calls (ended by the watchdog) count as UNKNOWN with their kill time as seconds
    (a lower bound); ``skipped`` queries (budget spent) are left out of the time statistics.
    A backend *wins* a query when it answers it definitely in the least time.
    """
    k_of = {(c["id"], q["id"]): (c["model"], q["k"]) for c in plan["cases"] for q in c["queries"]}
    by_query: dict[tuple, dict[str, dict]] = {}
    for backend, recs in results.items():
        for r in recs:
            by_query.setdefault((r["case"], r["query"]), {})[backend] = r
    conflicts, majority, winner = [], {}, {}
    for key, recs in by_query.items():
        definite = Counter(r["verdict"] for r in recs.values() if r["verdict"] in DEFINITE)
        majority[key] = definite.most_common(1)[0][0] if definite else None
        if len(definite) > 1:
            conflicts.append({"case": key[0], "query": key[1], "verdicts": {b: r["verdict"] for b, r in recs.items()}})
        answered = [(r["seconds"], b) for b, r in recs.items() if r["verdict"] in DEFINITE]
        winner[key] = min(answered)[1] if answered else None

    def stats(recs: list[dict]) -> dict:
        run = [r for r in recs if r["verdict"] != "skipped"]
        times = [r["seconds"] for r in run if r["seconds"] is not None]
        builds = {r["case"]: r["build_seconds"] for r in run if r.get("build_seconds") is not None}
        return {
            "calls": len(run),
            "median_s": statistics.median(times) if times else None,
            "max_s": max(times) if times else None,
            "total_s": sum(times),
            "unknown": sum(r["verdict"] in ("unknown", "killed") for r in run),
            "killed": sum(r["verdict"] == "killed" for r in run),
            "skipped": len(recs) - len(run),
            "errors": sum(r["verdict"] == "error" for r in run),
            "disagree": sum(
                majority[(r["case"], r["query"])] not in (None, r["verdict"]) for r in run if r["verdict"] in DEFINITE
            ),
            "wins": sum(winner[(r["case"], r["query"])] == r["backend"] for r in run),
            "build_s_median": statistics.median(builds.values()) if builds else None,
        }

    for backend, recs in results.items():
        for r in recs:
            r["backend"] = backend
    groups = []
    for model, k in sorted(set(k_of.values())):
        keys = {key for key, mk in k_of.items() if mk == (model, k)}
        groups.append(
            {
                "model": model,
                "free": k,
                "queries": len(keys),
                "verdicts": dict(Counter(majority[key] or "undecided" for key in keys)),
                "backends": {
                    b: stats([r for r in recs if (r["case"], r["query"]) in keys]) for b, recs in results.items()
                },
            }
        )
    totals = {
        b: stats(recs) | {"error_messages": sorted({r.get("error", "") for r in recs if r["verdict"] == "error"})[:3]}
        for b, recs in results.items()
    }
    return {"groups": groups, "totals": totals, "conflicts": conflicts, "time_limit": time_limit}


def table(summary: dict, backends: list[str]) -> str:
    def fmt(x):
        return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")

    width = 24
    lines = [
        f"per-call limit {summary['time_limit']} s. Cell: median/max seconds per call, [u] UNKNOWN answers "
        "(incl. killed), s skipped (budget), w wins (fastest definite answer), ! disagreements.",
        "E/N/?: queries ENTAILED / NOT_ENTAILED / undecided by every backend.",
        "",
    ]
    header = f"{'model':<16} {'k':>4} {'E/N/?':>7} " + " ".join(f"{b:>{width}}" for b in backends)
    lines += [header, "-" * len(header)]
    for g in summary["groups"]:
        v = g["verdicts"]
        cells = []
        for b in backends:
            st = g["backends"][b]
            cell = f"{fmt(st['median_s'])}/{fmt(st['max_s'])}" if st["calls"] else "-"
            cell += f" [{st['unknown']}]" if st["unknown"] else ""
            cell += f" s{st['skipped']}" if st["skipped"] else ""
            cell += f" w{st['wins']}" if st["wins"] else ""
            cell += f" err{st['errors']}" if st["errors"] else ""
            cell += f" !{st['disagree']}" if st["disagree"] else ""
            cells.append(f"{cell:>{width}}")
        ratio = f"{v.get('entailed', 0)}/{v.get('not_entailed', 0)}/{v.get('undecided', 0)}"
        lines.append(f"{g['model']:<16} {g['free']:>4} {ratio:>7} " + " ".join(cells))
    lines += [
        "",
        "all queries: calls run, total/median/max seconds per call, UNKNOWN, skipped, wins, "
        "median construction seconds per instance",
    ]
    for b in backends:
        t = summary["totals"][b]
        lines.append(
            f"  {b:<16} calls {t['calls']:>3}  total {fmt(t['total_s']):>6}  median {fmt(t['median_s']):>6}  "
            f"max {fmt(t['max_s']):>6}  unknown {t['unknown']:>3}  skipped {t['skipped']:>3}  "
            f"wins {t['wins']:>3}  build {fmt(t['build_s_median'])}"
            + (f"  errors {t['error_messages']}" if t["errors"] else "")
        )
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
    p.add_argument(
        "--classes-of-model",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use only test images whose label is one of the model's labels",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=150.0,
        help="seconds one backend may spend on one model (construction + calls); the rest is skipped",
    )
    p.add_argument(
        "--kill-after",
        type=float,
        default=None,
        help="end a call that runs this long past its start (default: 2 x time limit + 10)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--first-case", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--first-query", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument(
        "--build-limit",
        type=float,
        default=120.0,
        help="seconds an oracle construction may take before its instance's queries count as errors",
    )
    args = p.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.plan, args.result, args.first_case, args.first_query)
        return 0

    plan = make_plan(args)
    plan["budget"] = args.budget
    plan["kill_after"] = args.kill_after if args.kill_after is not None else 2 * args.time_limit + 10
    plan["build_limit"] = args.build_limit
    results: dict[str, list[dict]] = {}
    wall: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan))
        for backend in args.backends:
            result_path = Path(tmp) / f"{backend.replace(':', '_')}.jsonl"
            start = time.perf_counter()
            try:
                results[backend] = run_backend(backend, plan, plan_path, result_path)
            except RuntimeError as exc:
                print(f"backend {backend} failed ({exc}); left out", file=sys.stderr)
            wall[backend] = time.perf_counter() - start
            print(f"backend {backend}: {wall[backend]:.1f} s", file=sys.stderr)
    backends = [b for b in args.backends if b in results]
    summary = summarize(plan, results, args.time_limit)
    text = table(summary, backends)
    print(text)
    out = {
        "command": "python benchmarks/oracles.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "models": plan["models"],
        "cases": [
            {k: v for k, v in c.items() if k not in ("image", "queries")}
            | {"queries": [{"id": q["id"], "k": q["k"], "free": q["free"]} for q in c["queries"]]}
            for c in plan["cases"]
        ],
        "settings": {
            "time_limit": args.time_limit,
            "budget_per_backend_and_model": args.budget,
            "kill_after": plan["kill_after"],
            "build_limit": args.build_limit,
            "images": args.images,
            "free": args.free,
            "queries": args.queries,
            "seed": args.seed,
        },
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
