"""Batch throughput: images explained per minute by ``xsnn explain-batch``, and its scaling in workers.

Usage::

    python benchmarks/batch.py [--model NAME_OR_PATH] [--data mnist-test] [--data-dir DIR]
                               [--images 300] [--jobs 1,2] [--repeats 1] [--baseline-images 20]
                               [--scheduler ADDRESS] [--time-limit 120] [--target 10000]
                               [--out benchmarks/results/batch.json]

What is measured. The first ``--images`` images of ``--data`` (default: the MNIST test set, from
``--data-dir`` or ``$XSNN_DATA``) are explained (complete subset-minimal AXps of the model's
predictions, the default settings of ``xsnn explain-batch``) by :func:`xsnn.batch.run_batch`, the
code path of the command line, once per entry of ``--jobs`` (local worker processes), in the
order given and then reversed for each further repeat (ABBA), each run into a fresh output file.
Per run: wall time from the start of the pool to the last row written (pool start-up and per-worker
setup included), images per minute, per-image explanation time (median, p95, sum), per-image CPU
time of the worker (``timings.cpu_s``: what an image costs on a free core, whatever else runs),
the CPU seconds of all worker processes (setup included), the load average before and after (the
machine may be shared), the statuses, and how many AXps are identical to those of the other runs.

The baseline (``--baseline-images``, one worker): a fresh worker process for every image
(``max_tasks_per_worker=1``), i.e. what a batch costs when process start-up, imports and model
loading are paid per image, as when each image is explained by its own ``xsnn explain`` call.

With ``--scheduler ADDRESS`` the same images are also run on that Dask cluster (how many worker
threads it has is recorded); start one with ``dask scheduler`` and ``dask worker ADDRESS
--nworkers N --nthreads 1`` on each machine, or with dask-jobqueue on Slurm.

Extrapolations are labelled as such: ``--target`` images at a run's measured rate; the rate of
16 workers as 16 times the one-worker rate (linear scaling: an upper bound, assuming a free core
per worker); and CPU-bound estimates for 2 and 16 free cores, ``target`` times the mean CPU seconds
per image over the number of cores. Results: ``--out`` (JSON) and the same path with ``.txt`` (the table).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # as `xsnn explain-batch`
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

from xsnn import batch  # noqa: E402
from xsnn.model import DEFAULT_MODEL, load_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "batch.json"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    name: str, setup: batch.WorkerSetup, data: batch.BatchData, indices: list[int], engine, workers: int, folder: Path
) -> dict:
    """One run into a fresh output file; its figures and the features of each AXp (for identity)."""
    out = folder / f"{name}.jsonl"
    settings = batch.BatchSettings(setup, data, tuple(indices), out)
    load_before = os.getloadavg()[0]
    cpu_before = _children_cpu()
    start = time.perf_counter()
    outcome = batch.run_batch(settings, engine)
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu_before  # worker processes that have exited (local pools only)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    explain_s = [r["timings"]["explain_s"] for r in rows if r["timings"].get("explain_s") is not None]
    cpu_s = [r["timings"]["cpu_s"] for r in rows if r["timings"].get("cpu_s") is not None]
    setups = [r["timings"]["setup_s"] for r in rows if r["timings"].get("setup_s")]
    result = {
        "name": name,
        "workers": workers,
        "images": len(rows),
        "wall_s": round(wall, 2),
        "images_per_min": round(60 * len(rows) / wall, 1),
        "explain_s_median": round(statistics.median(explain_s), 4),
        "explain_s_p95": round(float(np.percentile(explain_s, 95)), 4),
        "explain_s_sum": round(sum(explain_s), 2),
        "cpu_s_mean": round(statistics.mean(cpu_s), 4),
        "cpu_s_median": round(statistics.median(cpu_s), 4),
        "worker_cpu_s": round(cpu, 2) if cpu > 0 else None,
        "setups": len(setups),
        "setup_s_mean": round(statistics.mean(setups), 3) if setups else None,
        "statuses": dict(outcome.statuses),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "size_median": statistics.median(r["size"] for r in rows if r["size"] is not None),
    }
    features = {r["id"]: r["explanation"]["features"] for r in rows if r["status"] == "complete"}
    print(
        f"{name}: {len(rows)} images in {wall:.1f} s = {result['images_per_min']} / min "
        f"(median AXp {result['explain_s_median']} s, load {load_before:.2f} -> {result['load_after']:.2f})",
        file=sys.stderr,
        flush=True,
    )
    return {"result": result, "features": features}


def table(report: dict) -> str:
    lines = [
        f"# xsnn explain-batch throughput ({report['date']}, commit {report['commit']})",
        f"# command: {report['command']}",
        (
            f"# machine: {report['machine']['cpus']} CPU(s), {report['machine']['python']}; "
            f"load average at start {report['machine']['load_at_start']}"
        ),
        f"# model {report['model']}, data {report['data']}, time limit {report['time_limit']} s per image",
        *([f"# note: {report['note']}"] if report.get("note") else []),
        "",
        (
            "| run | workers | images | wall s | images/min | scaling vs 1 worker | median AXp s | p95 AXp s | "
            "mean CPU s per AXp | worker CPU s (all) | setups | load before/after | statuses |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    base = report["one_worker_rate"]
    for r in report["runs"]:
        scaling = f"{r['images_per_min'] / base:.2f}x" if base and not r["name"].startswith("baseline") else "-"
        lines.append(
            f"| {r['name']} | {r['workers']} | {r['images']} | {r['wall_s']} | {r['images_per_min']} | "
            f"{scaling} | {r['explain_s_median']} | {r['explain_s_p95']} | {r['cpu_s_mean']} | "
            f"{r['worker_cpu_s']} | "
            f"{r['setups']} | {r['load_before']}/{r['load_after']} | "
            f"{', '.join(f'{k} {v}' for k, v in r['statuses'].items())} |"
        )
    per_image = [(r["name"], r["worker_cpu_s"] / r["images"]) for r in report["runs"] if r["worker_cpu_s"]]
    lines += [
        "",
        "CPU seconds per image of all worker processes (start-up, imports, model loading included): "
        + "; ".join(f"{name} {value:.3f}" for name, value in per_image),
    ]
    lines += [
        "",
        f"Identical AXps across runs (images complete in both): {report['identical']}",
        "",
        f"EXTRAPOLATED to {report['target']} images (at each run's measured rate; not measured):",
    ]
    for name, minutes in report["extrapolated_minutes"].items():
        lines.append(f"  {name}: {minutes} min")
    lines.append(
        f"  16 workers, linear scaling from the 1-worker rate (an upper bound): "
        f"{report['extrapolated_16_workers_minutes']} min"
    )
    for cores, minutes in report["cpu_bound_minutes"].items():
        lines.append(
            f"  CPU-bound estimate, {cores} free cores: {minutes} min ({report['target']} x the mean "
            f"CPU s per AXp of the worker runs / {cores}; excludes setup, waits and other load)"
        )
    lines.append(
        f"Goal: {report['target']} images in at most {report['goal_minutes']} min with 2 workers: "
        f"{report['goal_verdict']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data", default="mnist-test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--jobs", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--repeats", type=int, default=1, help="runs per worker count (ABBA order)")
    parser.add_argument("--baseline-images", type=int, default=20, help="0 skips the fresh-process baseline")
    parser.add_argument("--scheduler", default=None, help="also run on this Dask scheduler")
    parser.add_argument("--time-limit", type=float, default=batch.DEFAULT_TIME_LIMIT)
    parser.add_argument("--target", type=int, default=10000)
    parser.add_argument("--goal-minutes", type=float, default=30.0)
    parser.add_argument("--note", default="", help="a remark stored with the results (e.g. what else ran)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    model = load_model(args.model)
    data = batch.load_batch_data(args.data, data_dir=args.data_dir)
    indices = batch.parse_indices(f"0:{args.images}", len(data))
    setup = batch.WorkerSetup(args.model, model.content_hash(), time_limit=args.time_limit, data=data.name)
    jobs = [int(j) for j in args.jobs.split(",")]
    order = [j for k in range(args.repeats) for j in (jobs if k % 2 == 0 else jobs[::-1])]
    runs, features = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.baseline_images:
            m = measure(
                "baseline: fresh process per image",
                setup,
                data,
                indices[: args.baseline_images],
                batch.LocalEngine(1, max_tasks_per_worker=1),
                1,
                folder,
            )
            runs.append(m["result"])
            features["baseline"] = m["features"]
        seen: dict[int, int] = {}
        for j in order:
            seen[j] = seen.get(j, 0) + 1
            name = f"{j} worker{'s' if j > 1 else ''}" + (f" (run {seen[j]})" if args.repeats > 1 else "")
            m = measure(name, setup, data, indices, batch.LocalEngine(j), j, folder)
            runs.append(m["result"])
            features[name] = m["features"]
        if args.scheduler:
            engine = batch.DaskEngine(args.scheduler)
            engine.check()
            threads = sum(engine._client.nthreads().values())  # noqa: SLF001  (report the cluster size)
            m = measure(f"dask ({threads} worker threads)", setup, data, indices, engine, threads, folder)
            runs.append(m["result"])
            features["dask"] = m["features"]

    names = list(features)
    identical, compared = 0, 0
    for k, a in enumerate(names):
        for b in names[k + 1 :]:
            for i in set(features[a]) & set(features[b]):
                compared += 1
                identical += features[a][i] == features[b][i]
    local = [r for r in runs if not r["name"].startswith(("baseline", "dask"))]
    one = [r["images_per_min"] for r in local if r["workers"] == 1]
    two = [r["images_per_min"] for r in local if r["workers"] == 2]
    one_rate = statistics.mean(one) if one else None
    extrapolated = {r["name"]: round(args.target / r["images_per_min"], 1) for r in runs}
    if two:
        minutes = args.target / statistics.mean(two)
        verdict = (
            f"{'MET' if minutes <= args.goal_minutes else 'NOT MET'} (extrapolated: {minutes:.1f} min at "
            f"the measured 2-worker rate {statistics.mean(two):.1f} images/min)"
        )
    else:
        verdict = "not measured (no 2-worker run)"
    report = {
        "date": datetime.date.today().isoformat(),
        "commit": _commit(),
        "command": "python benchmarks/batch.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_at_start": runs[0]["load_before"] if runs else None,
        },
        "note": args.note,
        "model": args.model,
        "data": data.name,
        "time_limit": args.time_limit,
        "runs": runs,
        "identical": f"{identical} of {compared} pairwise comparisons",
        "one_worker_rate": one_rate,
        "target": args.target,
        "goal_minutes": args.goal_minutes,
        "extrapolated_minutes": extrapolated,
        "extrapolated_16_workers_minutes": round(args.target / (16 * one_rate), 1) if one_rate else None,
        "cpu_bound_minutes": {
            cores: round(args.target * statistics.mean(r["cpu_s_mean"] for r in local) / cores / 60, 1)
            for cores in (2, 16)
        }
        if local
        else {},
        "goal_verdict": verdict,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    text = table(report)
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
