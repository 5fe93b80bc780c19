"""Explanation benchmark: time, exact-oracle calls and size of subset-minimal AXps.

Usage::

    python benchmarks/explain.py [--models NAME_OR_PATH ...] [--images 200] [--plain-images 10]
                                 [--plain-time-limit 300] [--fast-time-limit S]
                                 [--configs sat-fast,sat-plain,smt-plain] [--jobs 1] [--budget S]
                                 [--out benchmarks/results/explain.json]

What is measured. For each model and each of the first ``--images`` images of the MNIST test
set (the sample shipped with xsnn, :func:`xsnn.data.load_sample`), one deletion AXp of the
model's prediction, in index order, computed by :func:`xsnn.explain` under each
configuration. Models trained on a subset of the digits (e.g. 1/5/9) explain only the images
among those whose label is one of their classes. Plain configurations (exact oracle alone)
run only on the first ``--plain-images`` of a model's images, with the per-AXp limit
``--plain-time-limit``; a plain AXp that runs out of time is reported with its time as a
lower bound (``>=``), and every ratio that uses it is a lower bound too.

Configurations (``--configs``): ``<backend>-<fast|plain>[-cores]``, where ``backend`` is any
backend name of :func:`xsnn.solvers.backends.exact_oracle_factory` (``portfolio``, ``sat``,
``sat:glucose4``, ``sat-rivals``, ``smt``, ``smt:pb``, ``milp``, ``cpsat``), ``fast`` puts the
sound fast paths (witness cache, bounds, look-ahead, attack, search, core cache) in front of
it (for ``portfolio``: in front of its CP-SAT stage), ``plain`` asks the exact oracle alone,
and ``-cores`` lets ENTAILED cores drop several features at once.

Per AXp the script records wall time of the whole ``explain`` call (oracle construction
included), process CPU time (``time.process_time``), the load average before and after (the
machine may be shared), the AXp size and status, oracle answers by path and, for fast
configurations, the time spent *inside* each fast-path component (bound propagation,
exhaustive enumeration, attack, witness cache, exact oracle, witness verification), measured
by wrapping those methods with timers, whether the component answered or not.

Every task (one model, configuration and image) runs in a fresh worker process forked from a
server that has imported numpy, python-sat and z3 (so backends whose native libraries clash,
HiGHS and OR-Tools, never share a process, and one AXp cannot slow the next through solver
memory). ``--jobs`` workers run at once; per-AXp CPU time is the fair figure when the
machine is loaded. ``--budget`` stops starting new tasks after that many seconds of wall time;
tasks are started in priority order (for each model the plain subset under every
configuration first, then the other images for the fast configurations, round-robin over the
models), so a cut run still holds comparable data.

Results: ``--out`` (JSON, rewritten after every finished task) and the same path with
``.txt`` (the tables).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

# One BLAS thread per process, set before numpy is first imported (here and in the worker
# server, which inherits the environment): "per AXp on one core", and multi-threaded OpenBLAS
# made the attack's small float32 products about 6x slower on the loaded 2-core machine.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402 -- after the thread settings above

RESULTS = Path(__file__).resolve().parent / "results" / "explain.json"
DEFAULT_CONFIGS = ("sat-fast", "sat-plain", "smt-plain")
# fast answer paths (the older names "search", "repair" and "fast-paths" appear in older result files)
FAST_PATHS = (
    "cache",
    "bounds",
    "exhaustive",
    "attack",
    "branch-and-bound",
    "lookahead",
    "cores",
    "rival-repair",
    "rival-bounds",
    "rival-cores",
    "search",
    "repair",
    "fast-paths",
)
PRELOAD = ["numpy", "pysat.solvers", "pysat.card", "z3", "xsnn.api", "xsnn.solvers.sat", "xsnn.solvers.smt"]


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    """One way of computing an AXp: exact backend, fast paths or not, cores or not."""

    name: str
    backend: str
    fast_paths: bool
    use_cores: bool

    @property
    def plain(self) -> bool:
        return not self.fast_paths


def parse_config(name: str) -> Config:
    """``sat-fast`` / ``smt-plain`` / ``sat:glucose4-fast-cores`` / ``sat-rivals-plain`` -> :class:`Config`."""
    name = name.strip()
    use_cores = name.endswith("-cores")
    base = name[: -len("-cores")] if use_cores else name
    backend, _, mode = base.rpartition("-")
    if mode not in ("fast", "plain") or not backend:
        raise ValueError(f"configuration {name!r} is not <backend>-<fast|plain>[-cores] (e.g. sat-fast, smt-plain)")
    from xsnn.solvers.backends import exact_oracle_factory

    exact_oracle_factory(backend)  # raises ValueError for an unknown backend
    return Config(name, backend, mode == "fast", use_cores)


# --------------------------------------------------------------------------- worker side


class _Profile:
    """Wall time and counts inside the fast-path components, by class-level method wrappers.

    Components: ``cache.find``/``cache.add`` (:class:`WitnessCache`), ``bounds``
    (:meth:`BoundPropagator.entailed`: calls, and how many proved ENTAILED), ``exhaustive``
    (:meth:`CounterexampleSearch.exhaust`: calls, decided), ``attack``
    (:meth:`CounterexampleSearch.search`: calls, found; seconds split into found / failed),
    ``exact`` (``check`` of any non-layered oracle, witness verification included), and
    ``verify`` (:func:`xsnn.solvers.oracle.verify_witness` called by ``check``). A component
    that the installed code lacks is skipped and listed under ``missing``.
    """

    def __init__(self) -> None:
        self.data: dict[str, dict[str, float]] = {}
        self.missing: list[str] = []
        self._undo: list[tuple[object, str, object]] = []

    def _add(self, key: str, seconds: float, hit: bool) -> None:
        entry = self.data.setdefault(key, {"calls": 0, "seconds": 0.0, "hits": 0, "hit_seconds": 0.0})
        entry["calls"] += 1
        entry["seconds"] += seconds
        if hit:
            entry["hits"] += 1
            entry["hit_seconds"] += seconds

    def _wrap(self, owner: object, attr: str, key: str, hit=lambda result, self_: result is not None) -> None:
        original = getattr(owner, attr, None)
        if original is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
            return
        profile = self

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = original(*args, **kwargs)
            profile._add(key, time.perf_counter() - start, bool(hit(result, args[0] if args else None)))
            return result

        self._undo.append((owner, attr, original))
        setattr(owner, attr, wrapper)

    def install(self) -> _Profile:
        from xsnn.solvers import oracle as oracle_module
        from xsnn.solvers.attack import CounterexampleSearch
        from xsnn.solvers.bounds import BoundPropagator
        from xsnn.solvers.layered import LayeredOracle
        from xsnn.solvers.witnesses import WitnessCache

        self._wrap(WitnessCache, "find", "cache.find")
        self._wrap(WitnessCache, "add", "cache.add", hit=lambda r, s: True)
        self._wrap(BoundPropagator, "entailed", "bounds", hit=lambda r, s: bool(r))
        self._wrap(CounterexampleSearch, "exhaust", "exhaustive")
        self._wrap(CounterexampleSearch, "search", "attack", hit=lambda r, s: bool(getattr(r, "found", False)))
        self._wrap(oracle_module, "verify_witness", "verify", hit=lambda r, s: True)
        # exact oracle calls: EntailmentOracle.check on anything that is not the layered front
        original = oracle_module.EntailmentOracle.check
        profile = self

        def check(oracle, *args, **kwargs):
            if isinstance(oracle, LayeredOracle):
                return original(oracle, *args, **kwargs)
            start = time.perf_counter()
            result = original(oracle, *args, **kwargs)
            profile._add("exact", time.perf_counter() - start, result.verdict.name == "ENTAILED")
            return result

        self._undo.append((oracle_module.EntailmentOracle, "check", original))
        oracle_module.EntailmentOracle.check = check
        return self

    def uninstall(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def result(self) -> dict:
        return {
            "components": {
                k: {
                    "calls": int(v["calls"]),
                    "seconds": round(v["seconds"], 6),
                    "hits": int(v["hits"]),
                    "hit_seconds": round(v["hit_seconds"], 6),
                }
                for k, v in sorted(self.data.items())
            },
            "missing": list(self.missing),
        }


def _mask_hex(features, n: int) -> str:
    bits = np.zeros(n, bool)
    bits[list(features)] = True
    return np.packbits(bits).tobytes().hex()


def run_task(model_path: str, config: Config, index: int, time_limit: float | None, profile: bool) -> dict:
    """One AXp (worker process): model ``model_path``, sample image ``index``, configuration ``config``."""
    from xsnn.api import explain
    from xsnn.data import load_sample
    from xsnn.model import load_model

    model = load_model(model_path)
    images, labels = load_sample()
    record = {
        "index": int(index),
        "label": int(labels[index]),
        "config": config.name,
        "time_limit": time_limit,
        "load_before": list(os.getloadavg()),
    }
    prof = _Profile().install() if profile and config.fast_paths else None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        if config.use_cores:
            raise ValueError("the -cores configurations were removed with xsnn 0.2.0's explain()")
        result = explain(
            model, images[index], backend=config.backend, fast_paths=config.fast_paths, time_limit=time_limit
        )
    except Exception as exc:  # noqa: BLE001 -- a benchmark records failures and goes on
        record.update(
            status="error",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=6),
            wall_s=round(time.perf_counter() - wall0, 4),
            cpu_s=round(time.process_time() - cpu0, 4),
        )
        return record
    finally:
        if prof is not None:
            prof.uninstall()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    calls = dict(result.stats.get("calls", {}))
    seconds = {k: round(float(v), 6) for k, v in result.stats.get("seconds", {}).items()}
    exact_calls = sum(n for path, n in calls.items() if path not in FAST_PATHS)
    record.update(
        prediction=int(result.prediction_label),
        prediction_index=int(result.prediction),
        correct=int(result.prediction_label) == int(labels[index]),
        size=int(result.size),
        n_features=int(len(result.mask)),
        status=result.status,
        minimal=bool(result.minimal),
        wall_s=round(wall, 4),
        cpu_s=round(cpu, 4),
        algorithm_s=round(float(result.seconds), 4),
        setup_s=round(wall - float(result.seconds), 4),
        exact_calls=int(exact_calls),
        calls=calls,
        seconds=seconds,
        mask_hex=_mask_hex(result.features, len(result.mask)),
        load_after=list(os.getloadavg()),
    )
    if prof is not None:
        record["profile"] = prof.result()
    return record


# --------------------------------------------------------------------------- statistics


def percentile(values, q: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least q% of the values at or below it)."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, float), q, method="inverted_cdf"))


def summarise(records: list[dict]) -> dict:
    """Summary of one (model, configuration): times, calls, sizes, statuses."""
    done = [r for r in records if r.get("status") not in (None, "error")]
    walls = [r["wall_s"] for r in done]
    cpus = [r["cpu_s"] for r in done]
    out = {
        "n": len(records),
        "n_done": len(done),
        "n_complete": sum(r["status"] == "complete" for r in done),
        "n_timeout": sum(r["status"] == "timeout" for r in done),
        "n_undecided": sum(r["status"] == "undecided" for r in done),
        "n_error": sum(r.get("status") == "error" for r in records),
    }
    if not done:
        return out
    incomplete = [r for r in done if r["status"] != "complete"]
    out.update(
        wall_median=statistics.median(walls),
        wall_p95=percentile(walls, 95),
        wall_max=max(walls),
        wall_mean=statistics.fmean(walls),
        cpu_median=statistics.median(cpus),
        cpu_p95=percentile(cpus, 95),
        cpu_max=max(cpus),
        exact_calls_mean=statistics.fmean(r["exact_calls"] for r in done),
        exact_calls_median=statistics.median(r["exact_calls"] for r in done),
        size_median=statistics.median(r["size"] for r in done),
        size_min=min(r["size"] for r in done),
        size_max=max(r["size"] for r in done),
        load_median=statistics.median(r["load_before"][0] for r in done),
        lower_bound=bool(incomplete),
        min_incomplete_wall=min((r["wall_s"] for r in incomplete), default=None),
    )
    paths: dict[str, dict[str, float]] = {}
    for r in done:
        for path, n in r["calls"].items():
            entry = paths.setdefault(path, {"calls": 0, "seconds": 0.0})
            entry["calls"] += n
            entry["seconds"] += r["seconds"].get(path, 0.0)
    out["paths"] = {
        p: {"calls_per_axp": v["calls"] / len(done), "seconds_per_axp": v["seconds"] / len(done)}
        for p, v in sorted(paths.items())
    }
    profiled = [r for r in done if "profile" in r]
    if profiled:
        comps: dict[str, dict[str, float]] = {}
        for r in profiled:
            for key, v in r["profile"]["components"].items():
                entry = comps.setdefault(key, {"calls": 0, "seconds": 0.0, "hits": 0, "hit_seconds": 0.0})
                for f in entry:
                    entry[f] += v[f]
        m = len(profiled)
        wall_total = sum(r["wall_s"] for r in profiled)
        out["components"] = {
            k: {
                "calls_per_axp": v["calls"] / m,
                "hits_per_axp": v["hits"] / m,
                "seconds_per_axp": v["seconds"] / m,
                "hit_seconds_per_axp": v["hit_seconds"] / m,
                "share_of_wall": v["seconds"] / wall_total,
                "ms_per_call": 1000 * v["seconds"] / v["calls"] if v["calls"] else None,
            }
            for k, v in sorted(comps.items())
        }
        out["components_profiled"] = m
        out["setup_s_median"] = statistics.median(r["setup_s"] for r in profiled)
    return out


def compare(fast: dict[int, dict], plain: dict[int, dict], field: str) -> dict:
    """Ratios plain/fast on the images both ran.

    Per image: ``exact`` when both completed; ``lower`` bound when only the plain run hit its
    limit (plain would take longer); ``upper`` bound when only the fast run hit its limit (fast
    would take longer); images where neither completed give no ratio.
    """
    per_image, skipped = [], []
    for idx in sorted(set(fast) & set(plain)):
        f, p = fast[idx], plain[idx]
        if f.get("status") in (None, "error") or p.get("status") in (None, "error"):
            skipped.append({"index": idx, "why": "error"})
            continue
        f_done, p_done = f["status"] == "complete", p["status"] == "complete"
        if not (f_done or p_done):
            skipped.append({"index": idx, "why": f"neither completed (fast {f['status']}, plain {p['status']})"})
            continue
        bound = "exact" if f_done and p_done else "lower" if f_done else "upper"
        per_image.append(
            {
                "index": idx,
                "fast": f[field],
                "plain": p[field],
                "fast_status": f["status"],
                "plain_status": p["status"],
                "ratio": p[field] / max(f[field], 1e-9),
                "bound": bound,
            }
        )
    if not per_image:
        return {"n": 0, "skipped": skipped}
    ratios = [x["ratio"] for x in per_image]
    kinds = {x["bound"] for x in per_image} - {"exact"}
    total_fast = sum(x["fast"] for x in per_image)
    total_plain = sum(x["plain"] for x in per_image)
    return {
        "n": len(per_image),
        "bounds": sorted(kinds) or ["exact"],
        "n_lower": sum(x["bound"] == "lower" for x in per_image),
        "n_upper": sum(x["bound"] == "upper" for x in per_image),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratio_of_totals": total_plain / max(total_fast, 1e-9),
        "fast_total": total_fast,
        "plain_total": total_plain,
        "per_image": per_image,
        "skipped": skipped,
    }


def identity(by_config: dict[str, dict[int, dict]]) -> dict:
    """Pairs of configurations that both completed an AXp on the same image must give the same AXp."""
    names = sorted(by_config)
    checked, mismatches = 0, []
    for a_i, a in enumerate(names):
        for b in names[a_i + 1 :]:
            for idx in sorted(set(by_config[a]) & set(by_config[b])):
                ra, rb = by_config[a][idx], by_config[b][idx]
                if ra.get("status") != "complete" or rb.get("status") != "complete":
                    continue
                checked += 1
                if ra["mask_hex"] != rb["mask_hex"]:
                    mismatches.append({"index": idx, "configs": [a, b], "sizes": [ra["size"], rb["size"]]})
    return {"pairs_checked": checked, "mismatches": mismatches}


# --------------------------------------------------------------------------- report


def _fmt(value, digits: int = 2, lower: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return (">=" + text) if lower else text


def tables(report: dict) -> str:
    lines = []
    s = report["settings"]
    lines.append(f"xsnn explanation benchmark -- {report['started']} .. {report.get('finished', 'running')}")
    lines.append(f"command: {report['command']}")
    lines.append(
        f"host: {report['host']['cpu_count']} cores, python {report['host']['python']}; load average "
        f"(1/5/15 min) at start {report['load_start']}, at end {report.get('load_end', '-')}; "
        f"jobs {s['jobs']}; BLAS threads {report['host'].get('blas_threads', 'not pinned')}"
    )
    git = report.get("git", {})
    lines.append(
        f"code: commit {git.get('commit', '?')[:10]}, locally modified: "
        f"{', '.join(x.split()[-1] for x in git.get('modified', [])) or 'none'}"
    )
    lines.append(
        "models: "
        + "; ".join(
            f"{k} = {v['description']} (test acc {v.get('test_accuracy', '?')})" for k, v in report["models"].items()
        )
    )
    lines.append(
        f"deletion AXps, index order; fast time limit {s['fast_time_limit'] or 'none'} s, plain time limit "
        f"{s['plain_time_limit']} s on the first {s['plain_images']} images of each model"
    )
    if report.get("budget_stop"):
        lines.append(f"budget of {s['budget']} s reached: {report['budget_stop']}")
    lines.append("")
    lines.append(
        "Per AXp (wall s includes oracle construction; '>=': some runs hit the time limit, figure is a lower bound)"
    )
    head = (
        f"{'model':<18} {'config':<14} {'done':>5} {'compl':>5} {'t/o':>4} {'med s':>9} {'p95 s':>9} "
        f"{'max s':>9} {'med cpu':>9} {'p95 cpu':>9} {'exact/AXp':>9} {'size':>5} {'load':>5}"
    )
    lines.append(head)
    lines.append("-" * len(head))
    for row in report["summary"]:
        v = row["stats"]
        lb = v.get("lower_bound", False)
        lines.append(
            f"{row['model']:<18} {row['config']:<14} {v['n_done']:>5} {v['n_complete']:>5} "
            f"{v['n_timeout'] + v['n_undecided']:>4} {_fmt(v.get('wall_median'), 3):>9} "
            f"{_fmt(v.get('wall_p95'), 3):>9} {_fmt(v.get('wall_max'), 2, lb):>9} "
            f"{_fmt(v.get('cpu_median'), 3):>9} {_fmt(v.get('cpu_p95'), 3):>9} "
            f"{_fmt(v.get('exact_calls_mean'), 1):>9} {_fmt(v.get('size_median'), 0):>5} "
            f"{_fmt(v.get('load_median'), 1):>5}"
        )
    lines.append("")
    lines.append(
        "Speed-up of the fast configuration over plain ones, on the same images (plain time / fast time;"
        " '>=': plain hit its limit, '<=': fast hit its limit, '~': mixed; images where neither completed"
        " are left out)"
    )
    head = (
        f"{'model':<18} {'fast':<14} {'plain':<14} {'imgs':>4} {'wall x med':>11} {'wall x sum':>11} "
        f"{'cpu x med':>11} {'cpu x sum':>11}"
    )
    lines.append(head)
    lines.append("-" * len(head))
    for row in report["ratios"]:
        w, c = row["wall"], row["cpu"]
        if not w.get("n"):
            lines.append(
                f"{row['model']:<18} {row['fast']:<14} {row['plain']:<14} {0:>4}   "
                f"(no image where either run completed)"
            )
            continue
        mark = {"exact": "", "lower": ">=", "upper": "<="}.get(w["bounds"][0], "") if len(w["bounds"]) == 1 else "~"
        lines.append(
            f"{row['model']:<18} {row['fast']:<14} {row['plain']:<14} {w['n']:>4} "
            f"{mark + _fmt(w['ratio_median'], 2):>11} {mark + _fmt(w['ratio_of_totals'], 2):>11} "
            f"{mark + _fmt(c['ratio_median'], 2):>11} {mark + _fmt(c['ratio_of_totals'], 2):>11}"
        )
    lines.append("")
    ident = report["identity"]
    lines.append(
        f"Identity (same AXp wherever two configurations both completed): {ident['pairs_checked']} pairs "
        f"checked, {len(ident['mismatches'])} mismatches"
    )
    for mm in ident["mismatches"][:10]:
        lines.append(f"  MISMATCH {mm}")
    for row in report["summary"]:
        v = row["stats"]
        if "paths" not in v:
            continue
        lines.append("")
        lines.append(f"Where the questions go -- {row['model']} {row['config']} ({v['n_done']} AXps): answers by path")
        lines.append(f"  {'path':<16} {'answers/AXp':>12} {'s/AXp':>9} {'ms/answer':>10}")
        for path, p in v["paths"].items():
            per = 1000 * p["seconds_per_axp"] / p["calls_per_axp"] if p["calls_per_axp"] else 0.0
            lines.append(f"  {path:<16} {p['calls_per_axp']:>12.1f} {p['seconds_per_axp']:>9.3f} {per:>10.2f}")
        if "components" in v:
            lines.append(
                f"  time inside each component (tried/AXp, succeeded/AXp, s/AXp, s/AXp when it succeeded, "
                f"share of wall, ms/try); setup (encoding) median {v['setup_s_median']:.3f} s"
            )
            lines.append(
                f"  {'component':<16} {'tried':>8} {'hit':>8} {'s/AXp':>9} {'hit s':>9} {'share':>7} {'ms/try':>9}"
            )
            for key, c in v["components"].items():
                lines.append(
                    f"  {key:<16} {c['calls_per_axp']:>8.1f} {c['hits_per_axp']:>8.1f} "
                    f"{c['seconds_per_axp']:>9.3f} {c['hit_seconds_per_axp']:>9.3f} "
                    f"{100 * c['share_of_wall']:>6.1f}% {_fmt(c['ms_per_call'], 2):>9}"
                )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- driver


def _model_info(spec: str) -> tuple[str, dict]:
    from xsnn.model import load_model, shipped_model_dir

    model = load_model(spec)
    path = Path(spec)
    if not (path.suffix == ".npz" or path.exists()):
        path = shipped_model_dir() / f"{spec}.npz"
    key = path.stem
    info = {
        "path": str(path.resolve()),
        "name": model.info.get("name", key),
        "content_hash": model.content_hash(),
        "labels": list(model.labels),
        "layer_sizes": list(model.layer_sizes),
        "weight_kind": model.weight_kind,
        "n_steps": model.n_steps,
        "reset": model.reset,
        "coding": model.coding.spec(),
        "description": (
            f"{'-'.join(str(n) for n in (model.n_inputs, *model.layer_sizes, model.n_classes))} "
            f"{model.weight_kind}, T={model.n_steps}, labels {''.join(str(c) for c in model.labels)}"
        ),
    }
    card = path.with_suffix(".json")  # a shipped model's card, or a training run's sidecar
    if card.is_file():
        try:
            meta = json.loads(card.read_text())
            info["test_accuracy"] = meta.get("test_accuracy")
            info["training_command"] = meta.get("training_command")
        except (OSError, ValueError):
            pass
    return key, info


def _images_for(labels_of_model: list[int], labels: np.ndarray, n: int) -> list[int]:
    """Indices among the first ``n`` sample images whose label is one of the model's classes."""
    keep = set(labels_of_model)
    return [i for i in range(min(n, len(labels))) if int(labels[i]) in keep]


def build_tasks(models: dict, configs: list[Config], plain_images: int) -> list[tuple[str, Config, int]]:
    """Priority order: per model, the plain subset under every configuration; then the rest, fast
    configurations only, round-robin over the models."""
    first: list[tuple[str, Config, int]] = []
    for key, info in models.items():
        for idx in info["plain_images"]:
            first.extend((key, c, idx) for c in configs)
    rest_by_model = {
        key: [
            (key, c, idx)
            for idx in info["images"]
            if idx not in set(info["plain_images"])
            for c in configs
            if c.fast_paths
        ]
        for key, info in models.items()
    }
    rest: list[tuple[str, Config, int]] = []
    while any(rest_by_model.values()):
        for key in list(rest_by_model):
            if rest_by_model[key]:
                rest.append(rest_by_model[key].pop(0))
    return first + rest


def assemble(report: dict, records: list[dict], configs: list[Config]) -> None:
    """Fill summary, ratios and identity from the records."""
    by_model_config: dict[tuple[str, str], dict[int, dict]] = {}
    for r in records:
        by_model_config.setdefault((r["model"], r["config"]), {})[r["index"]] = r
    report["summary"] = [
        {"model": m, "config": c.name, "stats": summarise(list(by_model_config.get((m, c.name), {}).values()))}
        for m in report["models"]
        for c in configs
    ]
    report["ratios"] = []
    fast_configs = [c for c in configs if c.fast_paths]
    plain_configs = [c for c in configs if c.plain]
    for m, info in report["models"].items():
        subset = set(info["plain_images"])
        for f in fast_configs:
            fast = {i: r for i, r in by_model_config.get((m, f.name), {}).items() if i in subset}
            for p in plain_configs:
                plain = by_model_config.get((m, p.name), {})
                report["ratios"].append(
                    {
                        "model": m,
                        "fast": f.name,
                        "plain": p.name,
                        "wall": compare(fast, plain, "wall_s"),
                        "cpu": compare(fast, plain, "cpu_s"),
                    }
                )
    ident = {"pairs_checked": 0, "mismatches": []}
    for m in report["models"]:
        sub = identity({c.name: by_model_config.get((m, c.name), {}) for c in configs})
        ident["pairs_checked"] += sub["pairs_checked"]
        ident["mismatches"].extend({"model": m, **mm} for mm in sub["mismatches"])
    report["identity"] = ident


def write(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=float))
    tmp.replace(out)
    out.with_suffix(".txt").write_text(tables(report))


def _git_state() -> dict:
    """Commit and locally modified library files: the fast paths change while the team works."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "modified": git("status", "--porcelain", "--", "solvers", "encoders", "xsnn").splitlines(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=None, help="shipped model names or .npz paths (default: every shipped model)"
    )
    parser.add_argument("--images", type=int, default=200, help="first N sample images (default 200)")
    parser.add_argument(
        "--plain-images",
        type=int,
        default=10,
        help="plain configurations run on the first M of a model's images (default 10)",
    )
    parser.add_argument("--plain-time-limit", type=float, default=300.0, help="seconds per plain AXp (default 300)")
    parser.add_argument("--fast-time-limit", type=float, default=None, help="seconds per fast AXp (default: none)")
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help="comma-separated <backend>-<fast|plain>[-cores] (default sat-fast,sat-plain,smt-plain)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes at once (default 1)")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="stop starting tasks after this many seconds (default: run everything)",
    )
    parser.add_argument("--no-profile", action="store_true", help="do not time the fast-path components")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args(argv)

    from xsnn.data import load_sample
    from xsnn.model import shipped_model_names

    for name in ("images", "plain_images", "jobs"):
        if getattr(args, name) < (1 if name == "jobs" else 0):
            parser.error(f"--{name.replace('_', '-')} must be >= {1 if name == 'jobs' else 0}")
    try:
        configs = [parse_config(c) for c in args.configs.split(",") if c.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if not configs:
        parser.error("--configs names no configuration")
    specs = args.models or shipped_model_names()
    if not specs:
        parser.error("no shipped models (xsnn/models/*.npz) yet: name models or files with --models")
    _, labels = load_sample()
    models = {}
    for spec in specs:
        key, info = _model_info(spec)
        info["images"] = _images_for(info["labels"], labels, args.images)
        info["plain_images"] = info["images"][: args.plain_images]
        models[key] = info

    report = {
        "command": " ".join(["python", "benchmarks/explain.py", *(argv if argv is not None else sys.argv[1:])]),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "numpy": np.__version__,
            "blas_threads": {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
        },
        "git": _git_state(),
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "settings": {
            "images": args.images,
            "plain_images": args.plain_images,
            "plain_time_limit": args.plain_time_limit,
            "fast_time_limit": args.fast_time_limit,
            "configs": [c.name for c in configs],
            "jobs": args.jobs,
            "budget": args.budget,
            "algorithm": "deletion",
            "order": "index",
            "image_source": "xsnn.data.load_sample() (first 200 MNIST test images)",
        },
        "models": models,
        "records": [],
    }
    tasks = build_tasks(models, configs, args.plain_images)
    print(f"{len(tasks)} tasks over {len(models)} model(s): {', '.join(models)}", file=sys.stderr)

    context = multiprocessing.get_context("forkserver")
    # OR-Tools is imported once in the server (not in every AXp's time) unless a MILP
    # configuration needs HiGHS, whose native library clashes with it in one process
    preload = PRELOAD + ([] if any(c.backend.startswith("milp") for c in configs) else ["ortools.sat.python.cp_model"])
    context.set_forkserver_preload(preload)
    start = time.perf_counter()
    records: list[dict] = []
    pending = list(tasks)
    running: dict[futures.Future, tuple[str, Config, int]] = {}
    with futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, max_tasks_per_child=1) as pool:
        while pending or running:
            over = args.budget is not None and time.perf_counter() - start >= args.budget
            while pending and len(running) < args.jobs and not over:
                key, config, idx = pending.pop(0)
                limit = args.fast_time_limit if config.fast_paths else args.plain_time_limit
                fut = pool.submit(run_task, models[key]["path"], config, idx, limit, not args.no_profile)
                running[fut] = (key, config, idx)
            if over and pending:
                report["budget_stop"] = f"{len(pending)} of {len(tasks)} tasks not started"
                pending.clear()
            if not running:
                break
            done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for fut in done:
                key, config, idx = running.pop(fut)
                try:
                    record = fut.result()
                except Exception as exc:  # noqa: BLE001 -- a crashed worker is a recorded failure
                    record = {
                        "index": idx,
                        "config": config.name,
                        "status": "error",
                        "error": f"worker failed: {type(exc).__name__}: {exc}",
                    }
                record["model"] = key
                records.append(record)
                print(
                    f"[{time.perf_counter() - start:7.1f}s] {key} {config.name} #{idx}: {record.get('status')} "
                    f"size {record.get('size', '-')} wall {record.get('wall_s', '-')} s "
                    f"cpu {record.get('cpu_s', '-')} s "
                    f"exact {record.get('exact_calls', '-')} {record.get('error', '')}",
                    file=sys.stderr,
                    flush=True,
                )
                report["records"] = records
                assemble(report, records, configs)
                write(report, args.out)
    report["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    report["load_end"] = [round(x, 2) for x in os.getloadavg()]
    report["records"] = records
    assemble(report, records, configs)
    write(report, args.out)
    print(tables(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
