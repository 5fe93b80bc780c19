"""Batch explanations: `xsnn explain-batch` / `xsnn summarize` end to end (subprocesses), resuming,
torn lines, killed workers, a killed driver, Ctrl-C, a Dask LocalCluster, and one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from xsnn import batch
from xsnn.api import explain
from xsnn.cli import main
from xsnn.coding import StaticCoding
from xsnn.model import BSNN, load_model_file, save_model
from xsnn.solvers.backends import make_oracle
from xsnn.solvers.oracle import Verdict

SIDE = 10  # 100 features: an AXp takes tens of milliseconds


def _small_model(seed: int, side: int = SIDE) -> BSNN:
    rng = np.random.default_rng(seed)
    n, hidden = side * side, 12
    w = rng.choice([-1, 1], size=(hidden, n)) * (rng.random((hidden, n)) < 0.3)
    return BSNN(
        weights=(w,),
        thresholds=(rng.integers(1, 5, size=hidden),),
        readout=rng.choice([-1, 0, 1], size=(4, hidden)),
        weight_kind="ternary",
        reset="zero",
        n_steps=2,
        coding=StaticCoding(),
        labels=(3, 5, 7, 9),
        input_shape=(side, side),
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small random model, 60 random images with labels (.npz), and 28x28 images (shape mismatch)."""
    folder = tmp_path_factory.mktemp("batch")
    model_path = save_model(_small_model(5), folder / "small.npz")
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, size=(60, SIDE, SIDE)).astype(np.uint8)
    labels = rng.choice([3, 5, 7, 9], size=60)
    np.savez(folder / "images.npz", images=images, labels=labels)
    np.savez(folder / "big.npz", images=rng.integers(0, 256, size=(3, 28, 28)).astype(np.uint8))
    return {
        "model": model_path,
        "data": folder / "images.npz",
        "big": folder / "big.npz",
        "images": images,
        "labels": labels,
    }


def cli(*argv, check_rc=None, timeout=240, **kwargs):
    """Run `python -m xsnn.cli ARGV` in a subprocess; (returncode, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "xsnn.cli", *map(str, argv)], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def batch_args(files, out, indices="0:12", *extra):
    return [
        "explain-batch",
        "--model",
        files["model"],
        "--data",
        files["data"],
        "--indices",
        indices,
        "--out",
        out,
        "--progress",
        "never",
        *extra,
    ]


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_exactly_once(path: Path, ids) -> list[dict]:
    rows = rows_of(path)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    return rows


@pytest.fixture(scope="module")
def reference(files):
    """In-process AXps of the 60 images: the answers every batch run must reproduce."""
    model = load_model_file(files["model"])
    return {i: explain(model, files["images"][i]) for i in range(60)}


def assert_rows_match(rows, reference, labels):
    for row in rows:
        expected = reference[row["id"]]
        assert row["status"] == expected.status == "complete"
        assert row["explanation"]["features"] == list(expected.features)
        assert row["size"] == expected.size and row["prediction"] == expected.prediction
        assert row["label"] == int(labels[row["id"]])
        assert len(row["certificate_sha256"]) == 64


# --------------------------------------------------------------------------- units


def test_parse_indices():
    assert batch.parse_indices("0:5", 10) == [0, 1, 2, 3, 4]
    assert batch.parse_indices("7,1:4,3", 10) == [7, 1, 2, 3]
    assert batch.parse_indices("0:10:4", 10) == [0, 4, 8]
    assert batch.parse_indices(":3", 10) == [0, 1, 2] and batch.parse_indices("8:", 10) == [8, 9]
    assert batch.parse_indices(None, 3) == [0, 1, 2]
    for bad, message in [
        ("0:11", "reaches index 10"),
        ("10", "out of range"),
        ("a", "not an index"),
        ("0:5:0", "not an index"),
        ("5:2", "not an index"),
        ("-1", "out of range"),
    ]:
        with pytest.raises(batch.BatchError, match=message):
            batch.parse_indices(bad, 10)


def test_read_results_torn_and_corrupt(tmp_path):
    path = tmp_path / "r.jsonl"
    good = b'{"id":1,"status":"complete"}\n{"id":2,"status":"timeout"}\n'
    path.write_bytes(good + b'{"id":3,"sta')
    scan = batch.read_results(path)
    assert [r["id"] for r in scan.records] == [1, 2] and scan.torn and scan.good_bytes == len(good)
    path.write_bytes(good + b'{"id":3,"sta\n')  # newline written, line cut: torn as well
    assert batch.read_results(path).torn
    path.write_bytes(good)
    assert not batch.read_results(path).torn
    path.write_bytes(b'{"id":1}\nnot json\n{"id":2}\n')
    with pytest.raises(batch.BatchError, match="line 2 is not a JSON result row"):
        batch.read_results(path)


def test_load_image_set(tmp_path):
    from xsnn.data import DataError, load_image_set

    np.savez(tmp_path / "ok.npz", images=np.arange(8).reshape(2, 2, 2), labels=np.array([1, 0]))
    images, labels = load_image_set(tmp_path / "ok.npz")
    assert images.dtype == np.uint8 and images.shape == (2, 2, 2) and labels.tolist() == [1, 0]
    np.savez(tmp_path / "nolabels.npz", images=np.zeros((3, 4), np.uint8))
    assert load_image_set(tmp_path / "nolabels.npz")[1] is None
    for name, arrays, message in [
        ("x.npz", {"pixels": np.zeros((2, 2))}, "no array 'images'"),
        ("y.npz", {"images": np.full((2, 2), 300)}, "0..255"),
        ("z.npz", {"images": np.zeros((2, 2), np.uint8), "labels": [1]}, "2 non-negative"),
        ("o.npz", {"images": np.array([None, 1], dtype=object)}, "not a readable"),
    ]:
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(DataError, match=message):
            load_image_set(tmp_path / name)


# --------------------------------------------------------------------------- end to end, local workers


@pytest.fixture(scope="module")
def finished(files, reference, tmp_path_factory):
    """One finished two-worker run over images 0..11."""
    out = tmp_path_factory.mktemp("finished") / "results.jsonl"
    code, stdout, stderr = cli(*batch_args(files, out, "0:12", "--jobs", 2))
    assert code == 0, stderr
    return out, stdout


def test_batch_rows_are_the_single_explanations(files, reference, finished):
    out, stdout = finished
    rows = assert_exactly_once(out, range(12))
    assert_rows_match(rows, reference, files["labels"])
    assert all(r["run"]["kind"] == "axp" and r["attempt"] == 1 for r in rows)
    # the model is loaded once per worker process, by its first instance
    workers = {r["worker"] for r in rows}
    # two workers were asked for; how many took images depends on scheduling, but never more
    # than two (a third name would mean a worker restarted or a row was written by another run)
    assert 1 <= len(workers) <= 2
    assert sorted(r["worker"] for r in rows if r["timings"]["setup_s"] > 0) == sorted(workers)
    assert "complete" in stdout and "12 instance(s)" in stdout


def test_summarize_counts_and_plot(files, finished, tmp_path):
    out, _ = finished
    code, stdout, _ = cli("summarize", out, "--json", "--plot", tmp_path / "plots", check_rc=0)
    summary = json.loads(stdout)
    rows = rows_of(out)
    assert summary["status"] == dict(Counter(r["status"] for r in rows))
    assert summary["ids"] == 12 and summary["duplicate_ids"] == []
    sizes = sorted(r["size"] for r in rows)
    assert summary["size"]["min"] == sizes[0] and summary["size"]["max"] == sizes[-1]
    assert summary["size"]["p50"] == pytest.approx(float(np.median(sizes)))
    assert summary["prediction_matches_label"] == [sum(r["label"] == r["prediction"] for r in rows), 12]
    png = Path(summary["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, text, _ = cli("summarize", out, check_rc=0)
    assert "complete" in text and "explain seconds" in text


def test_resume_of_a_finished_range_writes_nothing(files, finished, tmp_path):
    out, _ = finished
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(out.read_bytes())
    before = copy.read_bytes()
    code, stdout, _ = cli(*batch_args(files, copy, "0:12", "--resume"), check_rc=0)
    assert copy.read_bytes() == before and "nothing to do" in stdout


def test_torn_last_line_is_redone(files, reference, finished, tmp_path):
    out, _ = finished
    torn = tmp_path / "torn.jsonl"
    data = out.read_bytes()
    torn.write_bytes(data[:-40])  # a crash in the middle of writing the last row
    lost = rows_of(out)[-1]["id"]
    code, _, stderr = cli(*batch_args(files, torn, "0:12", "--resume"), check_rc=0)
    rows = assert_exactly_once(torn, range(12))
    assert rows[-1]["id"] == lost and "torn" in stderr
    assert_rows_match(rows, reference, files["labels"])


def test_retry_redoes_rows_of_the_given_status(files, reference, finished, tmp_path):
    out, _ = finished
    path = tmp_path / "retry.jsonl"
    rows = rows_of(out)
    rows[3]["status"], rows[3]["explanation"] = "error", None
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli(*batch_args(files, path, "0:12", "--resume", "--retry", "error"), check_rc=0)
    again = assert_exactly_once(path, range(12))
    assert again[-1]["id"] == rows[3]["id"]
    assert_rows_match(again, reference, files["labels"])


def _wait_for_rows(path: Path, n: int, proc, timeout: float = 120.0) -> int:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if path.is_file() and path.read_bytes().count(b"\n") >= n:
            return path.read_bytes().count(b"\n")
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"no {n} rows within {timeout} s")


def _popen(argv, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "xsnn.cli", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_kill_whole_run_then_resume_exactly_once(files, reference, tmp_path):
    out = tmp_path / "killed.jsonl"
    proc = _popen(batch_args(files, out, "0:60", "--jobs", 2), start_new_session=True)
    _wait_for_rows(out, 5, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, at once
    proc.wait(timeout=30)
    partial = out.read_bytes().count(b"\n")
    assert 5 <= partial < 60
    cli(*batch_args(files, out, "0:60", "--jobs", 2, "--resume"), check_rc=0)
    assert_rows_match(assert_exactly_once(out, range(60)), reference, files["labels"])


def test_a_killed_worker_loses_nothing(files, reference, tmp_path):
    out = tmp_path / "worker.jsonl"
    proc = _popen(batch_args(files, out, "0:60", "--jobs", 2))
    _wait_for_rows(out, 3, proc)
    victim = int(rows_of(out)[0]["worker"].rsplit(":", 1)[1])
    os.kill(victim, signal.SIGKILL)
    at_kill = out.read_bytes().count(b"\n")
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert at_kill < 60 and "worker process died" in stderr
    rows = assert_exactly_once(out, range(60))
    assert_rows_match(rows, reference, files["labels"])
    assert any(r["attempt"] == 2 for r in rows)  # the instances in flight were run again
    assert not any(r["worker"].endswith(f":{victim}") for r in rows[at_kill + 2 :])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_keeps_rows_and_resume_completes(files, reference, tmp_path, signum):
    out = tmp_path / "stopped.jsonl"
    proc = _popen(batch_args(files, out, "0:60", "--jobs", 2))
    _wait_for_rows(out, 3, proc)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr
    rows = rows_of(out)
    assert len(rows) < 60 and len({r["id"] for r in rows}) == len(rows)
    for pid in {int(r["worker"].rsplit(":", 1)[1]) for r in rows}:  # the workers are gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    cli(*batch_args(files, out, "0:60", "--jobs", 2, "--resume"), check_rc=0)
    assert_rows_match(assert_exactly_once(out, range(60)), reference, files["labels"])


def _dies_on_index_4(setup, instance):
    """A task that kills its worker process on instance 4 (a poison instance)."""
    if instance.index == 4:
        os._exit(3)
    return batch.explain_instance(setup, instance)


def test_a_poison_instance_is_recorded_failed_and_the_rest_finish(files, reference, tmp_path):
    model = load_model_file(files["model"])
    data = batch.BatchData("images.npz", files["images"], files["labels"])
    setup = batch.WorkerSetup(str(files["model"]), model.content_hash(), data=data.name)
    settings = batch.BatchSettings(setup, data, tuple(range(10)), tmp_path / "poison.jsonl")
    engine = batch.LocalEngine(2, max_attempts=2, task=_dies_on_index_4)
    outcome = batch.run_batch(settings, engine)
    rows = assert_exactly_once(settings.out, range(10))
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["id"] for r in failed] == [4] and outcome.statuses["failed"] == 1 and engine.restarts == 2
    assert_rows_match([r for r in rows if r["id"] != 4], reference, files["labels"])


def test_a_timeout_is_recorded_with_a_sound_partial_result(tmp_path):
    """The default model with a 50 ms budget: status timeout, and the recorded set is sufficient."""
    from xsnn.data import load_sample
    from xsnn.model import load_model

    out = tmp_path / "timeout.jsonl"
    code, stdout, stderr = cli(
        "explain-batch",
        "--data",
        "sample",
        "--indices",
        "0:2",
        "--time-limit",
        0.05,
        "--out",
        out,
        "--progress",
        "never",
    )
    assert code == 0, stderr
    rows = assert_exactly_once(out, [0, 1])
    model, (images, _) = load_model(), load_sample()
    for row in rows:
        assert row["status"] == "timeout" and not row["explanation"]["minimal"]
        spikes = model.encode(images[row["id"]][None])[0]
        oracle = make_oracle(model, spikes, backend="sat", fast_paths=False)
        assert oracle.check(frozenset(row["explanation"]["features"])).verdict is Verdict.ENTAILED
    assert "timeout" in stdout


def test_distance_reaches_the_explanations(files, tmp_path):
    out = tmp_path / "distance.jsonl"
    cli(*batch_args(files, out, "0:4", "--distance", 3), check_rc=0)
    model = load_model_file(files["model"])
    for row in assert_exactly_once(out, range(4)):
        expected = explain(model, files["images"][row["id"]], max_distance=3)
        assert row["run"]["distance"] == 3 and row["explanation"]["settings"]["options"]["max_distance"] == 3
        assert row["explanation"]["features"] == list(expected.features) and row["status"] == expected.status


def test_errors_of_an_instance_become_rows(files, monkeypatch):
    model = load_model_file(files["model"])
    setup = batch.WorkerSetup(str(files["model"]), model.content_hash(), data="images.npz")
    instance = batch.Instance(2, files["images"][2], 5)

    def fail(*args):
        raise RuntimeError("solver crashed")

    with monkeypatch.context() as patch:
        patch.setattr(batch, "_explain", fail)
        row = batch.explain_instance(setup, instance)
    assert row["status"] == "error" and row["explanation"] is None and "solver crashed" in row["error"]
    assert row["prediction"] == explain(model, files["images"][2]).prediction and row["label"] == 5
    wrong = batch.WorkerSetup(str(files["model"]), "0" * 64)
    with pytest.raises(batch.BatchError, match="content hash"):
        batch.explain_instance(wrong, instance)


def test_no_explanation_is_its_own_status(tmp_path):
    """A network whose prediction never changes (all readout weights 0) has no CXp."""
    model = _small_model(5)
    constant = BSNN(
        weights=model.weights,
        thresholds=model.thresholds,
        readout=np.zeros_like(model.readout),
        weight_kind="ternary",
        reset="zero",
        n_steps=2,
        coding=StaticCoding(),
        labels=model.labels,
        input_shape=model.input_shape,
    )
    path = save_model(constant, tmp_path / "constant.npz")
    setup = batch.WorkerSetup(str(path), constant.content_hash(), kind="cxp")
    row = batch.explain_instance(setup, batch.Instance(0, np.full((SIDE, SIDE), 200, np.uint8), None))
    assert row["status"] == "no-explanation" and row["explanation"] is None and "no CXp" in row["error"]
    assert row["prediction"] == 3


def test_cxp_and_minimum_axp_rows(files, reference, tmp_path):
    """Other kinds: every CXp can change the prediction; every minimum AXp (or, on time-out, the
    smallest sufficient set found) is sufficient and no larger than the deletion AXp."""
    model = load_model_file(files["model"])
    for kind, extra in (("cxp", ()), ("min-axp", ("--time-limit", 2))):
        out = tmp_path / f"{kind}.jsonl"
        cli(*batch_args(files, out, "0:3", "--kind", kind, *extra), check_rc=0)
        for row in assert_exactly_once(out, range(3)):
            assert row["run"]["kind"] == row["explanation"]["kind"] == kind
            image = files["images"][row["id"]]
            oracle = make_oracle(model, model.encode(image[None])[0], backend="sat", fast_paths=False)
            chosen = frozenset(row["explanation"]["features"])
            if kind == "cxp":
                assert row["status"] == "complete"
                assert oracle.check(frozenset(range(SIDE * SIDE)) - chosen).verdict is Verdict.NOT_ENTAILED
            else:
                assert row["status"] in ("complete", "timeout", "undecided")  # the last two: sound, not proven
                assert oracle.check(chosen).verdict is Verdict.ENTAILED
                assert row["size"] <= reference[row["id"]].size


def test_progress_line_counts():
    import io

    stream = io.StringIO()
    progress = batch.Progress(4, stream, interval=0.0)
    for status in ("complete", "timeout", "failed", "complete"):
        progress.update({"status": status})
    last = stream.getvalue().splitlines()[-1]
    assert "4/4 (100.0%)" in last and "time-outs 1" in last and "failures 1" in last and "ETA 0m00s" in last


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--indices", "0:61"], "reaches index 60"),
        (["--indices", "x"], "not an index"),
        (["--data", "/nonexistent/images.npz"], "does not exist"),
        (["--data", "mnist-test", "--data-dir", "/nonexistent-mnist"], "/nonexistent-mnist"),
        (["--data", "BIG"], "takes images of shape (10, 10)"),
        (["--model", "no-such-model"], "no shipped model named 'no-such-model'"),
        (["--retry", "done", "--resume"], "unknown status 'done'"),
        (["--retry", "error"], "--retry needs --resume"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--time-limit", "-1"], "positive number of seconds"),
        (["--distance", "-2"], "--distance must be"),
        (["--out", "/nonexistent-dir/r.jsonl"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, files, tmp_path, extra, message):
    extra = [str(files["big"]) if a == "BIG" else a for a in extra]
    argv = batch_args(files, tmp_path / "r.jsonl", "0:3")
    for flag in ("--indices", "--data", "--model", "--out"):  # the test's value replaces the default one
        if flag in extra:
            position = argv.index(flag)
            del argv[position : position + 2]
    code = main([str(a) for a in argv + extra])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert err.startswith("xsnn: error:") and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r.jsonl").exists()


def test_existing_output_needs_resume_and_the_same_question(capsys, files, finished, tmp_path):
    out, _ = finished
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(out.read_bytes())
    for extra, message in [([], "--resume"), (["--resume", "--distance", "3"], "distance None (this run: 3)")]:
        code = main([str(a) for a in batch_args(files, copy, "0:12", *extra)])
        _, err = capsys.readouterr()
        assert code == 2 and message in err and err.startswith("xsnn: error:")
    assert copy.read_bytes() == out.read_bytes()


def test_summarize_missing_file(capsys, tmp_path):
    assert main(["summarize", str(tmp_path / "none.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    yield cluster
    cluster.close()


def test_dask_cluster_gives_the_same_rows(files, reference, dask_cluster, tmp_path):
    out = tmp_path / "dask.jsonl"
    code, stdout, stderr = cli(*batch_args(files, out, "0:16", "--scheduler", dask_cluster.scheduler_address))
    assert code == 0, stderr
    rows = assert_exactly_once(out, range(16))
    assert_rows_match(rows, reference, files["labels"])
    workers = {r["worker"] for r in rows}
    assert sorted(r["worker"] for r in rows if r["timings"]["setup_s"] > 0) == sorted(workers)
    assert "Dask scheduler" in stdout


def test_dask_worker_killed_mid_run(files, reference, dask_cluster, tmp_path):
    out = tmp_path / "dask-kill.jsonl"
    proc = _popen(batch_args(files, out, "0:60", "--scheduler", dask_cluster.scheduler_address))
    _wait_for_rows(out, 3, proc)
    victim = int(rows_of(out)[0]["worker"].rsplit(":", 1)[1])
    os.kill(victim, signal.SIGKILL)  # the nanny restarts it; the scheduler reschedules its tasks
    at_kill = out.read_bytes().count(b"\n")
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert at_kill < 60
    assert_rows_match(assert_exactly_once(out, range(60)), reference, files["labels"])


def test_unreachable_scheduler_is_exit_2(capsys, files, tmp_path):
    pytest.importorskip("distributed")
    code = main([str(a) for a in batch_args(files, tmp_path / "r.jsonl", "0:3", "--scheduler", "nonsense://x")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dask scheduler" in err and not (tmp_path / "r.jsonl").exists()
