"""SHAP through the kernel against shap on the reference forward; every comparison metric against
brute force on tiny random networks (every AXp and CXp enumerated exhaustively)."""

from __future__ import annotations

import csv
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau
from test_algorithms import ground_truth, make_case

from xsnn.coding import StaticCoding
from xsnn.compare import (
    IRRELEVANT,
    METRICS,
    RELEVANT,
    TABLE_COLUMNS,
    UNKNOWN,
    Background,
    Budgets,
    MarginModel,
    ShapValues,
    attribution_error,
    compare,
    compare_image,
    kendall_tau,
    make_background,
    margins,
    parse_indices,
    rbo,
    shap_values,
    structurally_irrelevant,
    summarise,
)
from xsnn.features import FeatureSet
from xsnn.model import BSNN, forward, load_model, random_model

from conftest import SEEDS

shap = pytest.importorskip("shap")

GENEROUS = Budgets(
    axp=60,
    shap_order_axp=60,
    questions=60,
    question=60,
    minimum=60,
    relevance=60,
    relevance_question=60,
    ffa=60,
    cxp=60,
)


def magnitudes(values) -> np.ndarray:
    """|value|, with floating-point residue (at most 1e-9) read as 0."""
    mag = np.abs(np.asarray(values, float))
    mag[mag <= 1e-9] = 0.0
    return mag


def by_magnitude(values) -> list[int]:
    """Feature indices by decreasing |value|, ties to the lower index (written out, not the module's)."""
    mag = magnitudes(values)
    return sorted(range(len(values)), key=lambda i: (-mag[i], i))


def static_case(seed: int, n: int | None = None):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(3, 8))
    model = random_model(
        rng,
        [int(rng.integers(2, 6))],
        n,
        int(rng.integers(2, 4)),
        weight_kind=("binary", "ternary")[int(rng.integers(2))],
        n_steps=int(rng.integers(1, 3)),
        coding=StaticCoding(),
        max_threshold=int(rng.integers(1, 4)),
    )
    return model, rng


# ---------------------------------------------------------------------------- the value function


def test_margin_is_non_negative_exactly_when_predicted():
    rng = np.random.default_rng(0)
    scores = rng.integers(-3, 4, size=(500, 4))
    predicted = np.argmax(scores, axis=1)
    for c in range(4):
        assert np.array_equal(margins(scores, c) >= 0, predicted == c)


@settings(max_examples=25, deadline=None)
@given(SEEDS)
def test_kernel_value_function_equals_reference(seed):
    model, instance, features, _, rng = make_case(seed, groups=bool(seed % 2))
    images = rng.integers(0, 256, size=(int(rng.integers(1, 4)), model.n_inputs)).astype(np.uint8)
    background = Background("sample", images, np.full(len(images), 1 / len(images)))
    z = rng.integers(0, 2, size=(40, len(features)))
    fast = MarginModel(model, instance, features, background, backend="kernel")(z)
    slow = MarginModel(model, instance, features, background, backend="reference")(z)
    assert np.array_equal(fast, slow)
    # and by definition: mix the spikes, run the reference forward, average the margins
    target = int(forward(model, instance).prediction[0])
    keep = np.array([[z[r, k] for k in features.feature_of_pixel()] for r in range(len(z))]).astype(bool)
    bg = model.encode(images)
    expected = [
        np.mean([margins(forward(model, np.where(keep[r], instance, b)).scores, target)[0] for b in bg])
        for r in range(len(z))
    ]
    assert np.allclose(fast, expected)


def _raw_case(seed: int):
    """A static-coded net, an image and background images that differ from it at every pixel."""
    model, rng = static_case(seed, n=int(np.random.default_rng(seed).integers(4, 8)))
    image = (rng.integers(0, 128, size=model.n_inputs) * 2 + 1).astype(np.uint8)  # odd
    background = (rng.integers(0, 128, size=(3, model.n_inputs)) * 2).astype(np.uint8)  # even
    return model, image, background


def _reference_margin(model: BSNN, target: int):
    return lambda x: margins(forward(model, model.encode(np.asarray(x).astype(np.uint8))).scores, target).astype(float)


@pytest.mark.parametrize("seed", range(6))
def test_exact_and_permutation_shap_equal_shap_on_reference_forward(seed):
    model, image, background_images = _raw_case(seed)
    target = int(forward(model, model.encode(image[None])).prediction[0])
    f = _reference_margin(model, target)
    masker = shap.maskers.Independent(background_images)
    background = Background("sample", background_images, np.full(3, 1 / 3))
    expected = shap.explainers.Exact(f, masker)(image[None]).values[0]
    ours = shap_values(model, image, explainer="exact", background=background)
    assert np.allclose(ours.values, expected, atol=1e-9)
    assert ours.additivity_error < 1e-9
    n = model.n_inputs
    expected = shap.explainers.Permutation(f, masker, seed=seed)(image[None], max_evals=6 * (2 * n + 1)).values[0]
    ours = shap_values(
        model, image, explainer="permutation", background=background, seed=seed, max_evals=6 * (2 * n + 1)
    )
    assert np.allclose(ours.values, expected, atol=1e-9)


def test_explainers_on_the_default_model_are_additive_and_agree_in_sign():
    model = load_model("mnist10-sparse192")
    from xsnn.data import load_sample

    images, _ = load_sample()
    background = make_background("kmeans", images[100:160], size=4, seed=1)
    features = FeatureSet.patches(model.input_shape, 7)
    exact = shap_values(model, images[0], explainer="exact", background=background, features=features)
    assert exact.max_evals == 2**16 and exact.evaluations >= 2**16 * len(background.images)
    assert exact.additivity_error < 1e-9
    perm = shap_values(
        model, images[0], explainer="permutation", background=background, features=features, max_evals=40 * 33, seed=3
    )
    assert perm.additivity_error < 1e-9
    assert np.corrcoef(perm.values, exact.values)[0, 1] > 0.9
    for name in ("kernel", "partition"):
        other = shap_values(model, images[0], explainer=name, background=background, features=features)
        assert other.values.shape == (16,) and np.isfinite(other.values).all()
        assert abs(other.values.sum() - (other.full_value - other.base_value)) < 1e-6


def test_to_and_from_shap_explanation():
    model, image, background_images = _raw_case(11)
    background = Background("sample", background_images, np.full(3, 1 / 3))
    ours = shap_values(model, image, explainer="exact", background=background)
    explanation = ours.to_shap()
    assert isinstance(explanation, shap.Explanation)
    assert np.array_equal(explanation.values, ours.values) and explanation.base_values == ours.base_value
    back = ShapValues.from_shap(
        explanation, model=model, image=image, explainer="exact", background=background.describe()
    )
    assert np.array_equal(back.values, ours.values) and back.base_value == ours.base_value
    assert back.full_value == ours.full_value and back.target == ours.target
    import matplotlib

    matplotlib.use("Agg")
    shap.plots.waterfall(explanation, show=False)  # shap's own plots accept it
    shap.plots.bar(explanation, show=False)


def test_exact_explainer_refuses_many_features():
    model, image, _ = _raw_case(0)
    big = load_model("mnist10-sparse192")
    with pytest.raises(ValueError, match="exact explainer"):
        shap_values(big, np.zeros((28, 28), np.uint8), explainer="exact")
    with pytest.raises(ValueError, match="max_evals"):
        shap_values(model, image, explainer="permutation", max_evals=3)
    with pytest.raises(ValueError, match="unknown SHAP explainer"):
        shap_values(model, image, explainer="lime")


def test_backgrounds():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 6)).astype(np.uint8)
    blank = make_background("blank", n_inputs=6)
    assert blank.images.shape == (1, 6) and not blank.images.any()
    sample = make_background("sample", images, size=5, seed=2)
    assert len(sample.images) == 5 and all(any((row == im).all() for im in images) for row in sample.images)
    km = make_background("kmeans", images, size=4, seed=2)
    assert abs(km.weights.sum() - 1) < 1e-12 and km.images.dtype == np.uint8 and len(km.images) <= 4
    assert np.array_equal(make_background("kmeans", images, size=4, seed=2).images, km.images)
    with pytest.raises(ValueError, match="unknown background"):
        make_background("mean", images)


# ---------------------------------------------------------------------------- rank metrics


def _rbo_plain(order_a, order_b, p):
    n = len(order_a)
    x = [len(set(order_a[:d]) & set(order_b[:d])) for d in range(1, n + 1)]
    return x[-1] / n * p**n + (1 - p) / p * sum(x[d - 1] / d * p**d for d in range(1, n + 1))


def _tie_orders(scores):
    """Every order by decreasing score (all ways of breaking ties)."""
    groups = [[i for i in range(len(scores)) if scores[i] == v] for v in sorted(set(scores), reverse=True)]
    for choice in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [i for part in choice for i in part]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=6), st.data(), st.floats(0.05, 0.95))
def test_rbo_is_the_mean_over_tie_breaks(a, data, p):
    b = data.draw(st.lists(st.integers(0, 3), min_size=len(a), max_size=len(a)))
    values = [_rbo_plain(oa, ob, p) for oa in _tie_orders(a) for ob in _tie_orders(b)]
    assert math.isclose(rbo(np.array(a), np.array(b), p), float(np.mean(values)), abs_tol=1e-12)


def test_rank_metrics_basics():
    a = np.array([5.0, 3, 2, 1])
    assert math.isclose(rbo(a, a), 1.0)
    assert rbo(a, -a) < rbo(a, a)
    assert kendall_tau(a, a) == 1.0 and kendall_tau(a, np.ones(4)) is None
    assert math.isclose(kendall_tau(a, np.array([1.0, 2, 3, 5])), -1.0)
    assert math.isclose(attribution_error(np.array([1.0, 1]), np.array([1.0, 0])), 1.0)
    assert attribution_error(a, np.zeros(4)) is None


# ---------------------------------------------------------------------------- metrics against brute force


def _deletion(truth, order):
    s = set(range(truth.n))
    for i in order:
        if truth.is_sufficient(s - {i}):
            s.discard(i)
    return frozenset(s)


def _check_against_truth(model, instance, features, k, comparison):
    truth = ground_truth(model, instance, features, k)
    row = comparison.metrics
    n = truth.n
    values = comparison.shap.values
    ranking = by_magnitude(values)
    top = lambda j: frozenset(ranking[:j])  # noqa: E731
    everything = frozenset(range(n))
    # the AXps: deletion in index order and in SHAP order (lowest |phi| tried first)
    axp = _deletion(truth, range(n))
    assert frozenset(comparison.axp) == axp and row["axp_size"] == len(axp) and row["axp_status"] == "complete"
    shap_order = sorted(range(n), key=lambda i: (magnitudes(values)[i], i))
    assert frozenset(comparison.shap_order_axp) == _deletion(truth, shap_order)
    # top-|AXp| SHAP features
    assert row["topk_sufficient"] == truth.is_sufficient(top(len(axp)))
    smallest = min(j for j in range(n + 1) if truth.is_sufficient(top(j)))
    assert row["smallest_sufficient_k"] == smallest
    if axp:
        hit = len(top(len(axp)) & axp)
        assert math.isclose(row["precision"], hit / len(axp)) and math.isclose(row["recall"], hit / len(axp))
        assert math.isclose(row["jaccard"], hit / len(top(len(axp)) | axp))
    else:
        assert row["precision"] is None and row["jaccard"] is None
    if row["min_axp_status"] == "complete":
        assert row["min_axp_size"] == min(len(a) for a in truth.axps)
    # relevance and FFA: the enumeration completes on tiny nets, so nothing stays unknown
    relevant = set().union(*truth.axps)
    assert row["ffa_status"] == "complete" and row["ffa_n_axps"] == len(truth.axps)
    assert set(np.flatnonzero(comparison.relevance == RELEVANT)) == relevant
    assert set(np.flatnonzero(comparison.relevance == IRRELEVANT)) == everything - relevant
    assert not (comparison.relevance == UNKNOWN).any()
    ffa = np.array([sum(i in a for a in truth.axps) / len(truth.axps) for i in range(n)])
    assert np.allclose(comparison.ffa, ffa)
    mag = magnitudes(values)
    irrelevant = sorted(everything - relevant)
    assert row["n_irrelevant"] == len(irrelevant) and row["n_relevant"] == len(relevant)
    if mag.sum() > 0:
        assert math.isclose(row["irrelevant_mass"], mag[irrelevant].sum() / mag.sum(), abs_tol=1e-12)
    if irrelevant and relevant:
        pairs = [(i, r) for i in irrelevant for r in relevant]
        assert math.isclose(row["irrelevant_above_relevant"], sum(mag[i] > mag[r] for i, r in pairs) / len(pairs))
    if irrelevant and mag[irrelevant].max() > 0:
        assert row["irrelevant_top_rank"] == 1 + sum(m > mag[irrelevant].max() for m in mag)
    tau = kendalltau(mag, ffa).statistic if np.ptp(mag) and np.ptp(ffa) else None
    assert (row["kendall_tau"] is None) == (tau is None or not np.isfinite(tau))
    if row["kendall_tau"] is not None:
        assert math.isclose(row["kendall_tau"], tau)
    assert math.isclose(row["rbo"], rbo(mag, ffa))
    # the contrastive side
    changeable = not truth.is_sufficient(frozenset())
    if not changeable:
        assert comparison.cxp == () and row["cxp_size"] is None
        return
    assert frozenset(comparison.cxp) in truth.cxps
    size = len(comparison.cxp)
    assert row["topk_cxp_changes"] == (not truth.is_sufficient(everything - top(size)))
    assert row["smallest_changing_k"] == min(j for j in range(n + 1) if not truth.is_sufficient(everything - top(j)))


@settings(max_examples=15, deadline=None)
@given(SEEDS)
def test_metrics_against_brute_force(seed):
    model, instance, features, k, rng = make_case(seed, groups=bool(seed % 3 == 0))
    background = make_background(
        "sample", rng.integers(0, 256, size=(4, model.n_inputs)).astype(np.uint8), size=2, seed=seed % 1000
    )
    comparison = compare(
        model,
        instance,
        features=features,
        max_distance=k,
        background=background,
        explainer="exact",
        backend="bruteforce",
        budgets=GENEROUS,
    )
    _check_against_truth(model, instance, features, k, comparison)


@settings(max_examples=10, deadline=None)
@given(SEEDS)
def test_metrics_against_brute_force_with_sampled_shap(seed):
    model, instance, features, k, rng = make_case(seed)
    n = len(features)
    comparison = compare(
        model,
        instance,
        features=features,
        max_distance=k,
        explainer="permutation",
        max_evals=4 * (2 * n + 1),
        seed=seed % 1000,
        backend="bruteforce",
        budgets=GENEROUS,
    )
    _check_against_truth(model, instance, features, k, comparison)


def test_structurally_irrelevant_features_are_in_no_axp():
    model, rng = static_case(5, n=7)
    weights = model.weights[0].copy()
    weights[:, [1, 4]] = 0
    model = BSNN(
        (weights,),
        model.thresholds,
        model.readout,
        "ternary",
        model.reset,
        model.n_steps,
        model.coding,
        model.labels,
        model.input_shape,
    )
    features = FeatureSet.pixels(7)
    assert list(np.flatnonzero(structurally_irrelevant(model, features))) == [1, 4]
    for s in range(8):
        instance = model.encode(np.random.default_rng(s).integers(0, 256, size=(1, 7)).astype(np.uint8))[0]
        truth = ground_truth(model, instance, features, None)
        assert not any({1, 4} & a for a in truth.axps)
        row = compare_image(model, instance, explainer="exact", backend="bruteforce", budgets=GENEROUS)
        assert row["n_irrelevant_structural"] == 2 and row["n_irrelevant"] >= 2


def test_budget_exhaustion_gives_a_status_not_a_guess():
    """With the per-question budget at the floor on the default model, undecided metrics are None."""
    model = load_model("mnist10-sparse192")
    from xsnn.data import load_sample

    image = load_sample()[0][0]
    tiny = Budgets(
        axp=0.05,
        shap_order_axp=0.05,
        questions=0.02,
        question=0.01,
        minimum=0.02,
        relevance=0.02,
        relevance_question=0.01,
        ffa=0.05,
        cxp=0.05,
    )
    row = compare_image(model, image, budgets=tiny, max_evals=2 * 784 + 1)
    assert row["axp_status"] in ("timeout", "complete", "undecided")
    low, high = row["smallest_sufficient_k_low"], row["smallest_sufficient_k_high"]
    assert (row["smallest_sufficient_k"] is None) == (low != high)
    assert row["n_relevant"] + row["n_irrelevant"] + row["n_relevance_unknown"] == 784
    assert set(row) == set(METRICS)


# ---------------------------------------------------------------------------- summary and command line


def test_summary_intervals():
    rows = [{"jaccard": v, "topk_sufficient": b} for v, b in zip([0.1, 0.2, 0.3, None], [True, False, True, None])]
    summary = {s["metric"]: s for s in summarise(rows)}
    j = summary["jaccard"]
    assert j["n"] == 3 and j["undecided"] == 1 and math.isclose(j["mean"], 0.2) and j["low"] < 0.2 < j["high"]
    share = summary["topk_sufficient"]
    assert math.isclose(share["mean"], 2 / 3) and 0 < share["low"] < 2 / 3 < share["high"] < 1


def test_parse_indices():
    assert parse_indices("0:5", 10) == [0, 1, 2, 3, 4]
    assert parse_indices("0:10:4", 10) == [0, 4, 8]
    assert parse_indices("0:1000", 10) == list(range(10))
    assert parse_indices("3,5", 10) == [3, 5]
    for bad in ("a:b", "", "3,,x", "0:5:0", "12"):
        with pytest.raises(ValueError, match="--indices"):
            parse_indices(bad, 10)


def _cli(args, capsys):
    from xsnn.cli import main

    code = main(args)
    return code, capsys.readouterr()


@pytest.fixture
def no_mnist_folder(monkeypatch):
    """The CLI's images come from the shipped sample unless XSNN_DATA is set (CI sets it)."""
    monkeypatch.delenv("XSNN_DATA", raising=False)


@pytest.mark.usefixtures("no_mnist_folder")
def test_cli_compare_writes_rows_and_resumes(tmp_path, capsys):
    out = tmp_path / "table.csv"
    args = [
        "compare",
        "--indices",
        "0:2",
        "--time-limit",
        "2",
        "--features",
        "patches:7",
        "--explainer",
        "exact",
        "--out",
        str(out),
        "--no-progress",
    ]
    code, captured = _cli(args, capsys)
    assert code == 0, captured.err
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["index"] for r in rows] == ["0", "1"] and tuple(rows[0]) == TABLE_COLUMNS
    assert [r["status"] for r in rows] == ["complete", "complete"] and rows[0]["n_features"] == "16"
    assert "jaccard" in captured.err and "95% CI" in captured.err
    code, captured = _cli([*args[:2], "0:3", *args[3:]], capsys)
    assert code == 0 and "2 of 3 images already" in captured.err
    with open(out) as handle:
        assert [r["index"] for r in csv.DictReader(handle)] == ["0", "1", "2"]
    other = [a if a != "exact" else "permutation" for a in args]  # rows of another question: refused
    code, captured = _cli([*other[:2], "0:4", *other[3:]], capsys)
    assert code == 2 and "another question" in captured.err and "shap_explainer" in captured.err
    with open(out) as handle:
        assert [r["index"] for r in csv.DictReader(handle)] == ["0", "1", "2"]


def test_compare_task_records_errors_as_rows():
    """An image the comparison cannot take becomes a row with status error (the run goes on)."""
    from xsnn.batch import Instance
    from xsnn.compare import CompareSetup
    from xsnn.model import load_model

    model = load_model("mnist10-binary")
    setup = CompareSetup(
        "mnist10-binary",
        model.content_hash(),
        make_background("blank", n_inputs=model.n_inputs),
        "none",
        "pixels",
        "permutation",
        None,
        0,
        Budgets.scaled(1.0),
        "portfolio",
        None,
    )
    row = setup.run(Instance(3, np.zeros((5, 5), np.uint8), 1))
    assert row["status"] == "error" and row["index"] == 3 and row["label"] == 1 and set(row) == set(TABLE_COLUMNS)
    assert row["error"].startswith("ValueError: image has shape (5, 5)")
    record = CompareSetup.record(row)
    assert record["id"] == 3 and record["question"] == setup.question()


@pytest.mark.usefixtures("no_mnist_folder")
def test_cli_compare_jsonl_patches_exact(tmp_path, capsys):
    out = tmp_path / "table.jsonl"
    summary = tmp_path / "summary.json"
    code, captured = _cli(
        [
            "compare",
            "--model",
            "mnist159-binary",
            "--indices",
            "0:3",
            "--model-labels-only",
            "--features",
            "patches:7",
            "--explainer",
            "exact",
            "--background",
            "kmeans",
            "--background-size",
            "3",
            "--time-limit",
            "4",
            "--out",
            str(out),
            "--summary",
            str(summary),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, captured.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [2]  # images 0 and 1 are a 7 and a 2
    assert rows[0]["n_features"] == 16 and rows[0]["shap_explainer"] == "exact"
    assert rows[0]["shap_background"] == "kmeans:3@sample"
    assert json.loads(summary.read_text())["images"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--indices", "5:x"], "--indices '5:x'"),
        (["--indices", "300"], "out of range"),
        (["--out", "t.txt"], ".csv or .jsonl"),
        (["--features", "blocks"], "--features 'blocks'"),
        (["--explainer", "exact"], "--explainer exact needs at most"),
        (["--jobs", "0"], "--jobs must be"),
    ],
)
def test_cli_compare_bad_input(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XSNN_DATA", raising=False)
    code, captured = _cli(["compare", *args], capsys)
    assert code == 2 and captured.err.startswith("xsnn: error:") and message in captured.err
    assert "Traceback" not in captured.err


def test_compare_table_is_a_resumable_csv(tmp_path):
    """The batch results file with the compare task: one header, rows one per line (line breaks in
    text removed), a torn last line or a torn header dropped and redone, a foreign header refused."""
    from xsnn.batch import BatchError, Instance, ResultsFile, read_results
    from xsnn.compare import CompareSetup

    setup = CompareSetup(
        "m",
        "h",
        make_background("blank", n_inputs=4),
        "none",
        "pixels",
        "exact",
        None,
        0,
        Budgets.scaled(1.0),
        "cpsat",
        None,
    )
    path = tmp_path / "t.csv"
    with ResultsFile(path, setup, resume=True) as table:
        table.write(setup.failed_row(Instance(0, None, 1), "died", 3))
        table.write(setup.failed_row(Instance(1, None, 2), 'a, "b"\nc', 3))
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(TABLE_COLUMNS) and len(lines) == 3
    rows = [{k: v for k, v in r.items() if k not in ("id", "question")} for r in read_results(path, task=setup).records]
    assert [(r["index"], r["label"], r["status"], r["error"]) for r in rows] == [
        (0, 1, "failed", "died"),
        (1, 2, "failed", 'a, "b" c'),
    ]
    path.write_text(path.read_text() + "2,3,")  # a crash while writing
    with ResultsFile(path, setup, resume=True) as table:
        assert table.done == {0, 1}
        table.write(setup.failed_row(Instance(2, None, 3), "died", 3))
    assert [r["index"] for r in read_results(path, task=setup).records] == [0, 1, 2]
    path.write_text(",".join(TABLE_COLUMNS)[:10])  # torn while writing the header
    with ResultsFile(path, setup, resume=True) as table:
        assert table.done == set()
        table.write(setup.failed_row(Instance(5, None, 3), "died", 3))
    assert path.read_text().splitlines()[0] == ",".join(TABLE_COLUMNS)
    path.write_text("index,label\n0,1\n")
    with pytest.raises(BatchError, match="columns are not those of 'xsnn compare'"):
        ResultsFile(path, setup, resume=True).open()
