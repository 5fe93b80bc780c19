"""The command line: results on stdout, clear one-line errors with exit status 2, Ctrl-C kept."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from xsnn import data
from xsnn.cli import main
from xsnn.coding import StaticCoding
from xsnn.model import BSNN, forward, save_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    rng = np.random.default_rng(11)
    hidden = 8
    w = rng.choice([-1, 1], size=(hidden, 784)) * (rng.random((hidden, 784)) < 0.03)
    model = BSNN(
        weights=(w,),
        thresholds=(rng.integers(1, 4, size=hidden),),
        readout=rng.choice([-1, 0, 1], size=(10, hidden)),
        weight_kind="ternary",
        reset="zero",
        n_steps=2,
        coding=StaticCoding(),
        labels=tuple(range(10)),
        input_shape=(28, 28),
    )
    return save_model(model, tmp_path_factory.mktemp("models") / "tiny.npz")


@pytest.fixture(autouse=True)
def shipped_sample_only(monkeypatch):
    """--index reads the shipped sample unless a test sets XSNN_DATA itself (CI sets it)."""
    monkeypatch.delenv("XSNN_DATA", raising=False)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_and_predict(capsys, model_path):
    code, out, _ = run(capsys, "info", model_path)
    assert code == 0 and json.loads(out)["layer_sizes"] == [8]
    code, out, _ = run(capsys, "predict", "--model", model_path, "--index", 5, "--json")
    result = json.loads(out)
    images, labels = data.load_sample()
    from xsnn.model import load_model_file

    model = load_model_file(model_path)
    assert code == 0 and result["settings"]["data"]["label"] == int(labels[5])
    assert result["prediction"] == int(forward(model, model.encode(images[5:6])).prediction[0])
    assert result["settings"]["model_hash"] == model.content_hash()


def test_explain_json_is_a_certified_axp(capsys, model_path):
    code, out, _ = run(capsys, "explain", "--model", model_path, "--index", 2, "--json", "--verify")
    result = json.loads(out)
    assert code == 0 and result["status"] == "complete" and result["verification"]["ok"]
    assert result["size"] == len(result["features"]) > 0


def test_export_dimacs_round_trip(capsys, model_path, tmp_path):
    from pysat.formula import CNF
    from pysat.solvers import Solver

    verdicts = {}
    for fix in ("all", "none"):
        target = tmp_path / f"q_{fix}.cnf"
        code, out, _ = run(
            capsys, "export", "--model", model_path, "--index", 1, "--format", "dimacs", "--fix", fix, "-o", target
        )
        assert code == 0 and json.loads(out)["written"] == str(target)
        with Solver(name="cadical195", bootstrap_with=CNF(from_file=str(target)).clauses) as solver:
            verdicts[fix] = solver.solve()
    # All features fixed: the prediction cannot change (UNSAT). None fixed: some input changes it.
    assert verdicts == {"all": False, "none": True}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "--model", "no-such-model"], "no shipped model named 'no-such-model'"),
        (["predict", "--index", "100000"], "out of range"),
        (["explain", "--backend", "gurobi"], "unknown backend 'gurobi'"),
        (["info", "/nonexistent/model.npz"], "does not exist"),
        (["info", "/"], "/ is a folder, not a model file"),
        (["predict", "--data-dir", "/nonexistent-mnist"], "/nonexistent-mnist"),
        (["explain", "--time-limit", "-3"], "argument --time-limit: expected a positive number of seconds, got '-3'"),
        (["explain", "--time-limit", "soon"], "argument --time-limit: expected a positive number of seconds"),
        (["explain", "--distance", "-1"], "argument --distance: expected a whole number >= 0, got '-1'"),
        (["explain", "--index", "2.5"], "argument --index/-i: expected a whole number >= 0, got '2.5'"),
        (["explain", "--kind", "why"], "argument --kind: invalid choice: 'why'"),
        (["explain", "--order", "bright-first"], "argument --order: invalid choice: 'bright-first'"),
        (["explain", "--features", "patches:x"], "argument --features: expected 'pixels' or 'patches:K'"),
        (["enumerate", "--limit", "0"], "argument --limit: expected a whole number >= 1"),
        (["explain", "--target", "42"], "target 42 is not a class"),
        (["explain", "--image", "/nonexistent.png"], "/nonexistent.png does not exist"),
        (["explain", "--index", "1", "--image", "x.npy"], "not allowed with argument"),
        (["explain", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, model_path, argv, message, monkeypatch):
    monkeypatch.delenv("XSNN_DATA", raising=False)
    if argv[0] != "info" and "--model" not in argv:
        argv = argv + ["--model", str(model_path)]
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("xsnn: error:") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_split_train_needs_the_full_mnist(capsys, model_path, monkeypatch):
    monkeypatch.delenv("XSNN_DATA", raising=False)
    code, out, err = run(capsys, "predict", "--model", model_path, "--split", "train", "--index", 0)
    assert code == 2 and "--split train" in err and "XSNN_DATA" in err


def test_xsnn_data_is_honoured(capsys, model_path, monkeypatch, tmp_path):
    """XSNN_DATA names the MNIST folder for every --index command (a folder without MNIST files:
    the error names it, so the variable was read)."""
    monkeypatch.setenv("XSNN_DATA", str(tmp_path))
    for command in ("predict", "explain", "export"):
        extra = ["--format", "dimacs", "-o", tmp_path / "q.cnf"] if command == "export" else []
        code, _, err = run(capsys, command, "--model", model_path, "--index", 0, *extra)
        assert code == 2 and "t10k-images-idx3-ubyte" in err and str(tmp_path) in err


@pytest.mark.parametrize("kind, extra", [("axp", []), ("cxp", []), ("min-axp", ["--features", "patches:7"])])
def test_explain_every_kind(capsys, model_path, kind, extra):
    code, out, _ = run(capsys, "explain", "--model", model_path, "--index", 2, "--kind", kind, "--json", *extra)
    result = json.loads(out)
    assert code == 0 and result["kind"] == kind and result["status"] == "complete"
    assert result["settings"]["data"] == {"data": "sample", "index": 2, "label": int(data.load_sample()[1][2])}
    code, out, _ = run(capsys, "explain", "--model", model_path, "--index", 2, "--kind", kind, *extra)
    assert code == 0 and "Proven" in out and "'#' explanation" in out


def test_enumerate_and_attribution(capsys, model_path):
    code, out, _ = run(
        capsys, "enumerate", "--model", model_path, "--index", 2, "--kind", "cxp", "--limit", 3, "--json"
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line["kind"] for line in lines[:-1]] == ["cxp"] * lines[-1]["found"]
    assert lines[-1]["status"] in ("limit", "complete")
    code, out, _ = run(capsys, "attribution", "--model", model_path, "--index", 2, "--limit", 3, "--json")
    result = json.loads(out)
    assert code == 0 and result["kind"] == "attribution" and len(result["values"]) == 784


def test_image_file_png_and_npy(capsys, model_path, tmp_path):
    from PIL import Image

    images, _ = data.load_sample()
    Image.fromarray(images[4]).save(tmp_path / "digit.png")
    np.save(tmp_path / "digit.npy", images[4])
    outputs = []
    for name in ("digit.png", "digit.npy"):
        code, out, _ = run(capsys, "explain", "--model", model_path, "--image", tmp_path / name, "--json")
        assert code == 0
        outputs.append(json.loads(out))
    code, out, _ = run(capsys, "explain", "--model", model_path, "--index", 4, "--json")
    assert outputs[0]["features"] == outputs[1]["features"] == json.loads(out)["features"]
    np.save(tmp_path / "scaled.npy", images[4] / 255.0)
    code, _, err = run(capsys, "explain", "--model", model_path, "--image", tmp_path / "scaled.npy")
    assert code == 2 and "scaled to [0, 1]" in err and "--image" in err


def test_version(capsys):
    import xsnn

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"xsnn {xsnn.__version__}"


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "xsnn.cli", *argv]


def test_sigint_prints_the_partial_set_and_exits_130():
    """Ctrl-C on a hard question: the sufficient set found so far, status interrupted, exit 130, within 2 s."""
    env = {k: v for k, v in os.environ.items() if k != "XSNN_DATA"}
    process = subprocess.Popen(
        _cli("explain", "--model", "mnist159-binary", "--index", "2", "--time-limit", "120", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(6)  # setup, then the deletion is in its hard questions
    sent = time.perf_counter()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert time.perf_counter() - sent < 2.0, err
    assert process.returncode == 130, err
    result = json.loads(out)
    assert result["status"] == "interrupted" and 0 < result["size"] <= 784


def test_verify_honours_a_small_time_limit():
    env = {k: v for k, v in os.environ.items() if k != "XSNN_DATA"}
    start = time.perf_counter()
    done = subprocess.run(
        _cli("explain", "--model", "mnist159-binary", "--index", "2", "--time-limit", "3", "--verify", "--json"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "timeout" and result["verification"] is not None
    assert seconds < 3 + 3 + 8  # explanation and verification limits, plus start-up


def test_corrupt_model_file(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = run(capsys, "info", bad)
    assert code == 2 and "not a readable .npz model file" in err
