"""The command line: results on stdout, clear one-line errors with exit status 2."""
import json

import numpy as np
import pytest

from xsnn.cli import main
from xsnn.coding import StaticCoding
from xsnn.model import BSNN, forward, save_model
from xsnn import data


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    rng = np.random.default_rng(11)
    hidden = 8
    w = rng.choice([-1, 1], size=(hidden, 784)) * (rng.random((hidden, 784)) < 0.03)
    model = BSNN(weights=(w,), thresholds=(rng.integers(1, 4, size=hidden),),
                 readout=rng.choice([-1, 0, 1], size=(10, hidden)), weight_kind="ternary", reset="zero",
                 n_steps=2, coding=StaticCoding(), labels=tuple(range(10)), input_shape=(28, 28))
    return save_model(model, tmp_path_factory.mktemp("models") / "tiny.npz")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_and_predict(capsys, model_path):
    code, out, _ = run(capsys, "info", model_path)
    assert code == 0 and json.loads(out)["layer_sizes"] == [8]
    code, out, _ = run(capsys, "predict", "--model", model_path, "--index", 5)
    result = json.loads(out)
    images, labels = data.load_sample()
    from xsnn.model import load_model_file
    model = load_model_file(model_path)
    assert code == 0 and result["true_label"] == int(labels[5])
    assert result["predicted"] == int(forward(model, model.encode(images[5:6])).prediction[0])


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
        code, out, _ = run(capsys, "export", "--model", model_path, "--index", 1, "--format", "dimacs",
                           "--fix", fix, "-o", target)
        assert code == 0 and json.loads(out)["written"] == str(target)
        with Solver(name="cadical195", bootstrap_with=CNF(from_file=str(target)).clauses) as solver:
            verdicts[fix] = solver.solve()
    # All features fixed: the prediction cannot change (UNSAT). None fixed: some input changes it.
    assert verdicts == {"all": False, "none": True}


@pytest.mark.parametrize("argv, message", [
    (["predict", "--model", "no-such-model"], "no shipped model named 'no-such-model'"),
    (["predict", "--index", "100000"], "out of range"),
    (["explain", "--backend", "gurobi"], "unknown backend 'gurobi'"),
    (["info", "/nonexistent/model.npz"], "does not exist"),
    (["predict", "--data-dir", "/nonexistent-mnist"], "/nonexistent-mnist"),
])
def test_bad_input_is_one_clear_line(capsys, model_path, argv, message):
    if argv[0] != "info" and "--model" not in argv:
        argv = argv + ["--model", str(model_path)]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("xsnn: error:") and message in err and "Traceback" not in err


def test_corrupt_model_file(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = run(capsys, "info", bad)
    assert code == 2 and "not a readable .npz model file" in err


def test_unknown_option_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["explain", "--frobnicate"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_cli_defaults_are_the_api_defaults():
    from xsnn import cli, explain, model

    parser = cli.build_parser()
    args = parser.parse_args(["explain"])
    assert args.backend == explain.DEFAULT_BACKEND == cli.DEFAULT_BACKEND
    assert args.model == model.DEFAULT_MODEL == "mnist10-sparse192"
