"""The rival split and the incremental per-rival SAT oracle against the combined CP-SAT model.

1. Record: one deletion AXp (index order) with the combined CP-SAT model (``split_rivals=False``,
   the default before the split) behind the fast paths, for ``--record-seconds``; every question
   that reaches the exact oracle is kept (fixed set, verdict, seconds).
2. Hardest questions: the ``--hardest`` slowest recorded ENTAILED questions, each answered from
   scratch by the combined CP-SAT model, by CP-SAT on the one-sided rival split, and by a fresh
   (cold) per-rival SAT oracle.
3. Replay: every recorded question, in order, through one per-rival SAT oracle (warm: its learnt
   clauses carry over, as in a deletion run).

Every answer must equal the recorded verdict (a mismatch is reported and makes the exit status 1).

    python benchmarks/rival_split.py --model mnist10-ternary --index 0 --record-seconds 120 --hardest 5
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist10-ternary", help="shipped model name or .npz path")
    parser.add_argument("--index", type=int, default=0, help="shipped sample image")
    parser.add_argument("--record-seconds", type=float, default=120.0)
    parser.add_argument("--hardest", type=int, default=5)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per replayed question")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rival-split.json"))
    args = parser.parse_args(argv)

    import xsnn
    from xsnn import data
    from xsnn.solvers.axp import DeletionAXp
    from xsnn.solvers.cpsat import CPSATOracle
    from xsnn.solvers.layered import LayeredOracle
    from xsnn.solvers.oracle import EntailmentOracle
    from xsnn.solvers.rivalsat import RivalSATOracle

    class Recorder(EntailmentOracle):
        """Passes every question to ``inner`` and keeps (fixed set, verdict, seconds)."""

        def __init__(self, inner: EntailmentOracle) -> None:
            super().__init__(inner.model, inner.instance, inner.features, inner.target, inner.max_distance)
            self.inner, self.name, self.log = inner, inner.name, []

        def _check(self, fixed, time_limit):
            check = self.inner.check(fixed, time_limit=time_limit)
            self.log.append((fixed, check.verdict, check.seconds))
            return check

    images, _ = data.load_sample()
    model = xsnn.load_model(args.model)
    spikes = model.encode(images[args.index][None])[0]
    recorder = Recorder(CPSATOracle(model, spikes, split_rivals=False))
    with DeletionAXp(LayeredOracle(recorder), time_limit=args.record_seconds) as algorithm:
        axp = algorithm.compute()
    log = [(fixed, verdict, seconds) for fixed, verdict, seconds in recorder.log if verdict.value != "unknown"]
    n_free = len(recorder.features)
    print(
        f"recorded {len(log)} exact questions in {args.record_seconds:.0f} s (AXp status {axp.status.value}, "
        f"{len(axp.features)} features)",
        flush=True,
    )

    mismatches = 0
    hardest = sorted((e for e in log if e[1].value == "entailed"), key=lambda e: -e[2])[: args.hardest]
    rows = []
    for fixed, verdict, recorded in hardest:
        row = {"free": n_free - len(fixed), "recorded_s": round(recorded, 3)}
        for name, make in (
            ("cpsat_combined", lambda: CPSATOracle(model, spikes, split_rivals=False)),
            ("cpsat_split", lambda: CPSATOracle(model, spikes)),
            ("sat_rivals_cold", lambda: RivalSATOracle(model, spikes)),
        ):
            with make() as oracle:
                check = oracle.check(fixed, time_limit=args.time_limit)
            row[name] = round(check.seconds, 3)
            row[name + "_verdict"] = check.verdict.value
            mismatches += check.verdict.value not in (verdict.value, "unknown")
        rows.append(row)
        print(json.dumps(row), flush=True)

    with RivalSATOracle(model, spikes) as warm:
        started = time.perf_counter()
        replay = [warm.check(fixed, time_limit=args.time_limit) for fixed, _, _ in log]
        replay_s = time.perf_counter() - started
    mismatches += sum(c.verdict.value not in (v.value, "unknown") for c, (_, v, _) in zip(replay, log))
    summary = {
        "recorded_questions": len(log),
        "recorded_exact_s": round(sum(s for _, _, s in log), 3),
        "replay_sat_rivals_s": round(replay_s, 3),
        "replay_unknown": sum(c.verdict.value == "unknown" for c in replay),
        "hardest_total": {
            k: round(sum(r[k] for r in rows), 3)
            for k in ("recorded_s", "cpsat_combined", "cpsat_split", "sat_rivals_cold")
        },
        "mismatches": mismatches,
    }
    print(json.dumps(summary), flush=True)
    report = {
        "command": "python benchmarks/rival_split.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.model,
        "index": args.index,
        "record_seconds": args.record_seconds,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "hardest": rows,
        "summary": summary,
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
