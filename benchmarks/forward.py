"""Forward throughput on the 10,000 MNIST test images: C kernel, numpy kernel, reference, torch.

Usage::

    python benchmarks/forward.py [--data-dir DIR] [--models NAME ...] [--repeats 7]

The data folder is ``--data-dir``, else ``$XSNN_DATA``. Models: the shipped
models (``xsnn/models/*.npz``) when there are any, else random binary
784-128-10 and 784-256-10 networks with T=4 (static coding); ``--models
random`` forces the random ones.

Every backend computes the same thing from the same uint8 input spikes
``(n, T, 784)`` (encoding the images is not timed); the integer backends must
give identical scores, torch identical predictions, or the script fails.
Timings are the best of ``--repeats`` rounds over all images, each round
running every backend once (so that load from other jobs on a shared machine
hits all of them alike). Rows:

- ``c``: the C kernel (bit-sliced, single thread), from uint8 spikes;
- ``c_packed``: the same on inputs packed beforehand (``PackedNetwork.pack``);
- ``c_reference``: the C reference loop (per-neuron AND + popcount, single thread);
- ``numpy``: the numpy kernel (``np.bitwise_count``);
- ``reference``: :func:`xsnn.model.forward` (int64 numpy; timed once);
- ``torch_1t`` / ``torch``: a float32 torch forward, batch 1,000, ``no_grad``,
  a plain loop over T with resets (first layer recomputed at every step), with
  1 thread / torch's default threads;
- ``torch_static_1t``: the same, computing the step-invariant first-layer
  current once (the optimisation the kernels use), 1 thread.

``vs_torch`` is the ratio to ``torch_1t`` (per core), ``vs_torch_default``
the ratio to ``torch`` (default threads); both from wall time.
``images_per_cpu_s`` divides by the process CPU time instead (all threads),
which is steadier when other jobs share the machine. Results go to
``benchmarks/results/forward.json`` and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import xsnn.kernel as kernel
from xsnn.coding import StaticCoding
from xsnn.data import load_mnist
from xsnn.model import BSNN, forward, load_model, random_model, shipped_model_names

RESULTS = Path(__file__).resolve().parent / "results" / "forward.json"
BATCH = 1000


def best_time(fn, repeats: int) -> tuple[float, float, object]:
    """Best wall time, best process CPU time (all threads) and the last result of ``repeats`` calls."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
        best = min(best, time.perf_counter() - start)
    return best, best_cpu, out


def torch_forward(model: BSNN, spikes: np.ndarray, static_first_layer: bool) -> np.ndarray:
    """Float32 torch forward over batches of 1,000: scores (n, C) as int64."""
    import torch

    weights = [torch.from_numpy(w.astype(np.float32)) for w in model.weights]
    thetas = [torch.from_numpy(t.astype(np.float32)) for t in model.thresholds]
    readout = torch.from_numpy(model.readout.astype(np.float32))
    out = []
    with torch.no_grad():
        for lo in range(0, len(spikes), BATCH):
            x = torch.from_numpy(spikes[lo : lo + BATCH]).float()  # (B, T, n_in)
            layer_in = [x[:, t] for t in range(model.n_steps)]
            for l, (w, theta) in enumerate(zip(weights, thetas)):
                v = torch.zeros(x.shape[0], w.shape[0])
                s = torch.zeros_like(v)
                first_current = layer_in[0] @ w.T if (static_first_layer and l == 0) else None
                layer_out = []
                for t in range(model.n_steps):
                    if model.reset == "zero":
                        v = v * (1 - s)
                    else:
                        v = v - theta * s
                    v = v + (first_current if first_current is not None else layer_in[t] @ w.T)
                    s = (v >= theta).float()
                    layer_out.append(s)
                layer_in = layer_out
            counts = torch.stack(layer_in).sum(0)
            out.append((counts @ readout.T).round().to(torch.int64).numpy())
    return np.concatenate(out)


def bench_model(name: str, model: BSNN, images: np.ndarray, repeats: int, default_threads: int) -> dict:
    import torch

    spikes = model.encode(images)
    n = len(spikes)
    truth = forward(model, spikes[:256])

    def run_torch(threads: int, static: bool):
        def go():
            torch.set_num_threads(threads)
            return torch_forward(model, spikes, static)

        return go

    # (key, function returning scores, exact integers expected)
    cases = []
    if kernel.IMPLEMENTATION == "c":
        net = kernel.PackedNetwork(model, "c")
        packed = net.pack(spikes)
        ref = kernel.PackedNetwork(model, "c", algorithm="reference")
        cases += [
            ("c", lambda: net.scores(spikes), True),
            ("c_packed", lambda: net.scores_packed(packed), True),
            ("c_reference", lambda: ref.scores(spikes), True),
        ]
    net_np = kernel.PackedNetwork(model, "numpy")
    cases += [
        ("numpy", lambda: net_np.scores(spikes), True),
        ("torch_1t", run_torch(1, False), False),
        ("torch_static_1t", run_torch(1, True), False),
        ("torch", run_torch(default_threads, False), False),
    ]

    # rounds: every backend once per round, so that load from other jobs hits all of them alike
    best = {key: (float("inf"), float("inf")) for key, _, _ in cases}
    for _ in range(repeats):
        for key, fn, exact in cases:
            wall, cpu, scores = best_time(fn, 1)
            check(name, key, scores[:256], truth, exact)
            best[key] = (min(best[key][0], wall), min(best[key][1], cpu))
    torch.set_num_threads(default_threads)
    wall, cpu, result = best_time(lambda: forward(model, spikes), 1)
    check(name, "reference", result.scores[:256], truth, True)
    best["reference"] = (wall, cpu)

    rows = {
        key: {"images_per_s": n / wall, "seconds": wall, "images_per_cpu_s": n / cpu, "cpu_seconds": cpu}
        for key, (wall, cpu) in best.items()
    }
    if kernel.IMPLEMENTATION == "c":
        rows["c"]["pack_model_seconds"] = best_time(lambda: kernel.PackedNetwork(model, "c"), 3)[0]
    for row in rows.values():
        row["vs_torch"] = row["images_per_s"] / rows["torch_1t"]["images_per_s"]
        row["vs_torch_default"] = row["images_per_s"] / rows["torch"]["images_per_s"]
        row["vs_torch_cpu"] = row["images_per_cpu_s"] / rows["torch_1t"]["images_per_cpu_s"]
    return rows


def check(name: str, key: str, scores: np.ndarray, truth, exact: bool) -> None:
    """Integer backends must give the reference scores, torch the reference predictions."""
    if exact and not np.array_equal(scores, truth.scores):
        raise AssertionError(f"{name}: backend {key} disagrees with the reference forward")
    if not exact and not np.array_equal(np.argmax(scores, 1), truth.prediction):
        raise AssertionError(f"{name}: backend {key} predicts differently from the reference forward")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $XSNN_DATA)")
    parser.add_argument("--models", nargs="*", default=None, help="shipped model names, or 'random'")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    default_threads = torch.get_num_threads()
    images, _ = load_mnist("test", args.data_dir)
    names = args.models if args.models is not None else shipped_model_names()
    models: dict[str, BSNN] = {}
    if not names or names == ["random"]:
        rng = np.random.default_rng(0)
        for hidden in (128, 256):
            models[f"random-784-{hidden}-10-T4"] = random_model(
                rng,
                [hidden],
                784,
                10,
                weight_kind="binary",
                reset="zero",
                n_steps=4,
                coding=StaticCoding(128),
                max_threshold=60,
            )
    else:
        models = {name: load_model(name) for name in names}

    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    for name, model in models.items():
        print(f"# {name}: {model.describe()}", file=sys.stderr, flush=True)
        results[name] = bench_model(name, model, images, args.repeats, default_threads)

    header = (
        f"{'model':<28} {'backend':<16} {'images/s':>11} {'vs torch 1t':>12} "
        f"{'vs torch ' + str(default_threads) + 't':>11} {'images/cpu-s':>13} {'cpu vs 1t':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, rows in results.items():
        for key, row in rows.items():
            print(
                f"{name:<28} {key:<16} {row['images_per_s']:>11,.0f} {row['vs_torch']:>12.1f} "
                f"{row['vs_torch_default']:>11.1f} {row['images_per_cpu_s']:>13,.0f} {row['vs_torch_cpu']:>10.1f}"
            )
    results["_meta"] = {
        "command": "python benchmarks/forward.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "n_images": int(len(images)),
        "c_kernel": {"implementation": kernel.IMPLEMENTATION, "isa": kernel.c_isa(), "threads": 1},
        "torch": {
            "version": torch.__version__,
            "threads_1t": 1,
            "threads_default": default_threads,
            "batch": BATCH,
            "dtype": "float32",
        },
        "numpy": np.__version__,
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "timing": f"best of {args.repeats} rounds over all images, every backend once per round "
        "(reference: 1 run); images_per_s from wall time, images_per_cpu_s from process CPU time "
        "(all threads); vs_torch / vs_torch_default / vs_torch_cpu: ratios to torch_1t (wall), "
        "torch (default threads, wall), torch_1t (CPU time)",
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "models": {name: m.describe() for name, m in models.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
