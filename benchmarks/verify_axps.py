"""Cross-backend verification of AXp certificates on the shipped models.

For each model and each of the first N sample images: compute a deletion AXp (index order)
with one exact backend behind the fast paths, then re-check its certificate with a *different*
exact backend (:func:`xsnn.solvers.certificate.verify`): the sufficiency claim (ENTAILED on the
final set) is re-decided, and every minimality witness is re-run through the reference forward.
An AXp that hit its time limit is still sufficient (status ``timeout``); its certificate holds
the sufficiency claim and the witnesses of the features proven necessary so far, and is
verified the same way.

    python benchmarks/verify_axps.py --images 100 --time-limit 60 --out benchmarks/results/verify.json

With ``--max-distance k`` the AXps are distance-restricted (the certificate records ``k``, and
the verifier re-decides each claim under the same bound).

Reports per model: AXps, complete ones, certificates verified, undecided ones (the verifier ran
out of time on a claim: neither confirmed nor refuted), failures (a refuted claim or an invalid
witness), and the re-check time. The exit status is 1 when there is a failure or an undecided
re-check.
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
    parser.add_argument(
        "--models", nargs="+", default=None, help="shipped model names or .npz paths (default: the default model)"
    )
    parser.add_argument("--images", type=int, default=100, help="first N sample images of each model's classes")
    parser.add_argument("--skip", type=int, default=0, help="skip the first K of those images (to split a run)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="full MNIST (IDX files): take the first N *test* images of each model's classes "
        "from there instead of the shipped sample",
    )
    parser.add_argument("--order", default="index", help="removal order of the AXps (explain's order)")
    parser.add_argument("--backend", default="portfolio", help="backend that finds the AXps")
    parser.add_argument("--verifier", default="smt", help="backend that re-checks them (must differ)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per AXp")
    parser.add_argument("--check-limit", type=float, default=300.0, help="seconds for the whole re-check of one AXp")
    parser.add_argument("--budget", type=float, default=None, help="stop starting AXps after this many seconds")
    parser.add_argument(
        "--max-distance",
        type=int,
        default=None,
        help="distance-restricted AXps (valid within this many changed features)",
    )
    parser.add_argument("--partial", default=None, help="JSON-lines file each row is appended to as it is made")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "verify.json"))
    args = parser.parse_args(argv)
    if args.backend.split(":")[0] == args.verifier.split(":")[0]:
        parser.error("--verifier must be a different backend kind than --backend")

    import numpy as np

    import xsnn
    from xsnn import data
    from xsnn.api import explain
    from xsnn.solvers.backends import exact_oracle_factory
    from xsnn.solvers.certificate import verify

    if args.models is None:
        from xsnn.model import DEFAULT_MODEL

        args.models = [DEFAULT_MODEL]
    images, labels = data.load_mnist("test", args.data_dir) if args.data_dir else data.load_sample()
    verifier = exact_oracle_factory(args.verifier)
    started = time.time()
    rows = []
    for name in args.models:
        model = xsnn.load_model(name)
        keep = np.isin(labels, np.asarray(model.labels))
        chosen = np.flatnonzero(keep)[args.skip : args.skip + args.images]
        for index in chosen.tolist():
            if args.budget is not None and time.time() - started > args.budget:
                break
            e = explain(
                model,
                images[index],
                backend=args.backend,
                time_limit=args.time_limit,
                max_distance=args.max_distance,
                order=args.order,
            )
            t = time.perf_counter()
            report = verify(e.proof, verifier, time_limit=args.check_limit)
            row = {
                "model": name,
                "image": index,
                "max_distance": args.max_distance,
                "status": e.status,
                "size": e.size,
                "axp_seconds": round(e.seconds, 3),
                "verify_seconds": round(time.perf_counter() - t, 3),
                "ok": report.ok,
                "problems": list(report.problems)[:5],
                "witnesses_checked": len(e.proof.witnesses),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.partial:
                Path(args.partial).parent.mkdir(parents=True, exist_ok=True)
                with open(args.partial, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
    summary = {}
    for name in args.models:
        mine = [r for r in rows if r["model"] == name]
        undecided = [r for r in mine if not r["ok"] and all("could not decide" in p for p in r["problems"])]
        summary[name] = {
            "axps": len(mine),
            "complete": sum(r["status"] == "complete" for r in mine),
            "verified_ok": sum(r["ok"] for r in mine),
            "undecided": len(undecided),  # the verifier ran out of time: neither confirmed nor refuted
            "failures": sum(not r["ok"] for r in mine) - len(undecided),
            "witnesses_checked": sum(r["witnesses_checked"] for r in mine),
        }
    out = {
        "command": "python benchmarks/verify_axps.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "summary": summary,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    for name, s in summary.items():
        print(
            f"{name}: {s['axps']} AXps ({s['complete']} complete), {s['verified_ok']} verified, "
            f"{s['undecided']} undecided, {s['failures']} failures, {s['witnesses_checked']} witnesses replayed"
        )
    return 0 if all(s["failures"] == 0 and s["undecided"] == 0 for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
