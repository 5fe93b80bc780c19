"""Encoding sizes and exact-check times, per cardinality encoding and per solver.

For each model (the shipped ``xsnn/models/*.npz``; else ``--models`` files; else random
784-H-10 binary models with ``H`` in ``--hidden``, ``T = --steps``, static coding) and the
first image of the shipped MNIST sample (target = its prediction), for every CNF
encoding and both z3 variants:

- formula size (variables, clauses, native AtMost constraints; z3: assertions) and build time
  (the encoder's own time; the formula is built once and loaded into each solver, ``load s``);
- the time of one entailment check with ALL features fixed and with NONE fixed, per
  solver (CaDiCaL 1.9.5 and Glucose 4 for clausal encodings; Minicard and Gluecard 4 for
  the native one; z3 for SMT), each with a time limit (``--time-limit``);
- a deletion workload, the same queries for every backend: the first ``--trace-steps``
  questions of a deletion AXp in pixel-index order (free pixel ``i``; keep it fixed again
  unless the answer is ENTAILED), as asked by a reference oracle (native + Minicard, the
  fastest here; an UNKNOWN counts as "keep"). Every backend answers those fixed sets, each
  within ``--query-limit`` seconds: total time, verdict counts, worst call.

Each (model, encoding) runs in a subprocess with a wall-clock limit (``--build-limit`` plus the
checks) and an address-space cap (``--max-memory-gb``); a worker that times out or fails still
reports what it had measured (sizes, build time, finished checks). A unary encoding (``UNARY``)
whose size, estimated from the counters of a few sampled neurons (:func:`estimate_clauses`),
exceeds ``--max-clauses`` is skipped (reported with the estimate). Only ``--trace-encodings``
answer the deletion workload. The machine is shared: times are wall-clock and noisy; compare
rows of the same run.

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
    return model.encode(images[image : image + 1])[0]


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


def _limit_memory(gigabytes: float) -> None:
    """Cap the worker's address space so an oversized encoding fails (MemoryError) instead of
    exhausting the shared machine."""
    if gigabytes <= 0:
        return
    try:
        import resource

        limit = int(gigabytes * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without RLIMIT_AS
        pass


def _partial(result: dict) -> None:
    """Report what is known so far on stderr (the parent reads it back if the worker times out)."""
    print(json.dumps({"partial": result}), file=sys.stderr, flush=True)


def worker(spec: dict) -> dict:
    """Build one encoding for one model and time the checks (runs in a subprocess).

    The formula is built ONCE (``build_seconds`` is the encoder's own time) and loaded into each
    solver (``load_seconds[solver]``: oracle construction with the prebuilt formula).
    """
    import xsnn.solvers.sat as sat_module
    from xsnn.encoders.cnf import encode_cnf
    from xsnn.model import forward, load_model_file
    from xsnn.solvers.sat import SATOracle
    from xsnn.solvers.smt import SMTOracle

    _limit_memory(spec.get("max_memory_gb", 0))
    model = load_model_file(spec["model"])
    x = _instance(model, spec["image"])
    trace = json.loads(Path(spec["trace"]).read_text())
    target = int(forward(model, x).prediction[0])
    encoding = spec["encoding"]
    result: dict = {"target": target, "load_seconds": {}, "checks": {}}
    built: dict = {}

    def cached_encode(*args, **kwargs):  # one build shared by the solvers
        if "cnf" not in built:
            built["cnf"] = encode_cnf(*args, **kwargs)
        return built["cnf"]

    sat_module.encode_cnf = cached_encode
    for solver in _solvers(encoding):
        start = time.perf_counter()
        if encoding in ("lia", "pb"):
            oracle = SMTOracle(model, x, variant=encoding)
        else:
            oracle = SATOracle(model, x, solver=solver, encoding=encoding)
        setup = time.perf_counter() - start
        with oracle:
            enc = oracle.encoding
            if "build_seconds" not in result:
                result["build_seconds"] = round(enc.build_seconds, 3)
                if encoding in ("lia", "pb"):
                    result.update(assertions=len(enc.assertions))
                else:
                    result.update(vars=enc.n_vars, clauses=enc.n_clauses, atmosts=enc.n_atmosts)
                load = setup - enc.build_seconds
            else:
                load = setup
            result["load_seconds"][solver] = round(max(load, 0.0), 3)
            _partial(result)
            checks = {}
            result["checks"][solver] = checks
            for name, fixed in (("all", range(model.n_inputs)), ("none", [])):
                check = oracle.check(fixed, time_limit=spec["time_limit"])
                checks[name] = {"verdict": check.verdict.value, "seconds": round(check.seconds, 3)}
                _partial(result)
            verdicts, seconds = [], []
            for fixed in trace if spec["with_trace"] else []:
                check = oracle.check(fixed, time_limit=spec["query_limit"])
                verdicts.append(check.verdict.value)
                seconds.append(round(check.seconds, 3))
            if spec["with_trace"] and trace:
                checks["trace"] = {"verdicts": verdicts, "seconds": seconds}
        print(json.dumps({"progress": f"{encoding}/{solver} done"}), file=sys.stderr, flush=True)
    return result


def estimate_clauses(model, x: np.ndarray, encoding: str, samples: int = 2) -> int:
    """Estimated clauses of ``encoding`` for ``model``, from the counters of a few sampled neurons.

    Builds, with the real cardinality encoding, the counter(s) of ``samples`` neurons per layer (first layer
    under a static coding: one counter with the neuron's breakpoints, as the encoder does; other
    layers: one bound per step) and of ``samples`` rival classes' goal counters, and scales them by
    the number of neurons / rivals. Cheap compared with building the whole formula.
    """
    from xsnn.causal import CausalModel
    from xsnn.encoders.cardinality import ClauseSink, make_encoding
    from xsnn.encoders.cnf import _fold
    from xsnn.encoders.common import drive_table
    from xsnn.model import forward

    causal = CausalModel(model)
    n_steps = model.n_steps
    total = 0.0
    fan_in = model.n_inputs
    for layer, size in enumerate(model.layer_sizes):
        picks = sorted({int(j) for j in np.linspace(0, size - 1, min(samples, size))})
        built = []
        for j in picks:
            dyn = causal.neuron(layer, j)
            sink = ClauseSink(native=(encoding == "native"))
            card = make_encoding(encoding, sink)
            folded, offset = _fold(sink, dyn.weights, np.array([sink.var() for _ in range(fan_in)]))
            if not folded:
                built.append(0)
                continue
            count = card.count(folded)
            if layer == 0 and model.coding.name == "static":
                breaks, _ = drive_table(dyn, len(folded), offset, n_steps)
                if breaks:
                    card.reify(count, breaks)
            else:
                for _ in range(n_steps):
                    card.reify(count, [max(1, dyn.threshold - offset)])
            built.append(len(sink.clauses))
        total += float(np.mean(built)) * size
        fan_in = size
    readout = np.asarray(model.readout, dtype=np.int64)
    target = int(forward(model, x).prediction[0])
    rivals = [c for c in range(readout.shape[0]) if c != target]
    built = []
    for c in rivals[:samples]:
        sink = ClauseSink(native=(encoding == "native"))
        backend = make_encoding(encoding, sink)
        weights = np.tile(readout[c] - readout[target], n_steps)
        folded, _ = _fold(sink, weights, np.array([sink.var() for _ in range(len(weights))]))
        if folded:
            backend.require_geq(card.count(folded), max(1, len(folded) // 2), guard=sink.var())
        built.append(len(sink.clauses))
    if built:
        total += float(np.mean(built)) * len(rivals)
    return int(total)


def _random_models(hidden: list[int], steps: int, folder: Path) -> list[Path]:
    from xsnn.model import random_model, save_model

    paths = []
    for h in hidden:
        rng = np.random.default_rng(h)
        model = random_model(rng, [h], 784, 10, n_steps=steps, max_threshold=8)
        model = type(model)(
            weights=model.weights,
            thresholds=model.thresholds,
            readout=model.readout,
            weight_kind=model.weight_kind,
            reset=model.reset,
            n_steps=model.n_steps,
            coding=model.coding,
            labels=model.labels,
            input_shape=(28, 28),
            info={"name": f"random-784-{h}-10"},
        )
        path = folder / f"random-784-{h}-10-T{steps}.npz"
        save_model(model, path)
        paths.append(path)
    return paths


def _load_average() -> list[float] | None:
    try:
        import os

        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - platform without getloadavg
        return None


def _versions() -> dict:
    import pysat
    import z3

    return {"python-sat": getattr(pysat, "__version__", "?"), "z3": z3.get_version_string()}


def _last_partial(stderr: str) -> dict:
    """The last partial result a worker reported on stderr (sizes, build time, finished checks)."""
    for line in reversed(stderr.strip().splitlines()):
        if line.startswith('{"partial"'):
            try:
                return json.loads(line)["partial"]
            except (ValueError, KeyError):
                return {}
    return {}


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
    head = [
        "model",
        "encoding",
        "solver",
        "vars",
        "clauses",
        "atmost",
        "build s",
        "load s",
        "all fixed",
        "none fixed",
        "trace s",
        "E/N/timeout",
        "worst s",
        "status",
    ]
    lines = [head]
    for r in rows:
        size = [str(r.get("vars", r.get("assertions", "-"))), str(r.get("clauses", "-")), str(r.get("atmosts", "-"))]
        if r.get("encoding") in ("lia", "pb"):
            size = [f"{r.get('assertions', '-')} asserts", "-", "-"]
        checks = dict(r.get("checks") or {})
        if not r.get("status", "ok").startswith("skipped"):
            for solver in _solvers(r["encoding"]):
                checks.setdefault(solver, {})  # a solver the worker did not reach
        for solver, c in (checks or {None: {}}).items():
            lines.append(
                [
                    r["model"],
                    r["encoding"],
                    solver or "-",
                    *size,
                    f"{r['build_seconds']:.2f}" if "build_seconds" in r else "-",
                    f"{r['load_seconds'][solver]:.2f}" if solver in r.get("load_seconds", {}) else "-",
                    _fmt_check(c.get("all")),
                    _fmt_check(c.get("none")),
                    *_fmt_trace(c.get("trace")),
                    r.get("status", "ok"),
                ]
            )
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
    parser.add_argument(
        "--trace-encodings",
        nargs="*",
        default=["native", "adder", "lia", "pb"],
        help="encodings that also answer the deletion workload (the others: all/none only)",
    )
    parser.add_argument("--build-limit", type=float, default=240.0, help="seconds to build one encoding")
    parser.add_argument(
        "--max-clauses", type=float, default=2e7, help="skip a unary encoding whose estimated size is larger (clauses)"
    )
    parser.add_argument(
        "--max-memory-gb",
        type=float,
        default=8.0,
        help="address-space cap of each worker (0: none); an encoding over it fails",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "encode"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    from xsnn.encoders.cnf import ENCODINGS
    from xsnn.model import load_model_file, shipped_model_dir

    run_start, load_start = time.perf_counter(), _load_average()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.models:
        paths = [Path(p) for p in args.models]
    else:
        paths = sorted(shipped_model_dir().glob("*.npz"))
        if not paths:
            paths = _random_models(args.hidden, args.steps, Path(tempfile.mkdtemp(prefix="xsnn-encode-")))
    models = [(load_model_file(p), p) for p in paths]
    encodings = args.encodings or [*ENCODINGS, "lia", "pb"]
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="xsnn-encode-trace-"))
    for model, path in models:
        name = model.info.get("name", path.stem)
        start = time.perf_counter()
        trace = deletion_trace(model, _instance(model, args.image), args.trace_steps, args.query_limit)
        trace_file = work / f"{path.stem}.json"
        trace_file.write_text(json.dumps(trace))
        print(
            f"{name}: reference deletion trace of {len(trace)} steps in {time.perf_counter() - start:.1f}s", flush=True
        )
        for encoding in encodings:
            row = {"model": name, "model_file": str(path), "describe": model.describe(), "encoding": encoding}
            if encoding in UNARY:
                row["estimated_clauses"] = estimate = estimate_clauses(model, _instance(model, args.image), encoding)
                if estimate > args.max_clauses:
                    row["status"] = (
                        f"skipped: ~{estimate / 1e6:.0f}M clauses estimated (> --max-clauses "
                        f"{args.max_clauses / 1e6:g}M)"
                    )
                    rows.append(row)
                    print(row["model"], encoding, row["status"], flush=True)
                    continue
            spec = {
                "model": str(path),
                "image": args.image,
                "encoding": encoding,
                "time_limit": args.time_limit,
                "query_limit": args.query_limit,
                "trace": str(trace_file),
                "max_memory_gb": args.max_memory_gb,
                "with_trace": encoding in args.trace_encodings,
            }
            n_checks = 2 * (2 * args.time_limit + spec["with_trace"] * len(trace) * args.query_limit) * 1.5
            wall = args.build_limit + n_checks + 60
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    timeout=wall,
                    cwd=ROOT,
                )
                if proc.returncode != 0:
                    lines = proc.stderr.strip().splitlines()
                    row.update(_last_partial(proc.stderr))
                    row["status"] = f"failed: {lines[-1] if lines else proc.returncode}"
                else:
                    row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            except subprocess.TimeoutExpired as exc:
                err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
                row.update(_last_partial(err))
                row["status"] = f"timeout (build + checks > {wall:.0f}s)"
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {
        "command": " ".join([Path(sys.executable).name, "benchmarks/encode.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "time_limit": args.time_limit,
        "query_limit": args.query_limit,
        "trace_steps": args.trace_steps,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "max_clauses": args.max_clauses,
        "wall_seconds": round(time.perf_counter() - run_start, 1),
        "load_average_start": load_start,
        "load_average_end": _load_average(),
        "versions": _versions(),
    }
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    text = table(rows)
    out.with_suffix(".txt").write_text(f"# {meta['command']}  ({meta['date']})\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
