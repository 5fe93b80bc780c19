"""Encoding sizes and exact-check times, per cardinality encoding and per solver.

For each model (the shipped ``xsnn/models/*.npz``; else ``--models`` files; else random
784-H-10 binary models with ``H`` in ``--hidden``, ``T = --steps``, static coding) and the
first image of the shipped MNIST sample (target = its prediction), for every CNF
encoding and both z3 variants:

- formula size (variables, clauses, native AtMost constraints) and build time;
- the time of one entailment check with ALL features fixed and with NONE fixed, per
  solver (CaDiCaL 1.9.5 and Glucose 4 for clausal encodings; Minicard and Gluecard 4 for
  the native one; z3 for SMT), each with a time limit (``--time-limit``);
- a deletion workload, the same queries for every backend: the first ``--trace-steps``
  questions of a deletion AXp in pixel-index order (free pixel ``i``; keep it fixed again
  unless the answer is ENTAILED), as asked by a reference oracle (native + Minicard, the
  fastest here; an UNKNOWN counts as "keep"). Every backend answers those fixed sets, each
  within ``--query-limit`` seconds: total time, verdict counts, worst call.

Each (model, encoding) runs in a subprocess with a wall-clock limit (``--build-limit`` plus the
checks); unary encodings whose size, scaled linearly in H from a smaller model, exceeds
``--max-clauses`` are skipped (reported with the reason). Only ``--trace-encodings`` answer the
deletion workload (the unary encodings are millions of clauses at H = 32 already). The machine is shared: times are
wall-clock and noisy; compare rows of the same run.

    python benchmarks/encode.py                   # writes benchmarks/results/encode.json and .txt
    python benchmarks/encode.py --models a.npz b.npz --time-limit 30
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
UNARY = ("totalizer", "seqcounter", "sortnetwrk", "cardnetwrk", "mtotalizer", "kmtotalizer")


def _solvers(encoding: str) -> list[str]:
    if encoding == "native":
        return ["minicard", "gluecard4"]
    if encoding in ("lia", "pb"):
        return ["z3"]
    return ["cadical195", "glucose4"]


def _instance(model, image: int):
    from xsnn.data import load_sample

    images, _ = load_sample()
    return model.encode(images[image:image + 1])[0]


def deletion_trace(model, x: np.ndarray, steps: int, limit: float) -> list[list[int]]:
    """The fixed sets asked by the first ``steps`` deletion steps (index order), by native + Minicard."""
    from xsnn.solvers.oracle import Verdict
    from xsnn.solvers.sat import SATOracle

    fixed = set(range(model.n_inputs))
    trace = []
    with SATOracle(model, x, solver="minicard", encoding="native") as oracle:
        for i in range(min(steps, model.n_inputs)):
            fixed.discard(i)
            trace.append(sorted(fixed))
            if oracle.check(fixed, time_limit=limit).verdict is not Verdict.ENTAILED:
                fixed.add(i)
    return trace


def worker(spec: dict) -> dict:
    """Build one encoding for one model and time the checks (runs in a subprocess)."""
    from xsnn.model import forward, load_model_file
    from xsnn.solvers.sat import SATOracle
    from xsnn.solvers.smt import SMTOracle

    model = load_model_file(spec["model"])
    x = _instance(model, spec["image"])
    trace = json.loads(Path(spec["trace"]).read_text())
    target = int(forward(model, x).prediction[0])
    encoding = spec["encoding"]
    result: dict = {"target": target, "checks": {}}
    for solver in _solvers(encoding):
        start = time.perf_counter()
        if encoding in ("lia", "pb"):
            oracle = SMTOracle(model, x, variant=encoding)
        else:
            oracle = SATOracle(model, x, solver=solver, encoding=encoding)
        build = time.perf_counter() - start
        with oracle:
            if "build_seconds" not in result:
                result["build_seconds"] = round(build, 3)
                enc = oracle.encoding
                if encoding in ("lia", "pb"):
                    result.update(assertions=len(enc.assertions))
                else:
                    result.update(vars=enc.n_vars, clauses=enc.n_clauses, atmosts=enc.n_atmosts)
            checks = {}
            for name, fixed in (("all", range(model.n_inputs)), ("none", [])):
                check = oracle.check(fixed, time_limit=spec["time_limit"])
                checks[name] = {"verdict": check.verdict.value, "seconds": round(check.seconds, 3)}
            verdicts, seconds = [], []
            for fixed in (trace if spec["with_trace"] else []):
                check = oracle.check(fixed, time_limit=spec["query_limit"])
                verdicts.append(check.verdict.value)
                seconds.append(round(check.seconds, 3))
            if spec["with_trace"]:
                checks["trace"] = {"verdicts": verdicts, "seconds": seconds}
            result["checks"][solver] = checks
        print(json.dumps({"progress": f"{encoding}/{solver} done"}), file=sys.stderr, flush=True)
    return result


def _random_models(hidden: list[int], steps: int, folder: Path) -> list[Path]:
    from xsnn.model import random_model, save_model

    paths = []
    for h in hidden:
        rng = np.random.default_rng(h)
        model = random_model(rng, [h], 784, 10, n_steps=steps, max_threshold=8)
        model = type(model)(weights=model.weights, thresholds=model.thresholds, readout=model.readout,
                            weight_kind=model.weight_kind, reset=model.reset, n_steps=model.n_steps,
                            coding=model.coding, labels=model.labels, input_shape=(28, 28),
                            info={"name": f"random-784-{h}-10"})
        path = folder / f"random-784-{h}-10-T{steps}.npz"
        save_model(model, path)
        paths.append(path)
    return paths


def _fmt_check(check: dict | None) -> str:
    if check is None:
        return "-"
    v = {"entailed": "E", "not_entailed": "N", "unknown": "timeout"}[check["verdict"]]
    return f"{check['seconds']:.2f}s {v}" if v != "timeout" else f">{check['seconds']:.0f}s"


def _fmt_trace(trace: dict | None) -> list[str]:
    if not trace:
        return ["-", "-", "-"]
    v = trace["verdicts"]
    counts = f"{v.count('entailed')}/{v.count('not_entailed')}/{v.count('unknown')}"
    return [f"{sum(trace['seconds']):.1f}", counts, f"{max(trace['seconds']):.2f}"]


def table(rows: list[dict]) -> str:
    head = ["model", "encoding", "solver", "vars", "clauses", "atmost", "build s", "all fixed", "none fixed",
            "trace s", "E/N/timeout", "worst s", "status"]
    lines = [head]
    for r in rows:
        size = [str(r.get("vars", r.get("assertions", "-"))), str(r.get("clauses", "-")), str(r.get("atmosts", "-"))]
        if r.get("encoding") in ("lia", "pb"):
            size = [f"{r.get('assertions', '-')} asserts", "-", "-"]
        checks = r.get("checks") or {None: {}}
        for solver, c in checks.items():
            lines.append([r["model"], r["encoding"], solver or "-", *size,
                          f"{r['build_seconds']:.2f}" if "build_seconds" in r else "-",
                          _fmt_check(c.get("all")), _fmt_check(c.get("none")), *_fmt_trace(c.get("trace")),
                          r.get("status", "ok")])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None, help="model files (default: shipped, else random)")
    parser.add_argument("--hidden", nargs="*", type=int, default=[32, 128])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--encodings", nargs="*", default=None)
    parser.add_argument("--image", type=int, default=0, help="index into the shipped MNIST sample")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per all/none check")
    parser.add_argument("--query-limit", type=float, default=10.0, help="seconds per deletion-like query")
    parser.add_argument("--trace-steps", type=int, default=20, help="deletion steps in the shared workload")
    parser.add_argument("--trace-encodings", nargs="*", default=["native", "adder", "lia", "pb"],
                        help="encodings that also answer the deletion workload (the others: all/none only)")
    parser.add_argument("--build-limit", type=float, default=240.0, help="seconds to build one encoding")
    parser.add_argument("--max-clauses", type=float, default=2e7)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "encode"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    from xsnn.encoders.cnf import ENCODINGS
    from xsnn.model import load_model_file, shipped_model_dir

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.models:
        paths = [Path(p) for p in args.models]
    else:
        paths = sorted(shipped_model_dir().glob("*.npz"))
        if not paths:
            paths = _random_models(args.hidden, args.steps, Path(tempfile.mkdtemp(prefix="xsnn-encode-")))
    models = sorted(((load_model_file(p), p) for p in paths), key=lambda mp: sum(mp[0].layer_sizes))
    encodings = args.encodings or [*ENCODINGS, "lia", "pb"]
    rows: list[dict] = []
    clauses_per_neuron: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="xsnn-encode-trace-"))
    for model, path in models:
        name = model.info.get("name", path.stem)
        neurons = sum(model.layer_sizes)
        start = time.perf_counter()
        trace = deletion_trace(model, _instance(model, args.image), args.trace_steps, args.query_limit)
        trace_file = work / f"{path.stem}.json"
        trace_file.write_text(json.dumps(trace))
        print(f"{name}: reference deletion trace of {len(trace)} steps in {time.perf_counter() - start:.1f}s",
              flush=True)
        for encoding in encodings:
            row = {"model": name, "model_file": str(path), "describe": model.describe(), "encoding": encoding}
            estimate = clauses_per_neuron.get(encoding, 0.0) * neurons
            if encoding in UNARY and estimate > args.max_clauses:
                row["status"] = f"skipped: ~{estimate / 1e6:.0f}M clauses (scaled from a smaller model)"
                rows.append(row)
                print(row["model"], encoding, row["status"], flush=True)
                continue
            spec = {"model": str(path), "image": args.image, "encoding": encoding, "time_limit": args.time_limit,
                    "query_limit": args.query_limit, "trace": str(trace_file),
                    "with_trace": encoding in args.trace_encodings}
            n_checks = 2 * (2 * args.time_limit + spec["with_trace"] * len(trace) * args.query_limit) * 1.5
            try:
                proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                                      text=True, timeout=args.build_limit + n_checks + 60, cwd=ROOT)
                if proc.returncode != 0:
                    row["status"] = f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
                else:
                    row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            except subprocess.TimeoutExpired:
                row["status"] = f"timeout (build + checks > {args.build_limit + n_checks + 60:.0f}s)"
            if "clauses" in row:
                clauses_per_neuron[encoding] = max(clauses_per_neuron.get(encoding, 0.0), row["clauses"] / neurons)
            elif encoding in UNARY and "timeout" in row.get("status", ""):
                clauses_per_neuron[encoding] = float("inf")
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {"command": " ".join([Path(sys.executable).name, "benchmarks/encode.py", *(argv or sys.argv[1:])]),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "python": platform.python_version(),
            "time_limit": args.time_limit, "query_limit": args.query_limit, "trace_steps": args.trace_steps,
            "date": time.strftime("%Y-%m-%d %H:%M")}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    text = table(rows)
    out.with_suffix(".txt").write_text(f"# {meta['command']}  ({meta['date']})\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
