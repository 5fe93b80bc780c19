"""Tables of the binary-network benchmark (``docs/binary.md``) from the raw outputs of
``benchmarks/binary_bench.py`` and ``benchmarks/verify_axps.py``.

    python benchmarks/binary_report.py --ours benchmarks/results/binary-bench-index.json \\
        benchmarks/results/binary-bench-influence.json benchmarks/results/binary-bench-index-16.json \\
        --plain benchmarks/results/binary-bench-plain.json \\
        --verify benchmarks/results/verify-binary16.json benchmarks/results/verify-binary159.json

Plain SAT deletion that ran out of time is reported by its questions decided; its time for a
whole AXp is extrapolated at its measured pace (``seconds x questions needed / questions
decided``; deletion over 784 pixels asks 785 questions, one per pixel and the first one, whatever
the oracle). The pace of the first questions, whose free sets
are the smallest, underestimates the rest, so the extrapolated time, and the speed-up computed
from it, are lower estimates.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def ours_table(paths: list[str]) -> list[str]:
    lines = [
        "| run | model | order | AXps complete | median s | p95 s | max s | median CPU s | max CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        data = _load(path)
        for result in data["results"]:
            s = result["ours"]
            cpu = (
                (f"{s['median_cpu_seconds']:.1f}", f"{s['max_cpu_seconds']:.1f}")
                if "median_cpu_seconds" in s
                else ("-", "-")
            )
            top = s.get("max_seconds", max(r["ours"]["seconds"] for r in result["rows"]))
            lines.append(
                f"| {Path(path).stem} | `{result['model']}` | {data.get('order', 'index')} "
                f"| {s['complete']} of {s['axps']} "
                f"| {s['median_seconds']:.1f} | {s['p95_seconds']:.1f} | {top:.1f} | {cpu[0]} | {cpu[1]} |"
            )
    return lines


def plain_lines(plain_path: str, ours_paths: list[str], needed: int = 785) -> list[str]:
    plain = _load(plain_path)
    ours = {}
    for path in ours_paths:
        data = _load(path)
        for result in data["results"]:
            for row in result["rows"]:
                ours[(result["model"], data.get("order", "index"), row["image"])] = row["ours"]
    lines = []
    for result in plain["results"]:
        order = plain.get("order", "index")
        rows = [r for r in result["rows"] if (result["model"], order, r["image"]) in ours]
        done = sum(r["plain"]["status"] == "complete" for r in rows)
        decided = np.array([r["plain"]["questions"] for r in rows])
        bound, estimate, extrapolated = [], [], []
        for r in rows:
            mine = ours[(result["model"], order, r["image"])]
            bound.append(r["plain"]["seconds"] / mine["seconds"])
            whole = r["plain"]["seconds"] * needed / r["plain"]["questions"]
            extrapolated.append(whole)
            estimate.append(whole / mine["seconds"])
        lines += [
            f"- `{result['model']}`, {order} order, {len(rows)} images: plain SAT deletion completed {done} "
            f"within {plain['plain_time_limit']:g} s; questions decided in that time: median "
            f"{np.median(decided):.0f} (range {decided.min()}-{decided.max()}).",
            f"- measured speed-up (plain's time limit over our time, a lower bound): median "
            f"{np.median(bound):.1f}x (range {min(bound):.1f}-{max(bound):.1f}x).",
            f"- plain extrapolated to a whole AXp: median {np.median(extrapolated) / 3600:.1f} h "
            f"(range {min(extrapolated) / 3600:.1f}-{max(extrapolated) / 3600:.1f} h); speed-up on that "
            f"estimate: median {np.median(estimate):.0f}x (range {min(estimate):.0f}-{max(estimate):.0f}x).",
        ]
    return lines


def verify_table(paths: list[str]) -> list[str]:
    lines = [
        "| model | order | AXps | complete | verified | undecided | failures | witnesses replayed "
        "| median AXp s | median re-check s | max re-check s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        data = _load(path)
        order = "influence" if "--order influence" in data["command"] else "index"
        for name, s in data["summary"].items():
            rows = [r for r in data["rows"] if r["model"] == name]
            axp = np.median([r["axp_seconds"] for r in rows])
            check = [r["verify_seconds"] for r in rows]
            lines.append(
                f"| `{name}` | {order} | {s['axps']} | {s['complete']} | {s['verified_ok']} | "
                f"{s.get('undecided', 0)} | {s['failures']} | {s['witnesses_checked']:,} | {axp:.1f} | "
                f"{np.median(check):.2f} | {max(check):.1f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", nargs="+", required=True)
    parser.add_argument("--plain", default=None)
    parser.add_argument(
        "--paired", default=None, help="the --ours file that ran beside --plain (default: every --ours file)"
    )
    parser.add_argument("--verify", nargs="*", default=[])
    args = parser.parse_args(argv)
    print("\n".join(ours_table(args.ours)))
    if args.plain:
        print()
        print("\n".join(plain_lines(args.plain, [args.paired] if args.paired else args.ours)))
    if args.verify:
        print()
        print("\n".join(verify_table(args.verify)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
