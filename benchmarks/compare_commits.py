"""Default explanation time of two commits, measured side by side on this machine.

The speed of a shared machine drifts (runs of the same command on different days differ by
tens of percent, and within minutes by 10-20%), so a speed-up is measured here against a
baseline *in the same run, image by image*: each commit is installed into its own temporary
folder (``pip install --no-deps --target``, which also builds its C kernel) and loaded into
its own worker process (one BLAS thread; one warm-up AXp, not timed). The driver then hands
the same image to both workers in turn, one after the other (never at once), alternating
which goes first from image to image and from round to round, so that a drift of the
machine's speed falls on both alike. Each image's time (default ``explain``: deletion AXp
in index order) is the minimum over the rounds.

    python benchmarks/compare_commits.py --base 40c6cea --images 40 --rounds 2

Reports per commit the median and total AXp time and how many AXps completed, the ratio
base / head of the totals and the median of the per-image ratios, and whether every AXp that
both commits completed is the same (the exit status is 1 if not). ``--max-distance`` and
``--time-limit`` pass on to ``explain`` (the same for both commits).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys, time
import xsnn
from xsnn import data
try:  # the public API since 0.2.0; older commits had it in xsnn.explain
    from xsnn.api import explain
except ImportError:
    from xsnn.explain import explain
model = xsnn.load_model(sys.argv[1])
options = json.loads(sys.argv[2])  # max_distance, time_limit (None: not given)
images, _ = data.load_sample()
explain(model, images[0], **options)  # warm-up, not timed
print("ready", flush=True)
for line in sys.stdin:  # one image index per line, one JSON answer per line
    index = int(line)
    start = time.perf_counter()
    result = explain(model, images[index], **options)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "features": list(result.features), "status": result.status}), flush=True)
"""


def _install(rev: str, folder: Path) -> Path:
    """Install commit ``rev`` (no dependencies) into ``folder / "site"``; return that path."""
    tree, site = folder / "tree", folder / "site"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(tree), rev],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--target",
                str(site),
                str(tree),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "XSNN_REQUIRE_C_KERNEL": "1"},
        )
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    return site


class _Worker:
    """One commit's worker process: explains the image index it is sent, answers in JSON."""

    def __init__(self, site: Path, model: str, options: dict) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(site),
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, model, json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),
        )
        self._expect("ready")

    def _expect(self, what: str, start: str = "ready") -> str:
        """The worker's next answer line (one that begins with ``start``; other output is skipped)."""
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"worker exited (status {self.process.wait()}) while {what}")
            if line.startswith(start):
                return line

    def explain(self, index: int) -> dict:
        self.process.stdin.write(f"{index}\n")
        self.process.stdin.flush()
        return json.loads(self._expect(f"explaining image {index}", start="{"))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="baseline commit (any git revision)")
    parser.add_argument("--head", default="HEAD", help="commit to compare with the baseline (default HEAD)")
    parser.add_argument("--model", default="mnist10-sparse", help="shipped model name")
    parser.add_argument("--images", type=int, default=40, help="first N sample images")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each commit; per image the minimum counts")
    parser.add_argument(
        "--max-distance", type=int, default=None, help="distance-restricted AXps (at most this many features changed)"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds per AXp (a timed-out AXp counts with its time; AXps are compared where both commits completed)",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compare-commits.json"))
    args = parser.parse_args(argv)
    options = {}
    if args.max_distance is not None:
        options["max_distance"] = args.max_distance
    if args.time_limit is not None:
        options["time_limit"] = args.time_limit
    if args.images < 2 or args.rounds < 1:
        parser.error("need --images >= 2 and --rounds >= 1")

    revs = {}
    for name in ("base", "head"):
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", getattr(args, name) + "^{commit}"],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            parser.error(f"--{name} {getattr(args, name)!r} is not a commit of this repository")
        revs[name] = done.stdout.strip()
    indices = list(range(1, args.images + 1))  # image 0 is the warm-up
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="xsnn-compare-") as tmp:
        sites = {name: _install(rev, Path(tmp) / name) for name, rev in revs.items()}
        workers = {name: _Worker(site, args.model, options) for name, site in sites.items()}
        runs: dict[str, list[dict[int, dict]]] = {"base": [], "head": []}
        try:
            for round_ in range(args.rounds):
                for name in runs:
                    runs[name].append({})
                for i in indices:  # the same image on both, one after the other; who goes first alternates
                    for name in ("base", "head") if (i + round_) % 2 == 0 else ("head", "base"):
                        runs[name][-1][i] = workers[name].explain(i)
                print(f"round {round_ + 1} done", file=sys.stderr, flush=True)
        finally:
            for worker in workers.values():
                worker.close()
    best = {name: {i: min(r[i]["seconds"] for r in rs) for i in indices} for name, rs in runs.items()}
    complete = {
        name: [i for i in indices if all(r[i]["status"] == "complete" for r in rs)] for name, rs in runs.items()
    }
    both = [i for i in indices if i in complete["base"] and i in complete["head"]]
    same = [i for i in both if runs["base"][0][i]["features"] == runs["head"][0][i]["features"]]
    ratios = [best["base"][i] / best["head"][i] for i in indices]
    summary = {
        name: {
            "median_s": round(statistics.median(best[name].values()), 4),
            "total_s": round(sum(best[name].values()), 3),
            "complete": len(complete[name]),
        }
        for name in best
    }
    report = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_start": load_start,
            "load_end": os.getloadavg(),
        },
        "model": args.model,
        "options": options,
        "images": indices,
        "rounds": args.rounds,
        "commits": revs,
        "summary": summary,
        "ratio_of_totals": round(summary["base"]["total_s"] / summary["head"]["total_s"], 3),
        "median_of_ratios": round(statistics.median(ratios), 3),
        "both_complete": len(both),
        "same_axps": len(same),
        "per_image": {
            i: {
                "base_s": round(best["base"][i], 4),
                "head_s": round(best["head"][i], 4),
                "base_status": runs["base"][0][i]["status"],
                "head_status": runs["head"][0][i]["status"],
            }
            for i in indices
        },
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    text = "\n".join(
        [
            report["command"],
            f"started {started}, load at start {load_start}",
            f"options {options or 'none'}",
            *(
                f"{name} {revs[name][:10]}: median {summary[name]['median_s']:.3f} s, "
                f"total {summary[name]['total_s']:.2f} s, "
                f"{summary[name]['complete']} of {len(indices)} complete"
                for name in ("base", "head")
            ),
            f"base / head: {report['ratio_of_totals']:.3f} (totals), "
            f"{report['median_of_ratios']:.3f} (median of per-image ratios)",
            f"identical AXps: {len(same)} of {len(both)} that both completed",
        ]
    )
    Path(args.out).with_suffix(".txt").write_text(text + "\n")
    print(text)
    return 0 if len(same) == len(both) else 1


if __name__ == "__main__":
    sys.exit(main())
