"""Where the time of a deletion AXp goes on a dense binary model: one record per question.

For each image, one deletion AXp with the chosen exact stack and removal order, under a time
limit; every question the algorithm asks is recorded: the number of free features, the verdict,
the path that answered (``bounds``, ``cores``, ``repair``, ``sat-rivals:minicard``, ``cpsat``,
``levels``...), its seconds and, where the level search answered, the rivals it asked about
(seconds, master rounds, outcome) and its counters (master rounds, LP calls and cuts, CP-SAT
calls, reused cuts).

    python benchmarks/binary_profile.py --model mnist159-binary --images 2 --stack default --order index \\
        --time-limit 1500 --out benchmarks/results/binary-profile-default-index.json

Stacks: ``default`` (the explain default: on these dense networks the level search behind the
fast paths), ``rival-sat-cpsat`` (the default of sparse networks, and of every network before
the level search: rival SAT within 0.1 s, then CP-SAT behind the fast paths), ``levels`` (the
level search alone), ``levels-fast`` (the level search behind the fast paths),
``sat-levels-fast`` (rival SAT within 0.1 s, then the level search behind the fast paths),
``plain-sat`` (the causal model's CNF and one incremental SAT solver: plain SAT deletion, the
reference paper's method).
Orders: ``index`` and ``influence`` (:func:`xsnn.solvers.influence.influence_order`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("default", "rival-sat-cpsat", "levels", "levels-fast", "sat-levels-fast", "plain-sat")
ORDERS = ("index", "influence")


def make_stack(name: str, model, spikes):
    """The exact oracle of stack ``name`` for one instance (module docstring)."""
    if name == "default":
        from xsnn.solvers.backends import make_oracle

        return make_oracle(model, spikes)
    if name == "rival-sat-cpsat":
        from xsnn.solvers.backends import rival_sat_stack

        return rival_sat_stack(model, spikes)
    if name in ("levels", "levels-fast", "sat-levels-fast"):
        from xsnn.solvers.levels import level_portfolio

        return level_portfolio(
            model, spikes, fast_paths=name != "levels", sat_seconds=0.1 if name.startswith("sat-") else 0.0
        )
    if name == "plain-sat":
        from xsnn.solvers.sat import SATOracle

        return SATOracle(model, spikes)
    raise ValueError(f"unknown stack {name!r}; use one of {', '.join(STACKS)}")


def make_order(name: str, model, spikes):
    """The removal order ``name`` as the AXp algorithms take it."""
    if name == "index":
        return "index"
    if name == "influence":
        from xsnn.solvers.influence import influence_order

        return influence_order(model, spikes)
    raise ValueError(f"unknown order {name!r}; use one of {', '.join(ORDERS)}")


def level_stage(oracle):
    """The level search inside ``oracle`` (a portfolio's stage, maybe behind the fast paths), if built."""
    from xsnn.solvers.levels import LevelOracle

    for stage in getattr(oracle, "stages", [oracle]):
        stage = getattr(stage, "exact", stage)  # a layered oracle's exact backend
        if isinstance(stage, LevelOracle):
            return stage
    return None


def profile_one(model, spikes, stack: str, order: str, time_limit: float, slow_seconds: float = 1.0) -> dict:
    """One deletion AXp with every question recorded (the free features of those that took at
    least ``slow_seconds``)."""
    from xsnn.solvers.axp import DeletionAXp
    from xsnn.solvers.oracle import EntailmentOracle

    questions: list[dict] = []

    class Recorder(EntailmentOracle):
        """Passes every question to ``inner`` and records it."""

        def __init__(self, inner: EntailmentOracle) -> None:
            super().__init__(inner.model, inner.instance, inner.features, inner.target, inner.max_distance)
            self.inner, self.name = inner, inner.name

        def _check(self, fixed, time_limit):
            levels = level_stage(self.inner)
            before = dict(levels.counters) if levels is not None else None
            check = self.inner.check(fixed, time_limit=time_limit)
            record = {
                "free": len(self.features) - len(fixed),
                "verdict": check.verdict.value,
                "path": check.path,
                "seconds": round(check.seconds, 6),
            }
            if check.seconds >= slow_seconds:  # kept for replays: the free features
                record["free_features"] = sorted(set(range(len(self.features))) - set(fixed))
            levels = level_stage(self.inner)
            if levels is not None and check.path == levels.name:
                record["rivals"] = levels.last_rivals
                before = before or {k: 0 for k in levels.counters}
                record["counters"] = {k: v - before[k] for k, v in levels.counters.items() if v != before[k]}
            questions.append(record)
            return check

        def close(self) -> None:
            self.inner.close()

    start = time.perf_counter()
    order_scores = make_order(order, model, spikes)
    order_seconds = time.perf_counter() - start
    with DeletionAXp(
        Recorder(make_stack(stack, model, spikes)), order=order_scores, time_limit=time_limit
    ) as algorithm:
        result = algorithm.compute()
    return {
        "status": result.status.value,
        "size": len(result.features),
        "features": list(result.features),
        "seconds": round(time.perf_counter() - start, 3),
        "order_seconds": round(order_seconds, 3),
        "questions": questions,
    }


def summary(run: dict) -> dict:
    """Per answering path and verdict: count and seconds; the ENTAILED count; the slowest questions."""
    by_path: dict[str, dict] = {}
    for q in run["questions"]:
        key = f"{q['path']} {q['verdict']}"
        entry = by_path.setdefault(key, {"count": 0, "seconds": 0.0})
        entry["count"] += 1
        entry["seconds"] = round(entry["seconds"] + q["seconds"], 6)
    slowest = sorted(run["questions"], key=lambda q: -q["seconds"])[:10]
    return {
        "questions": len(run["questions"]),
        "entailed": sum(q["verdict"] == "entailed" for q in run["questions"]),
        "by_path": by_path,
        "slowest": [{k: q[k] for k in ("free", "verdict", "path", "seconds")} for q in slowest],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist159-binary")
    parser.add_argument("--images", type=int, nargs="+", default=[2], help="indices in the shipped sample")
    parser.add_argument("--stack", choices=STACKS, default="levels")
    parser.add_argument("--order", choices=ORDERS, default="index")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per AXp")
    parser.add_argument("--out", default=None, help="JSON file for the records (default: print only)")
    args = parser.parse_args(argv)

    import xsnn
    from xsnn import data

    model = xsnn.load_model(args.model)
    images, labels = data.load_sample()
    runs = []
    print(
        f"started {datetime.now().isoformat(timespec='seconds')}; {args.model}, stack {args.stack}, "
        f"order {args.order}, {args.time_limit:g} s per AXp",
        flush=True,
    )
    for index in args.images:
        spikes = model.encode(images[index][None])[0]
        run = profile_one(model, spikes, args.stack, args.order, args.time_limit)
        run = {"image": index, "label": int(labels[index]), **run, "summary": None}
        run["summary"] = summary(run)
        runs.append(run)
        s = run["summary"]
        print(
            f"image {index}: {run['status']}, {run['size']} features, {run['seconds']:.1f} s, "
            f"{s['questions']} questions ({s['entailed']} ENTAILED)",
            flush=True,
        )
        for key, entry in sorted(s["by_path"].items(), key=lambda kv: -kv[1]["seconds"]):
            print(f"    {key:40s} {entry['count']:5d} {entry['seconds']:10.2f} s", flush=True)
        if args.out:
            Path(args.out).write_text(
                json.dumps(
                    {
                        "benchmark": "binary profile",
                        "command": "python benchmarks/binary_profile.py "
                        + " ".join(sys.argv[1:] if argv is None else argv),
                        "model": args.model,
                        "stack": args.stack,
                        "order": args.order,
                        "time_limit": args.time_limit,
                        "python": platform.python_version(),
                        "runs": runs,
                    },
                    indent=None,
                )
                + "\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
