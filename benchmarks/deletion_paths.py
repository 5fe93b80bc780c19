"""Where the questions of one deletion AXp go: answers by path and verdict, with their time.

Runs one deletion AXp (index order) on one shipped-sample image, with an exact backend behind
the fast paths (or plain with ``--plain``), under a time limit, and prints how many questions
each path answered, split by verdict, and the seconds spent there. Use it to see which
questions still reach the exact solver.

    python benchmarks/deletion_paths.py --model mnist10-ternary --index 0 --backend sat:minicard --time-limit 120
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist10-ternary", help="shipped model name or .npz path")
    parser.add_argument("--index", type=int, default=0, help="shipped sample image")
    parser.add_argument("--backend", default="sat:minicard")
    parser.add_argument("--plain", action="store_true", help="the exact backend alone (no fast paths)")
    parser.add_argument("--time-limit", type=float, default=120.0)
    args = parser.parse_args(argv)

    import xsnn
    from xsnn import data
    from xsnn.solvers.axp import DeletionAXp
    from xsnn.solvers.backends import make_oracle
    from xsnn.solvers.oracle import EntailmentOracle

    class Recorder(EntailmentOracle):
        """Passes every question to ``inner`` and counts answers by (path, verdict)."""

        def __init__(self, inner: EntailmentOracle) -> None:
            super().__init__(inner.model, inner.instance, inner.features, inner.target, inner.max_distance)
            self.inner = inner
            self.count: collections.Counter = collections.Counter()
            self.seconds: collections.Counter = collections.Counter()

        def _check(self, fixed, time_limit):
            check = self.inner.check(fixed, time_limit=time_limit)
            key = (check.path, check.verdict.value)
            self.count[key] += 1
            self.seconds[key] += check.seconds
            return check

        def close(self) -> None:
            self.inner.close()

    images, _ = data.load_sample()
    model = xsnn.load_model(args.model)
    spikes = model.encode(images[args.index][None])[0]
    start = time.perf_counter()
    recorder = Recorder(make_oracle(model, spikes, backend=args.backend, fast_paths=not args.plain))
    with DeletionAXp(recorder, time_limit=args.time_limit) as algorithm:
        result = algorithm.compute()
    total = time.perf_counter() - start
    rows = [
        {"path": p, "verdict": v, "answers": n, "seconds": round(recorder.seconds[(p, v)], 3)}
        for (p, v), n in sorted(recorder.count.items())
    ]
    for row in rows:
        print(f"{row['path']:>16} {row['verdict']:>13} {row['answers']:6d} {row['seconds']:10.2f} s")
    print(
        json.dumps(
            {
                "model": args.model,
                "index": args.index,
                "backend": args.backend,
                "plain": args.plain,
                "time_limit": args.time_limit,
                "status": result.status.value,
                "size": len(result.features),
                "questions": sum(recorder.count.values()),
                "seconds": round(total, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
